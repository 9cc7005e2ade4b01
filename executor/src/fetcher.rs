//! URI fetcher and shared fetcher cache.

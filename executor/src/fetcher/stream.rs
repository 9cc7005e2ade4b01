//! The byte stream every remote source yields (HTTP in `source`, `s3`, `hdfs`): it lives below
//! all of them so that none imports it from another.

use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::error::FetchErrorKind;

/// A source's body: chunks in order, or the failure that ended it.
pub(crate) type ByteStream = BoxStream<'static, Result<Bytes, FetchErrorKind>>;

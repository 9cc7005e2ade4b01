//! Packaging metadata carrier for the `croupier` .deb/.rpm (see packaging/build.sh). No code.

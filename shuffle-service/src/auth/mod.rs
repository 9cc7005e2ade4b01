//! `spark.authenticate` (minimal declaration on the `auth-engine` branch; the `auth` branch owns
//! this file and its layout).

pub mod ctr;
pub mod engine;

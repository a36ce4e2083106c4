//! Export jobs end to end: real loopback upstreams, a real SQLite store, real plugins, every
//! exporter, and every file read back.

mod crash;
mod deid;
mod lifecycle;
mod local;
mod split;
mod util;
mod validate;

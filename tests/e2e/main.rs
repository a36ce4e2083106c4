//! End-to-end tests: the real medgate server on an ephemeral loopback port, in front of real
//! HTTP upstreams on loopback (the demo's simulated HIS and wearable cloud, plus faulty
//! upstreams built here). No trait is mocked.

mod alerts;
mod api;
mod deid;
mod errors;
mod export;
mod faults;
mod fhir;
mod hardening;
mod ingest;
mod jobs;
mod ops;
mod partners;
mod util;

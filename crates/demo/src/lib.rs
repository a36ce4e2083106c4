//! Deterministic synthetic patients and the simulated upstreams the demo config starts.
//!
//! This is a port of `shared/bench/gen/gen_fhir.py`: every observation is a pure function of
//! (seed, patient index, observation index) through splitmix64, so the FHIR XML bundles and
//! Open mHealth documents served here are byte-identical to the benchmark workload, and the
//! normalized rows a gateway must produce from them can be computed without parsing anything
//! ([`Workload::observation`]). Tests compare the gateway's output against those rows.

mod generate;
mod serve;

pub use generate::{parse_patient_id, patient_id, Workload};
pub use serve::{his_router, spawn_demo, wearable_router, BindError, DemoUpstreams};

//! medgate-export-fhir-ndjson (being written).

//! medgate-pipeline (being written).

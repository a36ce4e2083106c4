//! Parser tests: real HL7 samples (FHIR R4 XML, C-CDA) asserted field by field, the
//! config-described format, and hostile input. One binary; the cases are data-driven
//! through `util::check`.

mod cda;
mod fhir;
mod hostile;
mod mapping;
mod strict;
mod util;

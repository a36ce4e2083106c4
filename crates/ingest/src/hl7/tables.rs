//! HL7 v2 code tables medgate maps: coding systems (table 0396) to FHIR URIs, abnormal
//! flags (0078) to v3 ObservationInterpretation, result statuses (0085, 0123) to FHIR
//! ObservationStatus. Mappings follow the HL7 v2-to-FHIR IG where it gives one.

use medgate_core::model::{LOINC, UCUM};
use medgate_core::Status;

/// Where sender-local coding systems (`L`, `99zzz`, anything unmapped) are kept:
/// `urn:medgate:hl7v2:coding-system:<name as sent>`, so the code keeps its namespace.
pub const LOCAL_SYSTEM_PREFIX: &str = "urn:medgate:hl7v2:coding-system:";

/// The FHIR URI of a v2 coding system name (table 0396), `None` for an empty name.
pub fn system_uri(name: &str) -> Option<String> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let known = match name {
        // pCLOCD is Canada's LOINC subset: its codes are LOINC codes.
        "LN" | "LOINC" | "pCLOCD" => LOINC,
        "SCT" | "SNOMEDCT" | "SNOMED-CT" => "http://snomed.info/sct",
        "UCUM" => UCUM,
        "I9" | "I9C" | "I9CDX" => "http://hl7.org/fhir/sid/icd-9-cm",
        "I10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" => "http://hl7.org/fhir/sid/icd-10-cm",
        "CPT" | "C4" => "http://www.ama-assn.org/go/cpt",
        "RXNORM" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "CDCREC" => "urn:oid:2.16.840.1.113883.6.238",
        "NPI" => "http://hl7.org/fhir/sid/us-npi",
        "ISO3166_1" => "urn:iso:std:iso:3166",
        "ISO639" | "ISO6392" => "urn:ietf:bcp:47",
        _ => {
            if let Some(table) = name.strip_prefix("HL7").filter(|t| is_table(t)) {
                return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{table}"));
            }
            if is_oid(name) {
                return Some(format!("urn:oid:{name}"));
            }
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-._".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            return Some(format!("{LOCAL_SYSTEM_PREFIX}{safe}"));
        }
    };
    Some(known.to_owned())
}

fn is_table(t: &str) -> bool {
    t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit())
}

fn is_oid(t: &str) -> bool {
    t.contains('.')
        && t.split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// v2 table 0078 (abnormal flags) codes and their v3 ObservationInterpretation code and
/// display. Every 0078 code of v2.5–2.9 is also a v3 code, except `null` ("no range
/// defined"), which maps to nothing.
const FLAGS: &[(&str, &str)] = &[
    ("L", "Low"),
    ("H", "High"),
    ("LL", "Critical low"),
    ("HH", "Critical high"),
    ("LU", "Significantly low"),
    ("HU", "Significantly high"),
    ("<", "Off scale low"),
    (">", "Off scale high"),
    ("N", "Normal"),
    ("A", "Abnormal"),
    ("AA", "Critical abnormal"),
    ("U", "Significant change up"),
    ("D", "Significant change down"),
    ("B", "Better"),
    ("W", "Worse"),
    ("S", "Susceptible"),
    ("R", "Resistant"),
    ("I", "Intermediate"),
    ("MS", "moderately susceptible"),
    ("VS", "very susceptible"),
    ("SDD", "Susceptible-dose dependent"),
    ("SYN-R", "Synergy - resistant"),
    ("SYN-S", "Synergy - susceptible"),
    ("NS", "Non-susceptible"),
    ("POS", "Positive"),
    ("NEG", "Negative"),
    ("IND", "Indeterminate"),
    ("DET", "Detected"),
    ("ND", "Not detected"),
    ("AC", "Anti-complementary substances present"),
    ("RR", "Reactive"),
    ("NR", "Non-reactive"),
    ("WR", "Weakly reactive"),
    ("TOX", "Cytotoxic substance present"),
    ("QCF", "Quality control failure"),
    ("E", "Equivocal"),
    ("EX", "outside threshold"),
    ("EXP", "Expected"),
    ("UNE", "Unexpected"),
    ("HX", "above high threshold"),
    ("LX", "below low threshold"),
    ("IE", "Insufficient evidence"),
    ("NCL", "No CLSI defined breakpoint"),
    ("OBX", "Interpretation qualifiers in separate OBX segments"),
    ("CAR", "Carrier"),
];

/// The v3 interpretation `(code, display)` of a 0078 flag: `Ok(None)` for `null`
/// (no range defined), `Err(())` for a code not in the table.
#[allow(clippy::result_unit_err)]
pub fn interpretation(flag: &str) -> Result<Option<(&'static str, &'static str)>, ()> {
    if flag == "null" {
        return Ok(None);
    }
    FLAGS
        .iter()
        .find(|(c, _)| *c == flag)
        .map(|&(c, d)| Some((c, d)))
        .ok_or(())
}

/// The first few 0078 codes, for error messages.
pub const FLAG_EXAMPLES: &str = "L, H, LL, HH, N, A, AA, POS, NEG, DET, ND, S, R, I";

/// OBX-11 (table 0085) → FHIR status, per the v2-to-FHIR IG.
pub fn obx_status(code: &str) -> Option<Status> {
    Some(match code {
        "C" => Status::Corrected,
        "D" | "W" => Status::EnteredInError,
        "F" | "U" => Status::Final,
        "I" | "O" => Status::Registered,
        "P" | "R" | "S" => Status::Preliminary,
        "X" | "N" => Status::Cancelled,
        "A" => Status::Amended,
        _ => return None,
    })
}

/// OBR-25 (table 0123) → FHIR status of the panel.
pub fn obr_status(code: &str) -> Option<Status> {
    Some(match code {
        "O" | "I" | "S" => Status::Registered,
        "P" | "A" | "R" => Status::Preliminary,
        "C" => Status::Corrected,
        "F" => Status::Final,
        "X" => Status::Cancelled,
        "Y" | "Z" => Status::Unknown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_systems() {
        assert_eq!(system_uri("LN").as_deref(), Some(LOINC));
        assert_eq!(
            system_uri("HL70078").as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/v2-0078")
        );
        assert_eq!(
            system_uri("2.16.840.1.113883.6.1").as_deref(),
            Some("urn:oid:2.16.840.1.113883.6.1")
        );
        assert_eq!(
            system_uri("99zzz or L").as_deref(),
            Some("urn:medgate:hl7v2:coding-system:99zzz-or-L")
        );
        assert_eq!(system_uri(""), None);
    }

    #[test]
    fn flags_and_statuses() {
        assert_eq!(interpretation("HH"), Ok(Some(("HH", "Critical high"))));
        assert_eq!(interpretation("null"), Ok(None));
        assert_eq!(interpretation("h"), Err(()));
        assert_eq!(obx_status("F"), Some(Status::Final));
        assert_eq!(obx_status("I"), Some(Status::Registered));
        assert_eq!(obx_status("Q"), None);
        assert_eq!(obr_status("F"), Some(Status::Final));
    }
}

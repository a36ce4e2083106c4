//! The FHIR Bulk Data completion manifest.
//!
//! ```json
//! {"transactionTime": "2026-11-22T10:00:00Z", "request": "https://gw/v1/exports",
//!  "requiresAccessToken": true,
//!  "output": [{"type": "Observation", "url": "https://gw/v1/exports/ID/files/1", "count": 1200,
//!              "extension": {"sha256": "…", "size": 123456, "contentType": "text/csv; charset=utf-8"}}],
//!  "error": [{"type": "OperationOutcome", "url": "https://gw/v1/exports/ID/files/2", "count": 3, …}],
//!  "extension": {"medgate": {"format": "csv", "profile": "research", "keyId": "…", …}}}
//! ```
//! Bulk Data reserves `extension` for servers; medgate puts each file's SHA-256, size and
//! content type there, and the job's format, profile, sources and counts at the top.

use medgate_store::ExportFile;
use serde::Serialize;

/// The manifest of a completed job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// When the job first started (RFC 3339).
    pub transaction_time: String,
    /// The kick-off request's URL.
    pub request: String,
    /// Always `true`: files are downloaded with the same partner's key.
    pub requires_access_token: bool,
    /// Data files.
    pub output: Vec<FileEntry>,
    /// Error files: one `OperationOutcome` per failed (patient, source), NDJSON.
    pub error: Vec<FileEntry>,
    /// medgate's details.
    #[serde(serialize_with = "medgate_extension")]
    #[schema(value_type = Object)]
    pub extension: ManifestExtension,
}

fn medgate_extension<S: serde::Serializer>(
    extension: &ManifestExtension,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry("medgate", extension)?;
    m.end()
}

/// One file of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// `Observation` or `OperationOutcome`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where to download it (with the same API key).
    pub url: String,
    /// Resources in it.
    pub count: u64,
    /// Its SHA-256, size and content type.
    pub extension: FileExtension,
}

impl FileEntry {
    pub(crate) fn new(kind: &str, url: String, file: &ExportFile, content_type: &str) -> Self {
        FileEntry {
            kind: kind.to_owned(),
            url,
            count: file.count,
            extension: FileExtension {
                sha256: file.sha256.clone(),
                size: file.size,
                content_type: content_type.to_owned(),
            },
        }
    }
}

/// A file's checksum, size and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileExtension {
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The content type it is served with.
    pub content_type: String,
}

/// The job, as `extension.medgate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestExtension {
    /// The format key (`csv`, `parquet`, …).
    pub format: String,
    /// The de-identification profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The profile key's public id (which key made the pseudonyms and shifts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Sources, in request order.
    pub sources: Vec<String>,
    /// The cohort, if the request named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// Patients exported.
    pub patients: u64,
    /// Patients with at least one failed fetch (see `error`).
    pub patients_failed: u64,
    /// Observations written.
    pub rows: u64,
    /// When the files are deleted (RFC 3339).
    pub expires: String,
}

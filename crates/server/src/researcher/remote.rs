//! `medgate export --server URL`: the same request as a job on a gateway, as a FHIR Bulk
//! Data client drives it — kick off (`POST /v1/exports`, `Prefer: respond-async`), poll
//! `Content-Location` (honouring `Retry-After`, showing `X-Progress`), read the manifest,
//! download every file with the partner's key and check it against the manifest's size and
//! SHA-256 before it gets its final name.
//!
//! The API key comes from an environment variable, never the command line (where `ps` and
//! shell history would show it). Ctrl-C while the job runs cancels it (`DELETE`); while
//! downloading, it removes the partial file and leaves the job for another try.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use medgate_exports::ExportRequest;
use reqwest::{header, Client, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::{ExportArgs, Failure, Summary};

/// Longest wait between polls, whatever `Retry-After` says.
const MAX_POLL: Duration = Duration::from_secs(30);
/// Wait between polls when the gateway gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(1);

/// What we read of the Bulk Data manifest.
#[derive(Debug, Deserialize)]
struct Manifest {
    output: Vec<Entry>,
    #[serde(default)]
    error: Vec<Entry>,
    extension: Option<Extension>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    url: String,
    count: u64,
    extension: Option<EntryExtension>,
}

#[derive(Debug, Deserialize)]
struct EntryExtension {
    sha256: String,
    size: u64,
}

#[derive(Debug, Deserialize)]
struct Extension {
    medgate: Totals,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    patients: u64,
    patients_failed: u64,
    rows: u64,
}

/// Runs `request` as a job on `server` and downloads its files.
pub async fn run(
    server: &str,
    args: &ExportArgs,
    request: ExportRequest,
    progress: &Progress,
    stop: &CancellationToken,
) -> Result<Summary, Failure> {
    if args.max_file_bytes.is_some() {
        return Err(Failure::usage(
            "--max-file-bytes applies to local exports; a gateway splits files at its own [exports] max_file_bytes",
        ));
    }
    let key = std::env::var(&args.api_key_env).map_err(|_| {
        Failure::usage(format!(
            "set {} to your partner API key (--server reads it from the environment, never from the command line)",
            args.api_key_env
        ))
    })?;
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::failed(format!("cannot build the HTTP client: {e}")))?;
    let remote = Remote {
        client,
        base: server.trim_end_matches('/').to_owned(),
        key,
    };
    let started = Instant::now();
    let job = remote.kick_off(&request).await?;
    let manifest = match remote.poll(&job, progress, stop).await {
        Ok(manifest) => manifest,
        Err(failure) => {
            progress.finish();
            if stop.is_cancelled() {
                remote.cancel(&job).await;
                return Err(Failure::failed(format!(
                    "interrupted; the job {job} was cancelled"
                )));
            }
            return Err(failure);
        }
    };
    if let Some(t) = manifest.extension.as_ref().map(|e| &e.medgate) {
        progress.update(t.patients, t.patients, t.patients_failed, t.rows);
    }
    progress.finish();
    let split = manifest.output.len() > 1;
    let mut summary = Summary::default();
    for (i, entry) in manifest.output.iter().enumerate() {
        let path = part_path(&args.output, i as u32 + 1, split);
        let sha256 = remote.download(entry, &path, stop).await?;
        summary.files.push((path, entry.count, sha256));
    }
    if let (Some(path), false) = (&args.errors, manifest.error.is_empty()) {
        remote.download_all(&manifest.error, path, stop).await?;
        summary.errors = Some(path.clone());
    }
    let totals = manifest.extension.map(|e| e.medgate);
    summary.rows = totals
        .as_ref()
        .map_or_else(|| manifest.output.iter().map(|e| e.count).sum(), |t| t.rows);
    summary.patients = totals.as_ref().map_or(0, |t| t.patients);
    summary.patients_failed = totals.as_ref().map_or(0, |t| t.patients_failed);
    if summary.patients_failed > 0 && summary.errors.is_none() {
        summary.failures.push(format!(
            "{} (patient, source) pairs; pass --errors FILE to save their OperationOutcomes",
            summary.patients_failed
        ));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Part `n` of a split download: `out-0001.csv` beside `out.csv`; the output itself when
/// there is one part (the names the local mode gives).
fn part_path(output: &Path, n: u32, split: bool) -> PathBuf {
    medgate_exports::local::part_path(output, n, split)
}

struct Remote {
    client: Client,
    base: String,
    key: String,
}

impl Remote {
    /// `POST /v1/exports` → the status URL from `Content-Location`.
    async fn kick_off(&self, request: &ExportRequest) -> Result<String, Failure> {
        let response = self
            .client
            .post(format!("{}/v1/exports", self.base))
            .bearer_auth(&self.key)
            .header("Prefer", "respond-async")
            .json(request)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(refused(response).await);
        }
        let location = response
            .headers()
            .get(header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Failure::failed("the gateway accepted the job without a Content-Location")
            })?;
        Ok(self.absolute(location))
    }

    /// Polls the status URL until the manifest comes, or `stop`.
    async fn poll(
        &self,
        job: &str,
        progress: &Progress,
        stop: &CancellationToken,
    ) -> Result<Manifest, Failure> {
        loop {
            let response = self
                .client
                .get(job)
                .bearer_auth(&self.key)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            match response.status() {
                StatusCode::OK => {
                    return response.json::<Manifest>().await.map_err(|e| {
                        Failure::failed(format!("the job's manifest is not readable: {e}"))
                    })
                }
                StatusCode::ACCEPTED => {
                    if let Some([done, total, failed, rows]) = x_progress(&response) {
                        progress.update(done, total, failed, rows);
                    }
                    let wait = retry_after(&response);
                    tokio::select! {
                        () = stop.cancelled() => return Err(Failure::failed("interrupted")),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                _ => return Err(refused(response).await),
            }
        }
    }

    /// `DELETE` the job; best effort (we are already stopping).
    async fn cancel(&self, job: &str) {
        let _ = self
            .client
            .delete(job)
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
    }

    /// Downloads `entry` to `path` through `path.partial`, checking size and SHA-256;
    /// returns the SHA-256.
    async fn download(
        &self,
        entry: &Entry,
        path: &Path,
        stop: &CancellationToken,
    ) -> Result<String, Failure> {
        let partial = partial(path);
        let result = self.fetch_into(&[entry], &partial, stop).await;
        let checked = result.and_then(|(size, sha256)| match &entry.extension {
            Some(e) if e.size != size || !e.sha256.eq_ignore_ascii_case(&sha256) => {
                Err(Failure::failed(format!(
                    "{}: downloaded {size} bytes with SHA-256 {sha256}, the manifest says {} bytes with {}",
                    entry.url, e.size, e.sha256
                )))
            }
            _ => Ok(sha256),
        });
        finish(&partial, path, checked).await
    }

    /// Downloads every entry, one after the other, into one file (the error files).
    async fn download_all(
        &self,
        entries: &[Entry],
        path: &Path,
        stop: &CancellationToken,
    ) -> Result<(), Failure> {
        let partial = partial(path);
        let all: Vec<&Entry> = entries.iter().collect();
        let result = self.fetch_into(&all, &partial, stop).await.map(|_| ());
        finish(&partial, path, result).await
    }

    async fn fetch_into(
        &self,
        entries: &[&Entry],
        partial: &Path,
        stop: &CancellationToken,
    ) -> Result<(u64, String), Failure> {
        let io = |e: std::io::Error| Failure::failed(format!("{}: {e}", partial.display()));
        let mut file = tokio::fs::File::create(partial).await.map_err(io)?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        for entry in entries {
            let url = self.absolute(&entry.url);
            let response = self
                .client
                .get(&url)
                .bearer_auth(&self.key)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            if response.status() != StatusCode::OK {
                return Err(refused(response).await);
            }
            let mut body = response.bytes_stream();
            loop {
                let chunk = tokio::select! {
                    () = stop.cancelled() => return Err(Failure::failed("interrupted; the job's files stay on the gateway until they expire")),
                    chunk = body.next() => chunk,
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| Failure::failed(format!("{url}: {e}")))?;
                hash.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io)?;
            }
        }
        file.sync_all().await.map_err(io)?;
        Ok((size, hex::encode(hash.finalize())))
    }

    /// A manifest or `Content-Location` URL, made absolute against `--server`.
    fn absolute(&self, url: &str) -> String {
        if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}/{}", self.base, url.trim_start_matches('/'))
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        Failure::failed(format!("{}: {e}", self.base))
    }
}

/// Renames `partial` to `path` on success; removes it otherwise.
async fn finish<T>(partial: &Path, path: &Path, result: Result<T, Failure>) -> Result<T, Failure> {
    match result {
        Ok(value) => {
            tokio::fs::rename(partial, path)
                .await
                .map_err(|e| Failure::failed(format!("{}: {e}", path.display())))?;
            Ok(value)
        }
        Err(failure) => {
            let _ = tokio::fs::remove_file(partial).await;
            Err(failure)
        }
    }
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// An answer other than the expected one, as one line: the problem's `detail` when the
/// gateway sent `application/problem+json`. 4xx are the request's fault (exit 2).
async fn refused(response: Response) -> Failure {
    let status = response.status();
    let url = response.url().to_string();
    let detail = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    let message = format!("{url}: {} {detail}", status.as_u16());
    if status.is_client_error() {
        Failure::usage(message)
    } else {
        Failure::failed(message)
    }
}

/// `X-Progress: 12/100 patients, 1 failed, 3456 rows` → `[12, 100, 1, 3456]`.
fn x_progress(response: &Response) -> Option<[u64; 4]> {
    let text = response.headers().get("x-progress")?.to_str().ok()?;
    parse_progress(text)
}

fn parse_progress(text: &str) -> Option<[u64; 4]> {
    let mut numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok());
    let mut out = [0u64; 4];
    for slot in &mut out {
        *slot = numbers.next()??;
    }
    Some(out)
}

/// `Retry-After` in seconds, within reason.
fn retry_after(response: &Response) -> Duration {
    response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_POLL, |s| Duration::from_secs(s).min(MAX_POLL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_progress_is_read_as_the_server_writes_it() {
        let p = medgate_exports::progress_text(&medgate_store::ExportProgress {
            patients_total: 100,
            patients_done: 12,
            patients_failed: 1,
            rows_written: 3456,
        });
        assert_eq!(parse_progress(&p), Some([12, 100, 1, 3456]));
        assert_eq!(parse_progress("3/4 patients"), None);
    }
}

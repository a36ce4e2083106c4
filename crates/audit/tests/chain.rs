//! The chain detects every kind of tampering and names the first bad line.

use std::path::{Path, PathBuf};

use medgate_audit::{verify, AuditEntry, AuditError, AuditLog, Durability, VerifyError};
use sha2::Digest;

fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        request_id: format!("req-{n}"),
        partner: "acme".into(),
        route: "/v1/data/{source}".into(),
        source: Some("his".into()),
        patient_ids: vec![format!("P{n:06}")],
        records: n * 10,
        status: 200,
        outcome: "ok".into(),
        details: None,
    }
}

async fn trail(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/audit.jsonl");
    let log = AuditLog::open(&path, Durability::Fsync).unwrap();
    for i in 1..=n {
        log.append(entry(i)).await.unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[tokio::test]
async fn appended_entries_verify_and_the_last_hash_is_the_last_line() {
    let (_dir, path) = trail(5).await;
    let report = verify(&path).unwrap();
    assert_eq!(report.entries, 5);
    let last = lines(&path).pop().unwrap();
    assert_eq!(
        report.last_hash,
        hex::encode(sha2::Sha256::digest(last.as_bytes()))
    );
    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["patient_ids"][0], "P000001");
    assert_eq!(first["records"], 10);
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let (_dir, path) = trail(3).await;
    let log = AuditLog::open(&path, Durability::Flush).unwrap();
    log.append(entry(4)).await.unwrap();
    assert_eq!(verify(&path).unwrap().entries, 4);
    let last: serde_json::Value = serde_json::from_str(&lines(&path)[3]).unwrap();
    assert_eq!(last["seq"], 4);
}

#[tokio::test]
async fn an_edited_field_breaks_the_chain_at_the_next_line() {
    let (_dir, path) = trail(4).await;
    let mut l = lines(&path);
    l[1] = l[1].replace("\"records\":20", "\"records\":2");
    write_lines(&path, &l);
    let e = verify(&path).unwrap_err();
    assert!(matches!(e, VerifyError::Chain { line: 3, seq: 3 }), "{e}");
    assert!(e.to_string().contains("line 3"), "{e}");
}

#[tokio::test]
async fn a_removed_line_is_named() {
    let (_dir, path) = trail(4).await;
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    let e = verify(&path).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Sequence {
                line: 2,
                expected: 2,
                found: 3
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn swapped_lines_are_named() {
    let (_dir, path) = trail(4).await;
    let mut l = lines(&path);
    l.swap(2, 3);
    write_lines(&path, &l);
    let e = verify(&path).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::Sequence {
                line: 3,
                expected: 3,
                found: 4
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_forged_line_with_the_right_seq_but_wrong_prev_is_named() {
    let (_dir, path) = trail(2).await;
    let mut l = lines(&path);
    let mut forged: serde_json::Value = serde_json::from_str(&l[1]).unwrap();
    forged["seq"] = 3.into();
    l.push(forged.to_string());
    write_lines(&path, &l);
    assert!(matches!(
        verify(&path).unwrap_err(),
        VerifyError::Chain { line: 3, .. }
    ));
}

#[tokio::test]
async fn a_truncated_last_line_is_named() {
    let (_dir, path) = trail(3).await;
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    let e = verify(&path).unwrap_err();
    assert!(matches!(e, VerifyError::Invalid { line: 3, .. }), "{e}");
}

#[tokio::test]
async fn open_refuses_to_extend_a_tampered_trail() {
    let (_dir, path) = trail(3).await;
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    match AuditLog::open(&path, Durability::Flush) {
        Err(AuditError::Corrupt {
            source: VerifyError::Sequence { line: 1, .. },
            ..
        }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a tampered trail was opened for appending"),
    }
}

#[tokio::test]
async fn concurrent_appends_are_all_kept_in_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, Durability::Flush).unwrap();
    let tasks: Vec<_> = (1..=50)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.append(entry(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(verify(&path).unwrap().entries, 50);
    let mut ids: Vec<String> = lines(&path)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50, "every entry is there exactly once");
}

#[test]
fn an_empty_file_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, "").unwrap();
    let r = verify(&path).unwrap();
    assert_eq!(r.entries, 0);
    assert_eq!(r.last_hash, "0".repeat(64));
}

#[tokio::test]
async fn lines_have_the_documented_field_order_and_a_millisecond_utc_time() {
    let (_dir, path) = trail(1).await;
    let line = lines(&path).remove(0);
    let keys = [
        "seq",
        "time",
        "prev",
        "request_id",
        "partner",
        "route",
        "source",
        "patient_ids",
        "records",
        "status",
        "outcome",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| line.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{line}");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let time = value["time"].as_str().unwrap();
    // e.g. 2026-11-22T21:04:05.123Z
    assert_eq!(time.len(), 24, "{time}");
    assert!(
        time.ends_with('Z') && &time[10..11] == "T" && &time[19..20] == ".",
        "{time}"
    );
}

#[tokio::test]
async fn verify_errors_never_quote_patient_ids() {
    let (_dir, path) = trail(2).await;
    let mut l = lines(&path);
    // A patient id written as a number is a type error whose serde message would quote it.
    l[1] = l[1].replace("[\"P000002\"]", "[99887766]");
    write_lines(&path, &l);
    let e = verify(&path).unwrap_err();
    assert!(matches!(e, VerifyError::Invalid { line: 2, .. }), "{e}");
    assert!(!e.to_string().contains("99887766"), "{e}");
}

#[tokio::test]
async fn an_opened_log_refuses_a_truncated_trail_and_names_the_line() {
    let (_dir, path) = trail(2).await;
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 1]).unwrap();
    let e = AuditLog::open(&path, Durability::Flush).err().unwrap();
    assert!(
        e.to_string()
            .contains("line 2: not a valid audit entry: truncated"),
        "{e}"
    );
}

/// A caller that gives up while its entry is being written (a client hanging up) must not
/// leave the chain with a written line and an un-advanced tip (a duplicate seq next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_appends_never_break_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, Durability::Fsync).unwrap();
    let tasks: Vec<_> = (1..=200u64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                // Some callers give up almost at once, others after a while.
                let patience = std::time::Duration::from_micros((i % 7) * 150);
                let _ = tokio::time::timeout(patience, log.append(entry(i))).await;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    log.append(entry(999)).await.unwrap();
    let report = verify(&path).expect("the chain is intact after cancelled appends");
    assert_eq!(report.entries as usize, lines(&path).len());
    assert!(report.entries >= 1);
}

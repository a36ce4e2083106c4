//! Signed checkpoints, the head, repair of a torn tail, bounded entries, and writing at
//! shutdown: each against real files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medgate_audit::{
    checkpoint_path, head, repair, sign_head, verify, verify_with_key, AuditEntry, AuditError,
    AuditLog, AuditOptions, CheckpointKey, CheckpointPolicy, Durability, VerifyError, GENESIS_HASH,
};
use sha2::Digest;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef-test-key";
const OTHER_KEY: &[u8] = b"an attacker's key, 32 bytes or more......";

fn key() -> CheckpointKey {
    CheckpointKey::new(KEY).unwrap()
}

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

fn keyed(key: CheckpointKey) -> AuditOptions {
    AuditOptions {
        durability: Durability::Flush,
        checkpoints: Some(CheckpointPolicy::new(key)),
    }
}

/// A closed, signed trail of `n` entries.
async fn signed_trail(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_with(&path, keyed(key())).unwrap();
    for i in 1..=n {
        log.append(entry(i)).await.unwrap();
    }
    log.close().unwrap();
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
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn sha256(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

// --- checkpoints ---------------------------------------------------------------------------

#[tokio::test]
async fn a_closed_log_has_a_signed_checkpoint_of_its_head() {
    let (dir, path) = signed_trail(5).await;
    let report = verify_with_key(&path, &key()).unwrap();
    assert_eq!(report.entries, 5);
    let cp = report.checkpoint.clone().expect("a checkpoint");
    assert_eq!(cp.seq, 5);
    assert_eq!(cp.hash, sha256(&lines(&path)[4]));
    assert!(report.signature_checked);
    assert_eq!(report.unsigned_entries(), 0);
    // The key is never written anywhere.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY));
    }
}

#[tokio::test]
async fn an_edited_last_entry_is_detected_by_the_checkpoint() {
    let (dir, path) = signed_trail(5).await;
    let mut l = lines(&path);
    l[4] = l[4].replace("\"records\":50", "\"records\":5");
    write_lines(&path, &l);
    // The chain alone cannot see it: the same lines without their checkpoint verify.
    let bare = dir.path().join("bare.jsonl");
    std::fs::copy(&path, &bare).unwrap();
    assert_eq!(verify(&bare).unwrap().entries, 5);

    let e = verify_with_key(&path, &key()).unwrap_err();
    assert!(
        matches!(e, VerifyError::CheckpointMismatch { seq: 5 }),
        "{e}"
    );
    assert!(e.to_string().contains("line 5"), "{e}");
    let e = verify(&path).unwrap_err();
    assert!(
        matches!(e, VerifyError::CheckpointMismatch { seq: 5 }),
        "{e}"
    );
}

#[tokio::test]
async fn a_deleted_last_entry_is_detected_by_the_checkpoint() {
    let (_dir, path) = signed_trail(5).await;
    let mut l = lines(&path);
    l.pop();
    write_lines(&path, &l);
    let e = verify_with_key(&path, &key()).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyError::CheckpointBeyondEnd {
                checkpoint_seq: 5,
                entries: 4
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("removed from the end"), "{e}");
}

#[tokio::test]
async fn a_chain_rewritten_with_another_key_is_detected() {
    let (_dir, path) = signed_trail(5).await;
    // The attacker rewrites everything, checkpoint included, with a key of their own.
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(checkpoint_path(&path)).unwrap();
    let forged = AuditLog::open_with(&path, keyed(CheckpointKey::new(OTHER_KEY).unwrap())).unwrap();
    for i in 1..=5 {
        forged.append(entry(100 + i)).await.unwrap();
    }
    forged.close().unwrap();
    drop(forged);
    assert_eq!(verify(&path).unwrap().entries, 5, "a consistent chain");
    let e = verify_with_key(&path, &key()).unwrap_err();
    assert!(matches!(e, VerifyError::CheckpointForged), "{e}");
    assert!(e.to_string().contains("another key"), "{e}");
    match AuditLog::open_with(&path, keyed(key())) {
        Err(AuditError::Corrupt {
            source: VerifyError::CheckpointForged,
            ..
        }) => {}
        other => panic!("a forged chain was opened: {:?}", other.err()),
    }
}

#[tokio::test]
async fn a_rewritten_chain_without_checkpoint_is_refused_with_a_key() {
    let (_dir, path) = signed_trail(3).await;
    std::fs::remove_file(checkpoint_path(&path)).unwrap();
    let e = verify_with_key(&path, &key()).unwrap_err();
    assert!(
        matches!(e, VerifyError::CheckpointMissing { entries: 3 }),
        "{e}"
    );
    assert!(
        verify(&path).is_ok(),
        "without a key only the chain is checked"
    );
}

#[tokio::test]
async fn opening_with_a_key_refuses_a_tampered_tail() {
    let (_dir, path) = signed_trail(4).await;
    let mut l = lines(&path);
    l[3] = l[3].replace("P000004", "P000099");
    write_lines(&path, &l);
    match AuditLog::open_with(&path, keyed(key())) {
        Err(AuditError::Corrupt {
            source: VerifyError::CheckpointMismatch { seq: 4 },
            ..
        }) => {}
        other => panic!("wrong outcome: {:?}", other.err()),
    }
}

#[tokio::test]
async fn checkpoints_follow_the_entry_count_and_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut options = keyed(key());
    let policy = options.checkpoints.as_mut().unwrap();
    policy.every_entries = 3;
    policy.interval = Duration::from_secs(3600);
    let log = AuditLog::open_with(&path, options).unwrap();
    assert_eq!(
        head(&path).unwrap().checkpoint.unwrap().seq,
        0,
        "signed at open"
    );
    for i in 1..=7 {
        log.append(entry(i)).await.unwrap();
    }
    let cp = head(&path).unwrap().checkpoint.unwrap();
    assert_eq!(cp.seq, 6, "every 3 entries");
    assert_eq!(log.head().checkpoint.unwrap(), cp);
    assert_eq!(log.head().seq, 7);
    assert_eq!(
        verify_with_key(&path, &key()).unwrap().unsigned_entries(),
        1
    );
    drop(log);
    assert_eq!(
        head(&path).unwrap().checkpoint.unwrap().seq,
        7,
        "dropping signs the rest"
    );

    let mut options = keyed(key());
    options.checkpoints.as_mut().unwrap().interval = Duration::from_millis(300);
    let log = AuditLog::open_with(&path, options).unwrap();
    log.append(entry(8)).await.unwrap();
    assert_eq!(log.head().checkpoint.unwrap().seq, 7, "not yet due");
    tokio::time::sleep(Duration::from_millis(350)).await;
    log.append(entry(9)).await.unwrap();
    assert_eq!(log.head().checkpoint.unwrap().seq, 9, "the interval passed");
    assert_eq!(head(&path).unwrap().checkpoint.unwrap().seq, 9);
}

#[tokio::test]
async fn enabling_checkpoints_on_an_existing_file_takes_an_explicit_signature() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    {
        let log = AuditLog::open(&path, Durability::Flush).unwrap();
        for i in 1..=3 {
            log.append(entry(i)).await.unwrap();
        }
    }
    let e = AuditLog::open_with(&path, keyed(key())).err().unwrap();
    assert!(e.to_string().contains("medgate audit sign"), "{e}");
    let cp = sign_head(&path, &key()).unwrap();
    assert_eq!((cp.seq, cp.hash.clone()), (3, sha256(&lines(&path)[2])));
    let log = AuditLog::open_with(&path, keyed(key())).unwrap();
    log.append(entry(4)).await.unwrap();
    log.close().unwrap();
    assert_eq!(
        verify_with_key(&path, &key())
            .unwrap()
            .checkpoint
            .unwrap()
            .seq,
        4
    );
    // Re-signing under another key is refused while the existing checkpoint stands.
    drop(log);
    let e = sign_head(&path, &CheckpointKey::new(OTHER_KEY).unwrap()).unwrap_err();
    assert!(
        matches!(
            e,
            AuditError::Corrupt {
                source: VerifyError::CheckpointForged,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn the_key_comes_from_the_named_environment_variable() {
    let unset = "MEDGATE_AUDIT_TEST_KEY_NEVER_SET_4711";
    let e = CheckpointKey::from_env(unset).unwrap_err().to_string();
    assert!(e.contains(unset) && e.contains("not set"), "{e}");
    let short = "MEDGATE_AUDIT_TEST_KEY_SHORT_4711";
    std::env::set_var(short, "too-short-secret");
    let e = CheckpointKey::from_env(short).unwrap_err().to_string();
    assert!(e.contains(short) && e.contains("at least 32 bytes"), "{e}");
    assert!(!e.contains("too-short-secret"), "{e}");
    let good = "MEDGATE_AUDIT_TEST_KEY_GOOD_4711";
    std::env::set_var(good, std::str::from_utf8(KEY).unwrap());
    let from_env = CheckpointKey::from_env(good).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, "").unwrap();
    let cp = sign_head(&path, &from_env).unwrap();
    assert!(key().verifies(&cp), "the variable's bytes are the key");
    assert!(!CheckpointKey::new(OTHER_KEY).unwrap().verifies(&cp));
}

// --- head ----------------------------------------------------------------------------------

#[tokio::test]
async fn head_is_the_last_entry_and_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, Durability::Flush).unwrap();
    let h = head(&path).unwrap();
    assert_eq!(
        (h.seq, h.hash.as_str(), h.checkpoint),
        (0, GENESIS_HASH, None)
    );
    for i in 1..=3 {
        log.append(entry(i)).await.unwrap();
    }
    let h = head(&path).unwrap();
    assert_eq!(h.seq, 3);
    assert_eq!(h.hash, sha256(&lines(&path)[2]));
    assert_eq!(log.head(), h);
    assert_eq!(verify(&path).unwrap().last_hash, h.hash);

    // A last line longer than the first read window (64 KiB) is found all the same.
    let mut big = entry(4);
    big.patient_ids = (0..20_000).map(|i| format!("P{i:06}")).collect();
    log.append(big).await.unwrap();
    let h = head(&path).unwrap();
    assert_eq!(h.seq, 4);
    assert_eq!(h.hash, sha256(&lines(&path)[3]));
}

#[tokio::test]
async fn head_of_a_torn_file_says_to_repair() {
    let (_dir, path) = signed_trail(2).await;
    append_raw(&path, br#"{"seq":3,"time":"2026-11-"#);
    let e = head(&path).unwrap_err().to_string();
    assert!(
        e.starts_with("line 3: not a valid audit entry: truncated"),
        "{e}"
    );
    assert!(e.contains("medgate audit repair"), "{e}");
}

// --- repair --------------------------------------------------------------------------------

fn append_raw(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[tokio::test]
async fn a_torn_tail_is_refused_then_repaired_with_a_report() {
    let (_dir, path) = signed_trail(3).await;
    let intact = std::fs::read(&path).unwrap();
    let torn: &[u8] = br#"{"seq":4,"time":"2026-11-29T07:00:00.000Z","prev":"ab"#;
    append_raw(&path, torn);

    let e = AuditLog::open_with(&path, keyed(key()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("line 4: not a valid audit entry: truncated"),
        "{e}"
    );
    assert!(e.contains("run `medgate audit repair`"), "{e}");
    assert!(verify_with_key(&path, &key()).is_err());

    let report = repair(&path).unwrap();
    let removed = report.removed.clone().expect("the torn line was removed");
    assert_eq!(removed.line, 4);
    assert_eq!(removed.offset, intact.len() as u64);
    assert_eq!(removed.bytes, torn.len() as u64);
    assert_eq!(removed.sha256, hex::encode(sha2::Sha256::digest(torn)));
    assert_eq!(
        std::fs::read(&removed.saved_to).unwrap(),
        torn,
        "kept, not lost"
    );
    assert_eq!(report.entries, 3);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        intact,
        "exactly the torn bytes went"
    );
    let text = report.to_string();
    assert!(
        text.contains("line 4") && text.contains(&format!("{} bytes", torn.len())),
        "{text}"
    );
    assert!(
        !text.contains("2026-11-29"),
        "the report never prints the removed content"
    );

    assert_eq!(verify_with_key(&path, &key()).unwrap().entries, 3);
    let log = AuditLog::open_with(&path, keyed(key())).expect("opens after repair");
    log.append(entry(4)).await.unwrap();
    log.close().unwrap();
    assert_eq!(verify_with_key(&path, &key()).unwrap().entries, 4);
}

#[tokio::test]
async fn repairing_an_intact_file_removes_nothing() {
    let (_dir, path) = signed_trail(2).await;
    let before = std::fs::read(&path).unwrap();
    let report = repair(&path).unwrap();
    assert_eq!(report.removed, None);
    assert_eq!(report.entries, 2);
    assert!(report.to_string().starts_with("intact"), "{report}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn repair_refuses_a_tampered_file_and_changes_nothing() {
    let (_dir, path) = signed_trail(3).await;
    let mut l = lines(&path);
    l[0] = l[0].replace("\"records\":10", "\"records\":1");
    write_lines(&path, &l);
    append_raw(&path, b"{\"seq\":4");
    let before = std::fs::read(&path).unwrap();
    match repair(&path) {
        Err(AuditError::Corrupt {
            source: VerifyError::Chain { line: 2, .. },
            ..
        }) => {}
        other => panic!("wrong outcome: {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn repair_refuses_a_file_a_running_log_holds() {
    let (_dir, path) = signed_trail(1).await;
    let log = AuditLog::open(&path, Durability::Flush).unwrap();
    let e = repair(&path).unwrap_err();
    assert!(matches!(e, AuditError::Busy { .. }), "{e}");
    assert!(e.to_string().contains("running medgate"), "{e}");
    drop(log);
    assert!(repair(&path).is_ok());
}

// --- bounded entries -----------------------------------------------------------------------

#[tokio::test]
async fn bounded_entries_keep_the_first_ids_and_count_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, Durability::Flush).unwrap();
    let mut rejected = entry(1);
    rejected.patient_ids = (0..5000).map(|i| format!("junk-{i}-xxxx")).collect();
    rejected.status = 400;
    log.append_bounded(rejected, 10).await.unwrap();
    log.append(entry(2)).await.unwrap();
    let l = lines(&path);
    assert!(l[0].len() < 600, "{} bytes", l[0].len());
    let v: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(v["patient_ids"].as_array().unwrap().len(), 10);
    assert_eq!(v["patient_ids"][9], "junk-9-xxxx");
    assert_eq!(v["patient_ids_omitted"], 4990);
    let ids_at = l[0].find("\"patient_ids\"").unwrap();
    assert!(l[0].find("\"patient_ids_omitted\"").unwrap() > ids_at);
    assert!(
        !l[1].contains("patient_ids_omitted"),
        "written only when ids were left out"
    );
    assert_eq!(verify(&path).unwrap().entries, 2);
}

// --- shutdown ------------------------------------------------------------------------------

#[test]
fn entries_can_be_written_without_any_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_with(&path, keyed(key())).unwrap();
    let handle = {
        let log = log.clone();
        std::thread::spawn(move || log.append_blocking(entry(1), None))
    };
    handle.join().unwrap().unwrap();
    log.append_blocking(entry(2), Some(0)).unwrap();
    log.close().unwrap();
    let report = verify_with_key(&path, &key()).unwrap();
    assert_eq!((report.entries, report.unsigned_entries()), (2, 0));
    let v: serde_json::Value = serde_json::from_str(&lines(&path)[1]).unwrap();
    assert_eq!(v["patient_ids_omitted"], 1);
}

/// What the server does at SIGTERM: a streamed download's guard is dropped while the runtime
/// shuts down and records the access as interrupted.
#[test]
fn a_guard_dropped_at_runtime_shutdown_records_its_entry() {
    struct Streaming {
        log: AuditLog,
    }
    impl Drop for Streaming {
        fn drop(&mut self) {
            let mut e = entry(1);
            e.outcome = "interrupted".into();
            e.records = 7;
            self.log.append_blocking(e, None).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_with(
        &path,
        AuditOptions {
            durability: Durability::Fsync,
            checkpoints: Some(CheckpointPolicy::new(key())),
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (started, ready) = std::sync::mpsc::channel();
    let guard = Streaming { log: log.clone() };
    runtime.spawn(async move {
        let _guard = guard;
        started.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    ready.recv().unwrap();
    drop(runtime); // shutdown drops the pending task, and its guard with it
    log.close().unwrap();
    let l = lines(&path);
    assert_eq!(l.len(), 1);
    assert!(l[0].contains("\"outcome\":\"interrupted\""), "{}", l[0]);
    assert_eq!(
        verify_with_key(&path, &key()).unwrap().unsigned_entries(),
        0
    );
}

/// The async append on a runtime that has shut down (its blocking pool gone) still writes.
#[test]
fn an_async_append_after_runtime_shutdown_is_written_inline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, Durability::Fsync).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let handle = runtime.handle().clone();
    runtime.shutdown_background();
    let _entered = handle.enter();
    futures::executor::block_on(log.append(entry(1))).unwrap();
    assert_eq!(verify(&path).unwrap().entries, 1);
}

//! `medgate check`: exit status and one line per problem naming the file and the key.

use std::path::PathBuf;
use std::process::Command;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("medgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `medgate check --config <path>`; returns (success, stdout, stderr).
fn check(path: &std::path::Path) -> (bool, String, String) {
    check_in(&std::env::temp_dir(), path)
}

/// `check` run from `dir` (files a config names, such as code maps, are relative to it).
fn check_in(dir: &std::path::Path, path: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medgate"))
        .args(["check", "--config"])
        .arg(path)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const HIS: &str = "[[sources]]\nname = \"his\"\nkind = \"his-xml\"\nurl = \"http://127.0.0.1:9101/fhir/Observation?patient={patient_id}\"\nformat = \"fhir-r4\"\n";

#[test]
fn shipped_configs_are_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "config/medgate.toml",
        "config/bench.toml",
        "config/example.toml",
    ] {
        // Shipped configs are run from the project root, as README's commands do.
        let (ok, stdout, stderr) = check_in(&root, &root.join(file));
        assert!(ok, "{file}: {stderr}");
        assert!(stdout.contains(": ok ("), "{stdout}");
    }
}

#[test]
fn each_problem_is_one_line_naming_file_and_key() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown-top.toml",
            format!("{HIS}[sever]\nlisten = \"x\"\n"),
            &["unknown field `sever`"],
        ),
        (
            "unknown-kind.toml",
            HIS.replace("his-xml", "hl7v2"),
            &["sources[0] (his).kind: unknown kind `hl7v2`; known kinds: his-xml, store, wearable-json"],
        ),
        (
            "dup.toml",
            format!("{HIS}{HIS}"),
            &["sources[1] (his).name: duplicate source name `his`"],
        ),
        (
            "bad-url.toml",
            HIS.replace(
                "http://127.0.0.1:9101/fhir/Observation?patient=",
                "ftp://x/",
            ),
            &["sources[0] (his).url: must be an http or https URL"],
        ),
        (
            "no-placeholder.toml",
            HIS.replace("{patient_id}", "P1"),
            &["sources[0] (his).url: must contain the placeholder {patient_id}"],
        ),
        (
            "unknown-plugin-key.toml",
            format!("{HIS}fromat = \"x\"\n"),
            &["sources[0] (his): unknown field `fromat`"],
        ),
        (
            "bad-format.toml",
            HIS.replace("fhir-r4", "hl7v2"),
            &["sources[0] (his): unknown variant `hl7v2`"],
        ),
        (
            "bad-mapping.toml",
            format!(
                "{}[sources.mapping]\nrecord = \"\"\n[sources.mapping.fields]\nvalue = \"V\"\n",
                HIS.replace("fhir-r4", "mapping")
            ),
            &["sources[0] (his).mapping"],
        ),
        (
            "bad-export.toml",
            format!("{HIS}[exporters]\nenabled = [\"csv\", \"pdf\"]\n"),
            &["exporters.enabled[1]: unknown format `pdf`"],
        ),
        (
            "two-problems.toml",
            format!(
                "{}{}",
                HIS.replace("his-xml", "nope"),
                HIS.replace("\"his\"", "\"BAD NAME\"")
            ),
            &["sources[0] (his).kind", "sources[1] (BAD NAME).name"],
        ),
    ];
    for (name, text, wanted) in cases {
        let path = write(name, text);
        let (ok, _, stderr) = check(&path);
        assert!(!ok, "{name} must fail");
        for want in *wanted {
            assert!(
                stderr.contains(want),
                "{name}: wanted `{want}` in:\n{stderr}"
            );
        }
        for line in stderr.lines() {
            assert!(
                line.starts_with(&path.display().to_string()),
                "{name}: each line names the file: {line}"
            );
        }
        assert_eq!(
            stderr.lines().count(),
            wanted.len(),
            "{name}: one line per problem:\n{stderr}"
        );
    }
}

#[test]
fn an_unreadable_file_is_one_line() {
    let (ok, _, stderr) = check(std::path::Path::new("/nonexistent/medgate.toml"));
    assert!(!ok);
    assert_eq!(
        stderr.trim(),
        "/nonexistent/medgate.toml: cannot read: No such file or directory (os error 2)"
    );
}

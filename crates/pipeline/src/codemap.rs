//! Code maps: the terminology dictionary from hospitals' local codes to standard ones.
//!
//! A map is a CSV file with the header
//! `source_system,source_code,target_system,target_code,target_display`, loaded once at start
//! (and again on reload) into an immutable hash map shared behind an `Arc`: lookups never
//! lock and never block, and a reload swaps the whole dictionary at once. An empty
//! `source_system` matches codings that carry no system.
//!
//! Every problem names the file, line and column, so `medgate check` can say exactly what to
//! fix. The file is read whole: a map is a dictionary of at most a few hundred thousand rows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use medgate_core::config::CodeMapConfig;
use medgate_core::{Coding, ConfigIssue, ConfigIssues};

/// The header every map file starts with.
pub const HEADER: [&str; 5] = [
    "source_system",
    "source_code",
    "target_system",
    "target_code",
    "target_display",
];

/// Why a map file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeMapError {
    /// The file could not be read.
    #[error("{file}: cannot read: {detail}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        detail: String,
    },
    /// A line is wrong.
    #[error("{file}: line {line}, column {column}: {detail}")]
    Line {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// 1-based column (field number).
        column: usize,
        /// What is wrong.
        detail: String,
    },
}

/// One loaded map: (source system, source code) → target coding.
#[derive(Debug, Default)]
pub struct CodeMap {
    name: String,
    /// source system → source code → target; nested so lookups borrow and never allocate.
    entries: HashMap<String, HashMap<String, Coding>>,
    len: usize,
}

impl CodeMap {
    /// The map's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The target coding for `(system, code)`; `system` is `""` for codings without one.
    pub fn lookup(&self, system: &str, code: &str) -> Option<&Coding> {
        self.entries.get(system)?.get(code)
    }

    /// Parses map text (the content of `file`, used in messages).
    ///
    /// # Errors
    /// The first problem, with its line and column.
    pub fn parse(name: &str, file: &str, text: &[u8]) -> Result<CodeMap, CodeMapError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        let error = |line: u64, column: usize, detail: String| CodeMapError::Line {
            file: file.to_owned(),
            line,
            column,
            detail,
        };
        let mut entries: HashMap<(String, String), (u64, Coding)> = HashMap::new();
        let mut record = csv::StringRecord::new();
        let mut first = true;
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    return Err(error(line, 1, csv_detail(&e)));
                }
            }
            let line = record.position().map_or(0, |p| p.line());
            if first {
                first = false;
                check_header(&record).map_err(|(column, detail)| error(line, column, detail))?;
                continue;
            }
            if record.len() == 1 && record[0].trim().is_empty() {
                continue;
            }
            if record.len() != HEADER.len() {
                return Err(error(
                    line,
                    record.len().min(HEADER.len()) + 1,
                    format!("expected {} fields, found {}", HEADER.len(), record.len()),
                ));
            }
            let field = |i: usize| record[i].trim();
            for (i, required) in [(1, "source_code"), (2, "target_system"), (3, "target_code")] {
                if field(i).is_empty() {
                    return Err(error(line, i + 1, format!("{required} is empty")));
                }
            }
            let key = (field(0).to_owned(), field(1).to_owned());
            let coding = Coding {
                system: Some(field(2).to_owned()),
                code: Some(field(3).to_owned()),
                display: Some(field(4)).filter(|d| !d.is_empty()).map(str::to_owned),
                mapped: true,
            };
            if let Some((earlier, existing)) = entries.get(&key) {
                if existing != &coding {
                    return Err(error(
                        line,
                        2,
                        format!(
                            "maps the same source code as line {earlier} to a different target"
                        ),
                    ));
                }
                continue;
            }
            entries.insert(key, (line, coding));
        }
        if first {
            return Err(error(
                1,
                1,
                format!("empty file; expected the header {}", HEADER.join(",")),
            ));
        }
        let len = entries.len();
        let mut nested: HashMap<String, HashMap<String, Coding>> = HashMap::new();
        for ((system, code), (_, coding)) in entries {
            nested.entry(system).or_default().insert(code, coding);
        }
        Ok(CodeMap {
            name: name.to_owned(),
            entries: nested,
            len,
        })
    }

    /// Loads `file`.
    ///
    /// # Errors
    /// The file cannot be read, or the first problem in it.
    pub fn load(name: &str, file: &Path) -> Result<CodeMap, CodeMapError> {
        let shown = file.display().to_string();
        let text = std::fs::read(file).map_err(|e| CodeMapError::Read {
            file: shown.clone(),
            detail: e.to_string(),
        })?;
        CodeMap::parse(name, &shown, &text)
    }
}

fn check_header(record: &csv::StringRecord) -> Result<(), (usize, String)> {
    for (i, want) in HEADER.iter().enumerate() {
        let got = record
            .get(i)
            .map(|f| f.trim().trim_start_matches('\u{feff}'));
        if got != Some(*want) {
            return Err((
                i + 1,
                format!(
                    "header must be {}; column {} is `{}`",
                    HEADER.join(","),
                    i + 1,
                    got.unwrap_or("")
                ),
            ));
        }
    }
    if record.len() > HEADER.len() {
        return Err((
            HEADER.len() + 1,
            format!("header must be {}", HEADER.join(",")),
        ));
    }
    Ok(())
}

fn csv_detail(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    }
}

/// Every configured map by name.
#[derive(Debug, Default, Clone)]
pub struct CodeMaps {
    maps: HashMap<String, Arc<CodeMap>>,
}

impl CodeMaps {
    /// Loads every `[[code_maps]]` entry.
    ///
    /// # Errors
    /// Every map that fails, each as an issue keyed `code_maps[i] (name).file`.
    pub fn load(configs: &[CodeMapConfig]) -> Result<CodeMaps, ConfigIssues> {
        let mut maps = HashMap::new();
        let mut issues = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            match CodeMap::load(&config.name, &config.file) {
                Ok(map) => {
                    maps.insert(config.name.clone(), Arc::new(map));
                }
                Err(e) => issues.push(ConfigIssue::new(
                    format!("code_maps[{i}] ({}).file", config.name),
                    e.to_string(),
                )),
            }
        }
        if issues.is_empty() {
            Ok(CodeMaps { maps })
        } else {
            Err(ConfigIssues(issues))
        }
    }

    /// The map named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<CodeMap>> {
        self.maps.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "source_system,source_code,target_system,target_code,target_display\n";

    fn parse(body: &str) -> Result<CodeMap, CodeMapError> {
        CodeMap::parse("lis", "maps/lis.csv", format!("{HEAD}{body}").as_bytes())
    }

    #[test]
    fn maps_local_codes_and_codes_without_system() {
        let map = parse(
            "urn:oid:1.2.3,GLU,http://loinc.org,2345-7,Glucose [Mass/volume] in Serum or Plasma\n,K,http://loinc.org,2823-3,\n",
        )
        .unwrap();
        let glu = map.lookup("urn:oid:1.2.3", "GLU").unwrap();
        assert_eq!(glu.code.as_deref(), Some("2345-7"));
        assert!(glu.mapped);
        assert_eq!(map.lookup("", "K").unwrap().display, None);
        assert!(map.lookup("urn:oid:9", "GLU").is_none());
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn problems_name_file_line_and_column() {
        let e = parse("a,GLU,http://loinc.org,,x\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "maps/lis.csv: line 2, column 4: target_code is empty");
        let e = parse("a,b,c\n").unwrap_err().to_string();
        assert!(
            e.starts_with("maps/lis.csv: line 2, column 4: expected 5 fields"),
            "{e}"
        );
        let e = parse("a,GLU,s,1,\na,GLU,s,2,\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("line 2"), "{e}");
        let e = CodeMap::parse("x", "m.csv", b"code,target\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m.csv: line 1, column 1: header must be"),
            "{e}"
        );
        let e = CodeMap::parse("x", "m.csv", b"").unwrap_err().to_string();
        assert!(e.contains("empty file"), "{e}");
        let bad_utf8 = [HEAD.as_bytes(), b"a,\xff,s,1,\n"].concat();
        let e = CodeMap::parse("x", "m.csv", &bad_utf8)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn duplicate_identical_lines_are_harmless() {
        let map = parse("a,GLU,s,1,\na,GLU,s,1,\n").unwrap();
        assert_eq!(map.len(), 1);
    }
}

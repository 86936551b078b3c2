//! Golden tests: every `tests/golden/*.txt` file holds cases separated by lines of `=====`.
//! A case has sections, each opened by a line `-- <name>`:
//!
//! - `query` or `condition`: the text (trailing newline trimmed);
//! - `documents` (optional): a JSON array; by default the documents of the last case of the same
//!   file that had only a `documents` section, else `tests/golden/twins.json`;
//! - `result`: for a query, the JSON array `Query::run` returns (compared as serialized text, so
//!   key order and `1` vs `1.0` count); for a condition, the JSON array of `Condition::evaluate`
//!   per document;
//! - `error`: instead of `result`, the exact error (`<message> at line <l>, column <c>`);
//! - `printed` (optional): the canonical text `Display` gives for the parsed query or condition.
//!
//! Lines starting with `#` before the first section are comments.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::fs;
use std::path::PathBuf;

use outpost_query::{Condition, Query};
use serde_json::Value;

struct Case {
    file: String,
    line: usize,
    sections: Vec<(String, String)>,
    /// The file's current default documents.
    defaults: Option<String>,
}

impl Case {
    fn get(&self, name: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.as_str())
    }

    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

fn cases() -> Vec<Case> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).unwrap();
        let mut case = Case {
            file: file.clone(),
            line: 1,
            sections: Vec::new(),
            defaults: None,
        };
        for (number, line) in text.lines().enumerate() {
            if line.starts_with("=====") {
                let mut defaults = case.defaults.clone();
                if let [(name, body)] = case.sections.as_slice()
                    && name == "documents"
                {
                    defaults = Some(body.clone());
                }
                let next = Case {
                    file: file.clone(),
                    line: number + 2,
                    sections: Vec::new(),
                    defaults,
                };
                cases.push(std::mem::replace(&mut case, next));
            } else if let Some(name) = line.strip_prefix("-- ") {
                case.sections.push((name.trim().to_owned(), String::new()));
            } else if let Some((_, body)) = case.sections.last_mut() {
                body.push_str(line);
                body.push('\n');
            } else {
                assert!(
                    line.is_empty() || line.starts_with('#'),
                    "{file}:{}: text outside a section",
                    number + 1
                );
            }
        }
        cases.push(case);
    }
    for case in &cases {
        let runnable = case.get("query").is_some() || case.get("condition").is_some();
        let defaults_only = case.sections.iter().all(|(name, _)| name == "documents");
        assert!(
            runnable || defaults_only,
            "{}: a case needs a query or a condition",
            case.at()
        );
    }
    cases.retain(|case| case.get("query").is_some() || case.get("condition").is_some());
    for case in &mut cases {
        for (_, body) in &mut case.sections {
            let trimmed = body.trim_end_matches('\n').len();
            body.truncate(trimmed);
        }
    }
    cases
}

fn documents(case: &Case) -> Vec<Value> {
    let text = match case.get("documents").or(case.defaults.as_deref()) {
        Some(text) => text.to_owned(),
        None => fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/twins.json"))
            .unwrap(),
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: documents: {e}", case.at()))
}

fn expected_json(case: &Case) -> Option<String> {
    let text = case.get("result")?;
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: result: {e}", case.at()));
    Some(value.to_string())
}

fn check(case: &Case) -> Result<(), String> {
    let documents = documents(case);
    let (outcome, printed) = if let Some(text) = case.get("query") {
        match Query::parse(text) {
            Ok(query) => (
                Ok(Value::from(query.run(&documents)).to_string()),
                Some(query.to_string()),
            ),
            Err(error) => (Err(error.to_string()), None),
        }
    } else if let Some(text) = case.get("condition") {
        match Condition::parse(text) {
            Ok(condition) => {
                let results: Vec<bool> = documents
                    .iter()
                    .map(|document| condition.evaluate(document))
                    .collect();
                (Ok(Value::from(results).to_string()), Some(condition.to_string()))
            }
            Err(error) => (Err(error.to_string()), None),
        }
    } else {
        return Err("neither a query nor a condition".to_owned());
    };
    match (&outcome, expected_json(case), case.get("error")) {
        (Ok(actual), Some(expected), None) if *actual == expected => {}
        (Err(actual), None, Some(expected)) if actual == expected => {}
        (actual, result, error) => {
            return Err(format!(
                "got {actual:?}\n  expected result {result:?} / error {error:?}"
            ));
        }
    }
    if let (Some(expected), Some(printed)) = (case.get("printed"), printed)
        && printed != expected
    {
        return Err(format!("printed {printed:?}, expected {expected:?}"));
    }
    Ok(())
}

#[test]
fn golden_cases() {
    let cases = cases();
    assert!(
        cases.len() >= 100,
        "expected at least 100 golden cases, found {}",
        cases.len()
    );
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| check(case).err().map(|why| format!("{}: {why}", case.at())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

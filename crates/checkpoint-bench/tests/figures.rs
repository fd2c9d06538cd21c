//! Figures in the docs come from one place: the JSON a named bench run printed, kept in
//! `docs/figures/<run>.json`. A figure cites its source right after itself, in a comment that
//! the rendered page does not show:
//!
//! ```text
//! | save, 16 tasks | 0.71×<!-- fig layout-2026-11-29-1 ratio_layout_save_16_hash_vs_plain --> |
//! ```
//!
//! This test reads every such citation in `README.md` and `docs/*.md` and checks that the
//! number written before it is the cited value, rounded to the decimals written. Two pages that
//! cite the same figure therefore cannot disagree, and a figure cannot drift from its run.

use std::path::{Path, PathBuf};

use serde_json::Value;

const MARK: &str = "<!-- fig ";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pages that may cite figures.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/");
    for entry in docs {
        let path = entry.expect("an entry of docs/").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

/// The number written just before a citation: its digits, and how many follow the point.
fn number_before(text: &str) -> Option<(f64, usize)> {
    // Units between the number and the citation (`×`, ` ms`, `%`) are skipped.
    let end = text.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = text[..end]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let written = text[start..end].replace(',', "");
    let decimals = written.split_once('.').map_or(0, |(_, d)| d.len());
    Some((written.parse().ok()?, decimals))
}

/// The value at `key` (dot-separated) of a bench run's output.
fn cited(run: &str, key: &str) -> f64 {
    let path = root().join("docs/figures").join(format!("{run}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cited run {run}: {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("a bench run's JSON");
    let mut value = &json["checkpoint_bench"];
    for part in key.split('.') {
        value = &value[part];
    }
    value
        .as_f64()
        .unwrap_or_else(|| panic!("run {run} has no figure {key}"))
}

#[test]
fn every_cited_figure_is_its_runs_value() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("a page");
        let name = page.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut rest = text.as_str();
        let mut before = String::new();
        while let Some(at) = rest.find(MARK) {
            before.push_str(&rest[..at]);
            let citation = &rest[at + MARK.len()..];
            let end = citation.find("-->").expect("a closed citation");
            let mut words = citation[..end].split_whitespace();
            let (Some(run), Some(key), None) = (words.next(), words.next(), words.next()) else {
                panic!(
                    "{name:?}: a citation is `<!-- fig RUN KEY -->`: {}",
                    &citation[..end]
                );
            };
            let line = before.lines().last().unwrap_or("");
            let (written, decimals) = number_before(line)
                .unwrap_or_else(|| panic!("{name:?}: no number before the citation of {key}"));
            let value = cited(run, key);
            // Written to its last decimal: within half a unit of it, however it was rounded.
            let unit = 10f64.powi(-i32::try_from(decimals).unwrap());
            assert!(
                (value - written).abs() <= unit / 2.0 + 1e-9,
                "{name:?}: {written} is cited as {run} {key}, which is {value}"
            );
            checked += 1;
            rest = &citation[end + 3..];
            before.clear();
        }
    }
    assert!(checked > 0, "the docs cite no figure");
}

#[test]
fn numbers_are_read_with_their_decimals() {
    assert_eq!(number_before("| 0.71×"), Some((0.71, 2)));
    assert_eq!(number_before("p50 1,350.84 ms"), Some((1350.84, 2)));
    assert_eq!(number_before("about 12 "), Some((12.0, 0)));
    assert_eq!(number_before("none"), None);
    assert_eq!(number_before("1.82×–1.85"), Some((1.85, 2)));
}

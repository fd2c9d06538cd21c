//! Tables for people, JSON for machines, progress bars only on a terminal.

use std::io::{IsTerminal, Write};

use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Prints rows as a table, or as a JSON array of objects keyed by the headers. A column whose
/// header ends in `bytes` holds a size: exact in JSON, humanized in the table (`20 KiB`).
pub(crate) fn listing(json: bool, headers: &[&str], rows: Vec<Vec<Value>>) {
    if json {
        let objects: Vec<Value> = rows
            .into_iter()
            .map(|row| Value::Object(headers.iter().map(|h| h.to_string()).zip(row).collect()))
            .collect();
        println!("{}", Value::Array(objects));
        return;
    }
    let mut table = Table::new();
    table.set_header(headers.to_vec());
    for row in rows {
        table.add_row(
            row.iter()
                .zip(headers)
                .map(|(value, header)| match value.as_u64() {
                    Some(bytes) if header.ends_with("bytes") => size(bytes),
                    _ => cell(value),
                })
                .collect::<Vec<_>>(),
        );
    }
    println!("{table}");
}

/// A size for people: `512 B`, `20 KiB`, `1.50 MiB`.
pub(crate) fn size(bytes: u64) -> String {
    humansize::format_size(bytes, humansize::BINARY.decimal_places(2).decimal_zeroes(0))
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Pretty JSON, coloured when standard output is a terminal.
pub(crate) fn pretty(value: &Value) -> String {
    let plain = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    if std::io::stdout().is_terminal() {
        colored_json::to_colored_json_auto(value).unwrap_or(plain)
    } else {
        plain
    }
}

/// A progress bar on a terminal (standard error), hidden otherwise.
pub(crate) fn progress(total: Option<u64>, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{msg} [{bar:30}] {pos}/{len} ({eta})"
    } else {
        "{msg} {spinner} {pos}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Asks `question` on a terminal; without a terminal (or with `--yes`) the answer is yes.
pub(crate) fn confirm(question: &str, yes: bool) -> bool {
    if yes || !std::io::stdin().is_terminal() {
        return true;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(29), "29 B");
        assert_eq!(size(20_480), "20 KiB");
        assert_eq!(size(1_572_864), "1.50 MiB");
    }
}

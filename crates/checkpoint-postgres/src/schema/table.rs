//! Table names: validated, quoted, and the names derived from them.

use checkpoint_core::{Error, Result};

use crate::schema::layout::TableLayout;

/// The longest identifier PostgreSQL keeps.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest table name: `<table>_migrations` must fit the identifier limit, or the server
/// would cut it (and, at 63 bytes, cut it down to the table's own name).
pub const MAX_TABLE_BYTES: usize = MAX_IDENTIFIER_BYTES - "_migrations".len();

/// Checks a table or schema name: `[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes.
///
/// # Errors
/// [`Error::InvalidInput`] naming `field`.
pub fn check_identifier(field: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::invalid(
            field,
            format!("{name:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"),
        ));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(Error::invalid(
            field,
            format!("{name:?} is longer than {MAX_IDENTIFIER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A validated table name, optionally schema-qualified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    table: String,
    layout: TableLayout,
}

impl TableName {
    /// Validates both names.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is not a plain identifier.
    pub fn new(schema: Option<&str>, table: &str) -> Result<Self> {
        if let Some(schema) = schema {
            check_identifier("schema", schema)?;
        }
        check_identifier("table", table)?;
        if table.len() > MAX_TABLE_BYTES {
            return Err(Error::invalid(
                "table",
                format!(
                    "{table:?} is {} bytes; a table name may have at most {MAX_TABLE_BYTES} \
                     bytes, so that the names derived from it (such as {table}_migrations) \
                     fit PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte identifier limit",
                    table.len()
                ),
            ));
        }
        Ok(TableName {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
            layout: TableLayout::Plain,
        })
    }

    /// The same table, laid out as `layout`.
    pub fn with_layout(mut self, layout: TableLayout) -> Self {
        self.layout = layout;
        self
    }

    /// How the table is laid out.
    pub fn layout(&self) -> TableLayout {
        self.layout
    }

    /// The schema, if one was given.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The bare table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"schema"."name"` or `"name"` for an object that lives beside the table.
    pub fn qualify(&self, name: &str) -> String {
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{name}\""),
            None => format!("\"{name}\""),
        }
    }

    /// The quoted, qualified table.
    pub fn quoted(&self) -> String {
        self.qualify(&self.table)
    }

    /// A name derived from the table's, cut to the identifier limit as PostgreSQL would.
    pub fn derived(&self, suffix: &str) -> String {
        let mut name = format!("{}_{suffix}", self.table);
        name.truncate(MAX_IDENTIFIER_BYTES);
        name
    }

    /// The unique index behind the version rule.
    pub fn version_index(&self) -> String {
        self.derived("execution_version_key")
    }

    /// The unique index of `(execution_id, id)` of a partitioned layout, and the name the
    /// trigger keeping ids unique across partitions reports.
    pub fn id_key(&self) -> String {
        self.derived("execution_id_key")
    }

    /// The foreign key that keeps every delta's base row in place.
    pub fn base_key(&self) -> String {
        self.derived("base_fkey")
    }

    /// The registry of each execution's start, of a time-partitioned layout.
    pub fn executions_table(&self) -> String {
        self.derived("executions")
    }

    /// The table of each execution's lease, on every layout.
    pub fn leases_table(&self) -> String {
        self.derived("leases")
    }

    /// The quoted, qualified function an insert calls for its execution's start (recording it
    /// on the execution's first save), of a time-partitioned layout.
    pub fn start_function(&self) -> String {
        self.qualify(&self.derived("start"))
    }

    /// The quoted, qualified `STABLE` function a read calls for its execution's start, of a
    /// time-partitioned layout.
    pub fn started_function(&self) -> String {
        self.qualify(&self.derived("started"))
    }

    /// The table recording applied migrations.
    pub fn migrations_table(&self) -> String {
        self.derived("migrations")
    }

    /// The key of the advisory lock that serialises migrations of this table.
    pub fn lock_key(&self) -> String {
        format!(
            "checkpoint-migrations:{}.{}",
            self.schema.as_deref().unwrap_or(""),
            self.table
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_are_accepted() {
        for name in ["checkpoints", "_x", "Cp_2024", &"a".repeat(63)] {
            assert!(check_identifier("table", name).is_ok(), "{name}");
        }
        // A schema may use the whole identifier limit; nothing is derived from it.
        assert!(TableName::new(Some(&"s".repeat(63)), "cp").is_ok());
    }

    #[test]
    fn injection_attempts_and_odd_names_are_refused() {
        for name in [
            "",
            "1abc",
            "cp; DROP TABLE users",
            "cp\"",
            "a.b",
            "naïve",
            "with space",
            "x--",
            &"a".repeat(64),
        ] {
            let err = check_identifier("table", name).unwrap_err();
            assert!(err.is_invalid_field("table"), "{name}: {err}");
        }
        assert!(TableName::new(Some("public\"; --"), "cp")
            .unwrap_err()
            .is_invalid_field("schema"));
    }

    #[test]
    fn names_are_quoted_and_qualified() {
        let plain = TableName::new(None, "cp").unwrap();
        assert_eq!(plain.quoted(), "\"cp\"");
        let qualified = TableName::new(Some("Tenant"), "cp").unwrap();
        assert_eq!(qualified.quoted(), "\"Tenant\".\"cp\"");
        assert_eq!(
            qualified.qualify("cp_migrations"),
            "\"Tenant\".\"cp_migrations\""
        );
    }

    #[test]
    fn derived_names_fit_the_identifier_limit_and_stay_distinct_at_every_length() {
        for len in 1..=MAX_IDENTIFIER_BYTES {
            let name = "t".repeat(len);
            match TableName::new(Some("s"), &name) {
                Ok(table) => {
                    assert!(len <= MAX_TABLE_BYTES, "{len}");
                    let mut names = vec![
                        table.table().to_owned(),
                        table.migrations_table(),
                        table.version_index(),
                        table.base_key(),
                        table.derived("base_version_idx"),
                        table.derived("state_check"),
                        table.derived("delta_check"),
                        format!("{name}_pkey"),
                        table.executions_table(),
                        table.derived("start"),
                        table.derived("started"),
                        table.derived("started_idx"),
                        table.leases_table(),
                    ];
                    assert!(
                        names.iter().all(|n| n.len() <= MAX_IDENTIFIER_BYTES),
                        "{len}"
                    );
                    assert_eq!(table.migrations_table(), format!("{name}_migrations"));
                    names.sort();
                    names.dedup();
                    assert_eq!(names.len(), 13, "derived names collide at {len}: {names:?}");
                }
                Err(err) => {
                    assert!(len > MAX_TABLE_BYTES, "{len}: {err}");
                    assert!(err.is_invalid_field("table"));
                    assert!(err.to_string().contains("at most 52 bytes"), "{err}");
                }
            }
        }
    }
}

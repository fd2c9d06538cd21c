//! The unique indexes and the foreign key whose violations the store acts on, recognised by
//! name. On a partitioned layout the server names the partition's own index or constraint, so
//! the store reads once which of those belong to which of the table's own.

use std::collections::HashMap;
use std::sync::OnceLock;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::error::DbError;
use crate::pool::{DbPool, Sql};
use crate::schema::table::TableName;

/// The table's constraints the store tells apart.
pub(crate) struct Constraints {
    version_index: String,
    base_key: String,
    table: TableName,
    /// A partition's index or constraint → the table's own it was made from.
    aliases: OnceLock<HashMap<String, String>>,
}

impl Constraints {
    pub(crate) fn new(table: &TableName) -> Self {
        Constraints {
            version_index: table.version_index(),
            base_key: table.base_key(),
            table: table.clone(),
            aliases: OnceLock::new(),
        }
    }

    /// Reads which partition indexes and constraints belong to the table's own (a partitioned
    /// layout only; once the table exists).
    pub(crate) async fn load_aliases(
        &self,
        pool: &dyn DbPool,
        table: &TableName,
    ) -> Result<(), DbError> {
        let sql = Sql::new(
            "WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = COALESCE($1, current_schema())) \
             SELECT c.relname::text, p.relname::text FROM pg_inherits i \
               JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
              WHERE p.relkind = 'I' AND p.relnamespace IN (SELECT oid FROM ns) \
             UNION ALL \
             SELECT con.conname::text, par.conname::text FROM pg_constraint con \
               JOIN pg_constraint par ON par.oid = con.conparentid \
              WHERE par.connamespace IN (SELECT oid FROM ns)",
            &[Type::TEXT],
        );
        let rows = pool.query(&sql, &[&table.schema()]).await?;
        let mut aliases = HashMap::with_capacity(rows.len());
        for row in &rows {
            aliases.insert(row.text(0)?, row.text(1)?);
        }
        let _ = self.aliases.set(aliases);
        Ok(())
    }

    fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        if let Some(own) = self.aliases.get().and_then(|aliases| aliases.get(name)) {
            return own;
        }
        // Citus names a shard's indexes and keys after the table's, with `_<shard id>`.
        if self.table.layout() == crate::TableLayout::Distributed {
            return match name.rsplit_once('_') {
                Some((own, shard))
                    if !shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    [&self.version_index, &self.base_key]
                        .into_iter()
                        .find(|known| known.as_str() == own)
                        .map_or(name, |known| known.as_str())
                }
                _ => name,
            };
        }
        // A time-partitioned table gains partitions while the store runs; the store names
        // their unique indexes itself, so they are told by name.
        if self.table.layout().period().is_none() {
            name
        } else if crate::store::partitions::is_partition_index(&self.table, name, 'v') {
            &self.version_index
        } else {
            name
        }
    }

    fn violates(&self, db: &DbError, code: &SqlState, own: &str) -> bool {
        db.code() == Some(code) && db.constraint().is_some_and(|c| self.canonical(c) == own)
    }

    /// A second holder of one version: the version rule.
    pub(crate) fn is_version_conflict(&self, db: &DbError) -> bool {
        self.violates(db, &SqlState::UNIQUE_VIOLATION, &self.version_index)
    }

    /// The foreign key of a delta on its base.
    pub(crate) fn is_base_violation(&self, db: &DbError) -> bool {
        self.violates(db, &SqlState::FOREIGN_KEY_VIOLATION, &self.base_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_name_counts_once_its_alias_is_known() {
        let table = TableName::new(None, "cp").unwrap();
        let names = Constraints::new(&table);
        let child = DbError::server(SqlState::UNIQUE_VIOLATION, Some("cp_p3_idx"), "dup");
        let own = DbError::server(
            SqlState::UNIQUE_VIOLATION,
            Some(&table.version_index()),
            "dup",
        );
        assert!(names.is_version_conflict(&own));
        assert!(!names.is_version_conflict(&child));
        let _ = names.aliases.set(HashMap::from([(
            "cp_p3_idx".to_owned(),
            table.version_index(),
        )]));
        assert!(names.is_version_conflict(&child));
        assert!(!names.is_base_violation(&child));
    }

    #[test]
    fn a_shard_of_a_distributed_table_counts_by_its_suffix() {
        let table = TableName::new(None, "cp")
            .unwrap()
            .with_layout(crate::TableLayout::Distributed);
        let names = Constraints::new(&table);
        let shard = |name: &str| format!("{name}_102008");
        let version = DbError::server(
            SqlState::UNIQUE_VIOLATION,
            Some(&shard(&table.version_index())),
            "dup",
        );
        let base = DbError::server(
            SqlState::FOREIGN_KEY_VIOLATION,
            Some(&shard(&table.base_key())),
            "fk",
        );
        assert!(names.is_version_conflict(&version));
        assert!(names.is_base_violation(&base));
        assert!(!names.is_version_conflict(&base));
        for other in [
            "cp_other_102008",
            "cp_execution_version_key_x1",
            "cp_execution_version_key_",
        ] {
            let err = DbError::server(SqlState::UNIQUE_VIOLATION, Some(other), "dup");
            assert!(!names.is_version_conflict(&err), "{other}");
        }
    }

    #[test]
    fn a_time_partition_index_counts_by_its_name() {
        let plain = Constraints::new(&TableName::new(None, "cp").unwrap());
        let table =
            TableName::new(None, "cp")
                .unwrap()
                .with_layout(crate::TableLayout::time_partitioned(
                    crate::PartitionPeriod::Day,
                ));
        let names = Constraints::new(&table);
        let version = DbError::server(SqlState::UNIQUE_VIOLATION, Some("cp_v20261125"), "dup");
        let id = DbError::server(SqlState::UNIQUE_VIOLATION, Some("cp_k20261125"), "dup");
        let other = DbError::server(SqlState::UNIQUE_VIOLATION, Some("cp_v2026112"), "dup");
        assert!(names.is_version_conflict(&version));
        // The id key of the same partition is another index.
        assert!(!names.is_version_conflict(&id));
        assert!(!names.is_version_conflict(&other));
        assert!(!plain.is_version_conflict(&version));
    }
}

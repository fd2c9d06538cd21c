//! The statements of leases ([`checkpoint_core::lease`]), on the table `<table>_leases`: one
//! row per execution that ever had a lease, keyed (and, under Citus, distributed and
//! co-located) by `execution_id`, so every statement here reads or writes one row of one shard.

use tokio_postgres::types::Type;

use crate::pool::Sql;
use crate::schema::table::TableName;

/// The lease statements of one table. A change locks the row (`lock`; `now` alone when there
/// is none yet), applies the rules of [`next_lease`](checkpoint_core::lease::next_lease) in
/// the client, and writes the result (`insert`, which does nothing when another writer made
/// the row meanwhile, or `update`), in one transaction. A fenced write reads the row with a
/// share lock (`fence`) in its own transaction, so a takeover waits for the writes already
/// checked and every write after it sees the new token.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[allow(missing_docs)]
pub struct LeaseStatements {
    pub lock: Sql,
    pub now: Sql,
    pub insert: Sql,
    pub update: Sql,
    pub live: Sql,
    pub fence: Sql,
    pub guard: Sql,
    pub gate: Sql,
    pub gate_shared: Sql,
}

impl LeaseStatements {
    /// The lease statements of `table`.
    pub fn new(table: &TableName) -> Self {
        let leases = table.qualify(&table.leases_table());
        LeaseStatements {
            lock: Sql::new(
                format!(
                    "SELECT owner, token, expires_at, now() FROM {leases} \
                     WHERE execution_id = $1 FOR UPDATE"
                ),
                &[Type::TEXT],
            ),
            now: Sql::new("SELECT now()", &[]),
            insert: Sql::new(
                format!(
                    "INSERT INTO {leases} (execution_id, owner, token, expires_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (execution_id) DO NOTHING"
                ),
                &[Type::TEXT, Type::TEXT, Type::INT8, Type::TIMESTAMPTZ],
            ),
            update: Sql::new(
                format!(
                    "UPDATE {leases} SET owner = $2, token = $3, expires_at = $4 \
                     WHERE execution_id = $1"
                ),
                &[Type::TEXT, Type::TEXT, Type::INT8, Type::TIMESTAMPTZ],
            ),
            live: Sql::new(
                format!(
                    "SELECT owner, token, expires_at FROM {leases} \
                     WHERE execution_id = $1 AND expires_at > now()"
                ),
                &[Type::TEXT],
            ),
            fence: Sql::new(
                format!("SELECT owner, token FROM {leases} WHERE execution_id = $1 FOR SHARE"),
                &[Type::TEXT],
            ),
            guard: Sql::new(
                format!(
                    "SELECT owner, token, expires_at, now() FROM {leases} \
                     WHERE execution_id = $1 FOR SHARE"
                ),
                &[Type::TEXT],
            ),
            // An execution's first lease row cannot be locked before it exists: its insert and
            // the check of an unleased write meet on a transaction lock keyed by the table and
            // the execution instead (`$1`: the key's text).
            gate: Sql::new(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[Type::TEXT],
            ),
            gate_shared: Sql::new(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))",
                &[Type::TEXT],
            ),
        }
    }

    /// Every statement with its name, for [`Statements::all`](crate::Statements::all).
    pub fn all(&self) -> [(&'static str, &Sql); 9] {
        [
            ("lease_lock", &self.lock),
            ("lease_now", &self.now),
            ("lease_insert", &self.insert),
            ("lease_update", &self.update),
            ("lease_live", &self.live),
            ("lease_fence", &self.fence),
            ("lease_guard", &self.guard),
            ("lease_gate", &self.gate),
            ("lease_gate_shared", &self.gate_shared),
        ]
    }
}

//! Notifications of new checkpoints
//! ([`PostgresOptions::notify`](crate::PostgresOptions::notify)) and the [`Listener`] that
//! receives them (`checkpointctl watch`, a UI following a run).
//!
//! A store with notifications on sends, after each acknowledged save, group, batch or fork,
//! one `pg_notify(channel, execution_id)` per execution written (a group of saves is one
//! statement for all its executions). PostgreSQL delivers notifications at commit and drops
//! duplicates within a transaction; a listener that falls behind may see one execution named
//! several times, and must read what is new itself (notifications carry no checkpoint).

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use checkpoint_core::{Error, Result};

use crate::pool::Sql;
use crate::schema::table::TableName;
use crate::{PostgresOptions, PostgresStore};

/// The channel of `table`: `checkpoint_` and a hash of its qualified name (a channel name is
/// limited to 63 bytes; a table's qualified name may be longer).
pub(crate) fn channel_of(table: &TableName) -> String {
    let qualified = format!("{}.{}", table.schema().unwrap_or(""), table.table());
    format!(
        "checkpoint_{:016x}",
        xxhash_rust::xxh3::xxh3_64(qualified.as_bytes())
    )
}

/// The statement that announces the executions of an array, built once.
fn announce_statement() -> &'static Sql {
    static ANNOUNCE: std::sync::LazyLock<Sql> = std::sync::LazyLock::new(|| {
        Sql::new(
            "SELECT pg_notify($1, e) FROM (SELECT DISTINCT unnest($2::text[]) AS e) AS x",
            &[
                tokio_postgres::types::Type::TEXT,
                tokio_postgres::types::Type::TEXT_ARRAY,
            ],
        )
    });
    &ANNOUNCE
}

impl PostgresStore {
    /// The channel this store's table announces new checkpoints on, whether or not this store
    /// sends notifications.
    pub fn channel(&self) -> String {
        channel_of(&self.table)
    }

    /// Announces new checkpoints of `executions`, when notifications are on. The checkpoints
    /// are stored already: a failure here is logged, never returned.
    pub(crate) async fn announce<'a>(&self, executions: impl IntoIterator<Item = &'a str>) {
        let Some(channel) = &self.notify else {
            return;
        };
        let executions: Vec<&str> = executions.into_iter().collect();
        if executions.is_empty() {
            return;
        }
        let channel: &str = channel;
        if let Err(err) = self
            .pool
            .query(announce_statement(), &[&channel, &executions])
            .await
        {
            tracing::warn!(error = %err, "could not announce new checkpoints");
        }
    }

    /// A connection of its own that listens on the table's channel: [`Listener::next`] gives
    /// the execution each notification names. Only stores with
    /// [`notify`](crate::PostgresOptions::notify) on send them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for bad options; [`Error::Unavailable`] when the server cannot
    /// be reached.
    pub async fn listen(options: &PostgresOptions) -> Result<Listener> {
        let table = options.table_name()?;
        let channel = channel_of(&table);
        let config = options.driver_config().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let unavailable = |e: tokio_postgres::Error| Error::Unavailable {
            message: format!("cannot listen for new checkpoints: {e}"),
            source: Some(Box::new(e)),
        };
        // The connection's messages are polled by a task of its own; notifications go to the
        // listener, and the task ends when the listener is dropped or the connection closes.
        let client = match crate::options::tls::connector(
            options.tls_mode(),
            options.root_certificates(),
        )? {
            Some(tls) => {
                let (client, connection) = config.connect(tls).await.map_err(unavailable)?;
                spawn_forwarder(connection, tx);
                client
            }
            None => {
                let (client, connection) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(unavailable)?;
                spawn_forwarder(connection, tx);
                client
            }
        };
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await
            .map_err(unavailable)?;
        Ok(Listener {
            _client: client,
            notifications: rx,
        })
    }
}

fn spawn_forwarder<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "the listening connection failed");
                    return;
                }
            }
        }
    });
}

/// Receives the notifications of new checkpoints on one table
/// ([`PostgresStore::listen`]).
pub struct Listener {
    _client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<String>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// The execution the next notification names; `None` once the connection is closed.
    pub async fn next(&mut self) -> Option<String> {
        self.notifications.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_fits_and_tells_tables_apart() {
        let long = "t".repeat(52);
        let names = [
            TableName::new(None, "checkpoints").unwrap(),
            TableName::new(Some("a"), "checkpoints").unwrap(),
            TableName::new(Some("b"), "checkpoints").unwrap(),
            TableName::new(Some(&"s".repeat(60)), &long).unwrap(),
        ];
        let channels: std::collections::HashSet<String> = names.iter().map(channel_of).collect();
        assert_eq!(channels.len(), names.len());
        assert!(channels.iter().all(|c| c.len() <= 63 && c.is_ascii()));
    }
}

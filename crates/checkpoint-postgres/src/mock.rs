//! A scripted [`DbPool`] for unit tests: it records every statement with its bound arguments
//! and answers from a queue, so the store's SQL, binding and error mapping are tested without a
//! server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::pool::{DbPool, DbTransaction, Param, Row, Sql};
use crate::DbError;

/// What the mock answers to the next statement.
pub(crate) enum Reply {
    Rows(Vec<Row>),
    Affected(u64),
    Fail(DbError),
    /// Never answers, as a statement stuck on the server.
    Hang,
    /// Answers with the reply after a while, as a slow statement.
    After(std::time::Duration, Box<Reply>),
}

/// One statement the store sent: its text (or `BEGIN` / `COMMIT` / `ROLLBACK`) and the
/// `Debug` form of each argument.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub sql: String,
    pub params: Vec<String>,
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    calls: Vec<Call>,
}

#[derive(Clone, Default)]
pub(crate) struct MockPool {
    state: Arc<Mutex<State>>,
}

impl MockPool {
    pub(crate) fn reply(&self, reply: Reply) -> &Self {
        self.lock().replies.push_back(reply);
        self
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub(crate) fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, sql: &str, params: &[Param<'_>]) -> Reply {
        let mut state = self.lock();
        state.calls.push(Call {
            sql: sql.to_owned(),
            params: params.iter().map(|p| format!("{p:?}")).collect(),
        });
        state
            .replies
            .pop_front()
            .unwrap_or_else(|| panic!("no reply scripted for {sql}"))
    }

    fn note(&self, command: &str) {
        self.lock().calls.push(Call {
            sql: command.to_owned(),
            params: Vec::new(),
        });
    }

    async fn run_execute(&self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError> {
        match wait(self.record(&sql.text, params)).await {
            Reply::Affected(n) => Ok(n),
            Reply::Rows(rows) => Ok(rows.len() as u64),
            Reply::Fail(e) => Err(e),
            Reply::Hang => std::future::pending().await,
            Reply::After(..) => unreachable!("waited for"),
        }
    }

    async fn run_query(&self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        match wait(self.record(&sql.text, params)).await {
            Reply::Rows(rows) => Ok(rows),
            Reply::Affected(_) => Ok(Vec::new()),
            Reply::Fail(e) => Err(e),
            Reply::Hang => std::future::pending().await,
            Reply::After(..) => unreachable!("waited for"),
        }
    }
}

/// The reply, once a slow one's time has passed.
async fn wait(mut reply: Reply) -> Reply {
    while let Reply::After(delay, next) = reply {
        tokio::time::sleep(delay).await;
        reply = *next;
    }
    reply
}

#[async_trait]
impl DbPool for MockPool {
    async fn execute(&self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError> {
        self.run_execute(sql, params).await
    }

    async fn query(&self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        self.run_query(sql, params).await
    }

    async fn begin(&self) -> Result<Box<dyn DbTransaction>, DbError> {
        self.note("BEGIN");
        Ok(Box::new(self.clone()))
    }

    async fn ping(&self) -> Result<(), DbError> {
        Ok(())
    }

    fn close(&self) {}
}

#[async_trait]
impl DbTransaction for MockPool {
    async fn execute(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<u64, DbError> {
        self.run_execute(sql, params).await
    }

    async fn query(&mut self, sql: &Sql, params: &[Param<'_>]) -> Result<Vec<Row>, DbError> {
        self.run_query(sql, params).await
    }

    async fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.note(sql);
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), DbError> {
        self.note("COMMIT");
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), DbError> {
        self.note("ROLLBACK");
        Ok(())
    }
}

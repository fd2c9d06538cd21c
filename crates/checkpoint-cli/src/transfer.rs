//! `export` and `import`: JSON Lines of the `Checkpoint` serde form.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use checkpoint_core::{Checkpoint, CheckpointStore, Error, ExecutionQuery};

use crate::output::progress;
use crate::Exit;

fn fail(message: impl Into<String>) -> Exit {
    Exit {
        code: 2,
        message: message.into(),
    }
}

/// Every execution id, page by page.
pub(crate) async fn all_executions(store: &dyn CheckpointStore) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    let mut query = ExecutionQuery::new(1000);
    loop {
        let page = store.list_executions(&query).await?;
        let Some(last) = page.last().map(|s| s.execution_id.clone()) else {
            return Ok(ids);
        };
        ids.extend(page.into_iter().map(|s| s.execution_id));
        query = ExecutionQuery::new(1000).after(last);
    }
}

/// Writes the checkpoints of `execution` (or of all executions) to standard output.
pub(crate) async fn export(
    store: &dyn CheckpointStore,
    execution: Option<String>,
) -> Result<u64, Exit> {
    let executions = match execution {
        Some(execution) => vec![execution],
        None => all_executions(store)
            .await
            .map_err(|e| fail(e.to_string()))?,
    };
    let bar = progress(Some(executions.len() as u64), "exporting executions");
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut written = 0;
    for execution in executions {
        for checkpoint in store
            .list(&execution)
            .await
            .map_err(|e| fail(e.to_string()))?
        {
            let line = serde_json::to_string(&checkpoint).map_err(|e| fail(e.to_string()))?;
            writeln!(out, "{line}").map_err(|e| fail(format!("writing the export: {e}")))?;
            written += 1;
        }
        bar.inc(1);
    }
    out.flush()
        .map_err(|e| fail(format!("writing the export: {e}")))?;
    bar.finish_and_clear();
    Ok(written)
}

/// What an import did.
#[derive(Debug, Default)]
pub(crate) struct Imported {
    pub checkpoints: u64,
    pub batches: u64,
    pub conflicts: Vec<String>,
}

/// Reads `file` in batches of `batch_size`, each saved all or nothing. A batch that conflicts
/// is reported and skipped; running the import again is safe (saves replace by id).
pub(crate) async fn import(
    store: &dyn CheckpointStore,
    file: &Path,
    batch_size: usize,
) -> Result<Imported, Exit> {
    if batch_size == 0 {
        return Err(fail("--batch-size must be at least 1"));
    }
    let reader = std::fs::File::open(file)
        .map(BufReader::new)
        .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?;
    let bar = progress(None, "importing checkpoints");
    let mut imported = Imported::default();
    let mut batch: Vec<Checkpoint> = Vec::with_capacity(batch_size);
    let mut first_line = 1;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| fail(format!("reading {}: {e}", file.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint: Checkpoint = serde_json::from_str(&line).map_err(|e| {
            fail(format!(
                "line {number} of {} is not a checkpoint: {e} ({} imported before it)",
                file.display(),
                imported.checkpoints
            ))
        })?;
        if batch.is_empty() {
            first_line = number;
        }
        batch.push(checkpoint);
        if batch.len() == batch_size {
            save(store, &mut batch, first_line, number, &mut imported).await?;
            bar.set_position(imported.checkpoints);
        }
    }
    if !batch.is_empty() {
        let last_line = first_line + batch.len() - 1;
        save(store, &mut batch, first_line, last_line, &mut imported).await?;
    }
    bar.finish_and_clear();
    Ok(imported)
}

async fn save(
    store: &dyn CheckpointStore,
    batch: &mut Vec<Checkpoint>,
    first: usize,
    last: usize,
    imported: &mut Imported,
) -> Result<(), Exit> {
    match store.save_batch(batch).await {
        Ok(_) => {
            imported.checkpoints += batch.len() as u64;
            imported.batches += 1;
        }
        Err(Error::Conflict {
            execution_id,
            version,
        }) => imported.conflicts.push(format!(
            "lines {first}-{last}: version {version} of {execution_id} belongs to another \
             checkpoint; batch skipped"
        )),
        Err(e) => {
            return Err(fail(format!(
                "lines {first}-{last}: {e} ({} checkpoints imported before; running the import \
                 again is safe)",
                imported.checkpoints
            )))
        }
    }
    batch.clear();
    Ok(())
}

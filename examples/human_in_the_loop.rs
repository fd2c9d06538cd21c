//! A person in the loop: the run pauses before `send`, someone reads and edits the draft, and
//! the run continues with the edit.
//!
//! `cargo run --example human_in_the_loop` (add `--features postgres` and `DATABASE_URL` to
//! keep the pause in PostgreSQL, where another process could pick it up).

use checkpoint_workflow::{Next, RunStatus, Workflow, WorkflowStoreExt};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Email {
    to: String,
    body: String,
    approved_by: Option<String>,
    sent: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store = checkpoint_examples::store().await?;
    let execution = format!("email-{}", checkpoint_examples::run_suffix());
    let workflow = Workflow::new("draft")
        .node("draft", |mut e: Email| async move {
            e.body = format!("Dear {}, your order has shiped.", e.to);
            Ok((e, Next::to("send")))
        })
        .node("send", |mut e: Email| async move {
            if e.approved_by.is_none() {
                return Err("refusing to send an unapproved email".into());
            }
            e.sent = true;
            Ok((e, Next::End))
        })
        .interrupt_before("send");

    let initial = Email {
        to: "Ada".into(),
        ..Email::default()
    };
    let paused = workflow.run(store.as_ref(), &execution, initial).await?;
    let RunStatus::Interrupted { next } = &paused.status else {
        anyhow::bail!("expected a pause before send");
    };
    println!("paused before {next}; draft: {:?}", paused.state.body);

    // The reviewer fixes a typo and approves: the edit is the next checkpoint.
    let mut reviewed: Email = store
        .resume::<Email>(&execution)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the pause was not saved"))?
        .state;
    reviewed.body = reviewed.body.replace("shiped", "shipped");
    reviewed.approved_by = Some("Grace".into());
    let edit = store.update_state(&execution, "review", &reviewed).await?;
    println!(
        "edited as version {} by {:?}",
        edit.version, reviewed.approved_by
    );

    let done = workflow
        .run(store.as_ref(), &execution, Email::default())
        .await?;
    println!(
        "status {:?}; sent: {}; body: {:?}",
        done.status, done.state.sent, done.state.body
    );
    Ok(())
}

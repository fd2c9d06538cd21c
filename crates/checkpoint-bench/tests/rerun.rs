//! The bench run twice against one database: each run works in schemas of its own, so the
//! second finds the first's data beside it and still measures from empty tables.

#[path = "../../checkpoint-postgres/tests/support/mod.rs"]
mod support;

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_database_succeeds() {
    let url = support::server().await.url.clone();
    for run in 1..=2 {
        let output = std::process::Command::new(assert_cmd::cargo::cargo_bin!("checkpoint-bench"))
            .args([
                "--database-url",
                &url,
                "--only",
                "growth",
                "--growth-steps",
                "12",
            ])
            .args(["--seconds", "1", "--skip-pgbench"])
            .output()
            .expect("run the bench");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {run}: {stderr}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("bytes_per_step"), "run {run}: {stdout}");
    }
}

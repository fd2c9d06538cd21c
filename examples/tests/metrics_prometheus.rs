//! The `metrics_prometheus` example serves the store's metrics in Prometheus text, and the
//! figures move as its saves happen: scraped over HTTP while it runs, the count of `save`
//! operations only rises, passes through values between the first and the last, and ends at
//! the number of saves made.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "kill/binary.rs"]
mod binary;

const SAVES: u64 = 12;

/// A port nobody listens on now (the example binds it a moment later).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// The metrics page, or `None` while nothing answers.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut page = String::new();
    stream.read_to_string(&mut page).ok()?;
    page.starts_with("HTTP/1.").then_some(page)
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(page: &str, series: &str) -> Option<u64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn saves_move_the_scraped_figures() {
    let path = binary::example_binary("metrics_prometheus");
    let port = free_port();
    let db = tempfile::tempdir().expect("a temp dir");
    let mut child = Command::new(path)
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("SAVES", SAVES.to_string())
        .env("STEP_MS", "150")
        .env("SERVE_SECONDS", "30")
        .env("CHECKPOINT_BACKEND", "sqlite")
        .env("CHECKPOINT_SQLITE_PATH", db.path().join("metrics.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the example starts");

    let saves = "db_client_operation_duration_count{db_system_name=\"sqlite\",\
                 db_collection_name=\"checkpoints\",db_operation_name=\"save\"}";
    let clears = "db_client_operation_duration_count{db_system_name=\"sqlite\",\
                  db_collection_name=\"checkpoints\",db_operation_name=\"clear\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<u64> = Vec::new();
    let mut last_page = String::new();
    while Instant::now() < deadline {
        if let Some(page) = scrape(port) {
            if let Some(n) = sample(&page, saves) {
                if seen.last() != Some(&n) {
                    seen.push(n);
                }
            }
            let cleared = sample(&page, clears) == Some(1);
            last_page = page;
            if cleared {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();

    assert!(
        last_page.contains("# TYPE db_client_operation_duration summary"),
        "the duration is described: {last_page}"
    );
    assert_eq!(
        sample(&last_page, clears),
        Some(1),
        "the run finished: {last_page}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the save count only rises: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&SAVES), "{seen:?}");
    assert!(
        seen.iter().any(|n| (1..SAVES).contains(n)),
        "a scrape saw the count between the first save and the last: {seen:?}"
    );
    let latest = "db_client_operation_duration_count{db_system_name=\"sqlite\",\
                  db_collection_name=\"checkpoints\",db_operation_name=\"latest\"}";
    assert_eq!(sample(&last_page, latest), Some(SAVES), "{last_page}");
}

//! The cleanup functions called through tokio-postgres.
//!
//! usage: authfort-cleanup-rust-client DSN SEED_SQL
//!
//! Reseeds the database with SEED_SQL before each group of checks and prints
//! one "  ok  ..." or "  FAIL ..." line per check, for tests/suites/clients.sh
//! to count. Exits non-zero if anything failed or the program itself broke.

use std::error::Error;
use std::fmt::Debug;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const CLIENT: &str = "tokio-postgres";
const EXPECTED: [i64; 3] = [2, 3, 4]; // what SEED_SQL makes deletable: keys, tokens, sessions
const LIVE: &str = "2|2|2"; // rows left after a cleanup: keys|tokens|sessions
const SEEDED: &str = "4|5|6"; // all rows SEED_SQL inserts
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

struct Checks {
    failures: u32,
}

impl Checks {
    fn check<T: PartialEq + Debug>(&mut self, name: &str, expected: T, actual: T) {
        if expected == actual {
            println!("  ok  {CLIENT}: {name}");
        } else {
            self.failures += 1;
            println!("  FAIL {CLIENT}: {name}: expected [{expected:?}], got [{actual:?}]");
        }
    }
}

/// Connects, and drives the connection on a task of its own. The Connection
/// hands out NOTICEs and NOTIFYs only to whoever polls it with poll_message,
/// so that task forwards them to the returned receiver, in arrival order.
async fn connect(dsn: &str) -> Result<(Client, UnboundedReceiver<AsyncMessage>), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(dsn, NoTls).await?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                // A dropped receiver only means nobody reads the messages any more.
                Ok(message) => drop(sender.send(message)),
                Err(error) => {
                    eprintln!("{CLIENT}: connection failed: {error}");
                    break;
                }
            }
        }
    });
    Ok((client, receiver))
}

async fn rows_left(client: &Client) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM authfort_signing_keys) || '|' ||
                    (SELECT count(*) FROM authfort_verification_tokens) || '|' ||
                    (SELECT count(*) FROM authfort_refresh_tokens)",
            &[],
        )
        .await?;
    row.try_get(0)
}

async fn last_run(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT status || '|' || keys || '|' || tokens || '|' || sessions
               FROM authfort_cleanup_runs ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?;
    row.map(|row| row.try_get(0)).transpose()
}

/// The text of every NOTICE received so far.
fn notices(messages: &mut UnboundedReceiver<AsyncMessage>) -> Vec<String> {
    let mut texts = Vec::new();
    while let Ok(message) = messages.try_recv() {
        if let AsyncMessage::Notice(notice) = message {
            texts.push(notice.message().to_owned());
        }
    }
    texts
}

/// The payload of the next NOTIFY, or None if none comes in NOTIFY_TIMEOUT.
async fn next_notification(messages: &mut UnboundedReceiver<AsyncMessage>) -> Option<String> {
    let wait = async {
        while let Some(message) = messages.recv().await {
            if let AsyncMessage::Notification(notification) = message {
                return Some(notification.payload().to_owned());
            }
        }
        None
    };
    tokio::time::timeout(NOTIFY_TIMEOUT, wait).await.ok().flatten()
}

async fn run(dsn: &str, seed: &str, checks: &mut Checks) -> Result<(), Box<dyn Error>> {
    let (mut client, mut messages) = connect(dsn).await?;

    // The three functions in one SELECT: int8 columns, read as i64.
    client.batch_execute(seed).await?;
    let row = client
        .query_one("SELECT authfort_cleanup_keys(), authfort_cleanup_tokens(), authfort_cleanup_sessions()", &[])
        .await?;
    let types: Vec<&Type> = row.columns().iter().map(|column| column.type_()).collect();
    checks.check("keys(), tokens(), sessions() are int8 columns", vec![&Type::INT8; 3], types);
    // try_get::<i64> fails on any other column type, so Ok(counts) is also the type check.
    let counts: Result<Vec<i64>, _> = (0..3).map(|i| row.try_get::<_, i64>(i)).collect();
    checks.check(
        "keys(), tokens(), sessions() counts, as i64",
        Ok(EXPECTED.to_vec()),
        counts.map_err(|e| e.to_string()),
    );
    checks.check("rows left after the three functions", LIVE.to_owned(), rows_left(&client).await?);

    // authfort_cleanup_all(): one row, read by column name.
    client.batch_execute(seed).await?;
    let rows = client.query("SELECT * FROM authfort_cleanup_all()", &[]).await?;
    checks.check("cleanup_all() returns one row", 1, rows.len());
    if let Some(row) = rows.first() {
        let counts: Result<Vec<i64>, _> =
            ["keys", "tokens", "sessions"].iter().map(|name| row.try_get::<_, i64>(*name)).collect();
        checks.check(
            "cleanup_all() keys, tokens, sessions, as i64",
            Ok(EXPECTED.to_vec()),
            counts.map_err(|e| e.to_string()),
        );
    }
    checks.check("rows left after cleanup_all()", LIVE.to_owned(), rows_left(&client).await?);

    // CALL in autocommit: batch_execute outside any transaction, while a
    // second connection listens for the run's NOTIFY.
    client.batch_execute(seed).await?;
    let (listener, mut notifications) = connect(dsn).await?;
    listener.batch_execute("LISTEN authfort_cleanup").await?;
    notices(&mut messages); // only the CALL's notices count below
    let called = client.batch_execute("CALL authfort_cleanup_run()").await;
    checks.check("CALL authfort_cleanup_run() in autocommit", Ok(()), called.map_err(|e| e.to_string()));
    checks.check(
        "run log after CALL: status|keys|tokens|sessions",
        Some("ok|2|3|4".to_owned()),
        last_run(&client).await?,
    );
    checks.check("rows left after CALL", LIVE.to_owned(), rows_left(&client).await?);

    let payload = next_notification(&mut notifications).await;
    checks.check("NOTIFY authfort_cleanup received", true, payload.is_some());
    let run: serde_json::Value = serde_json::from_str(payload.as_deref().unwrap_or("null"))?;
    checks.check("NOTIFY payload status", Some("ok"), run["status"].as_str());
    // as_i64 is None for a JSON float or string: the counts must be JSON integers.
    let counts: Vec<Option<i64>> = ["keys", "tokens", "sessions"].iter().map(|name| run[*name].as_i64()).collect();
    checks.check("NOTIFY payload keys, tokens, sessions", EXPECTED.map(Some).to_vec(), counts);

    // The connection task forwards messages in arrival order, and the server
    // sends the NOTICEs before the CALL's result: they are all here by now.
    let progress = notices(&mut messages);
    checks.check(
        "CALL reports sessions progress in a NOTICE",
        true,
        progress.iter().any(|text| text.contains("rows of sessions deleted so far")),
    );

    // Inside client.transaction() the procedure cannot COMMIT: 2D000, nothing deleted.
    client.batch_execute(seed).await?;
    let transaction = client.transaction().await?;
    let refused = transaction.batch_execute("CALL authfort_cleanup_run()").await;
    transaction.rollback().await?;
    let error = refused.err();
    let db_error = error.as_ref().and_then(|error| error.as_db_error());
    checks.check("CALL inside transaction() fails with 2D000", Some("2D000"), db_error.map(|e| e.code().code()));
    let hint = db_error.and_then(|e| e.hint()).unwrap_or_default();
    checks.check("its HINT mentions autocommit", true, hint.contains("autocommit"));
    checks.check("its HINT mentions authfort_cleanup_all()", true, hint.contains("authfort_cleanup_all()"));
    checks.check("nothing deleted by the refused CALL", SEEDED.to_owned(), rows_left(&client).await?);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dsn, seed_path] = args.as_slice() else {
        eprintln!("usage: {} DSN SEED_SQL", args[0]);
        return ExitCode::from(2);
    };
    let seed = match std::fs::read_to_string(seed_path) {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("{CLIENT}: cannot read {seed_path}: {error}");
            return ExitCode::from(2);
        }
    };
    let mut checks = Checks { failures: 0 };
    if let Err(error) = run(dsn, &seed, &mut checks).await {
        eprintln!("{CLIENT}: {error}");
        return ExitCode::FAILURE;
    }
    if checks.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

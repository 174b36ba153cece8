//! Ways a secret could leave or the daemon be knocked over (issue 10): redirects to other
//! origins, endless answers. Each test stands up the hostile server itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;

use crate::sim_support::{SECRET, Sim, default_scenario, register_contoso};
use crate::support::*;

/// A server on loopback that records every request it gets (path and body) and answers
/// with `answer`.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Server {
    async fn start(answer: fn(&str) -> Response) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let router = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((
                    uri.path().to_string(),
                    String::from_utf8_lossy(&body).into(),
                ));
                answer(uri.path())
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Server { base, seen }
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn redirect_to(target: String) -> impl Fn(&str) -> Response {
    move |path: &str| {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("{target}{path}"))],
        )
            .into_response()
    }
}

fn cloud(authority: &str, graph: &str) -> String {
    format!(
        "[clouds.sim]\nauthority = \"{authority}\"\ngraph = \"{graph}\"\nexchange = \"{graph}\"\nsharepoint = \"{graph}\"\nsharepoint_suffix = \"sharepoint.com\"\ngraph_resource = \"https://graph.microsoft.com\"\nexchange_resource = \"https://outlook.office365.com\"\n\n[checks]\nresources = [\"graph\", \"exchange\"]\n\n[microsoft]\nretry_attempts = 1\n"
    )
}

#[sqlx::test]
async fn a_redirecting_token_endpoint_gets_the_secret_sent_nowhere_else(pool: PgPool) {
    // The other origin records what reaches it; the authority redirects there (307: a
    // client that follows re-sends the form, client_secret included).
    let elsewhere = Server::start(|_| StatusCode::OK.into_response()).await;
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TARGET.set(elsewhere.base.clone()).unwrap();
    let redirector = Server::start(|path| redirect_to(TARGET.get().unwrap().clone())(path)).await;
    let env = TestEnv::with_extra(&pool, &cloud(&redirector.base, &redirector.base));
    register_contoso(&env).await;
    let check = env.exec(&["check", "contoso", "--output", "json"]).await;
    assert_eq!(check.code, 3, "{check:?}");
    let results: Vec<serde_json::Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(results[0]["state"], "check_failed", "{check:?}");
    assert!(
        check.stdout.contains("307"),
        "the error names the redirect: {check:?}"
    );
    assert!(!redirector.seen().is_empty(), "the authority was asked");
    assert_eq!(elsewhere.seen(), [], "nothing followed the redirect");
    assert!(!check.stdout.contains(SECRET) && !check.stderr.contains(SECRET));
}

#[sqlx::test]
async fn a_redirecting_rotation_webhook_delivers_nothing_and_keeps_the_old_secret(pool: PgPool) {
    static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let elsewhere = Server::start(|_| StatusCode::OK.into_response()).await;
    TARGET.set(elsewhere.base.clone()).unwrap();
    let redirector = Server::start(|path| redirect_to(TARGET.get().unwrap().clone())(path)).await;
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5");
    let sim = Sim::start(&scenario).await;
    let key = "k".repeat(32);
    let key_file = tempfile::NamedTempFile::new().unwrap();
    write_file(key_file.path(), &key, 0o600);
    let extra = format!(
        "[rotation]\ngrace = \"0s\"\nverify_timeout = \"10s\"\n[[rotation.webhook]]\nurl = \"{}/secrets\"\nsecret_file = \"{}\"\n",
        redirector.base,
        key_file.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await;
    let rotated = env.exec(&["rotate", "contoso"]).await;
    assert_ne!(rotated.code, 0, "{rotated:?}");
    assert!(
        rotated.stderr.contains("delivery_failed") && rotated.stderr.contains("307"),
        "{rotated:?}"
    );
    assert_eq!(
        redirector.seen().len(),
        1,
        "the configured webhook was tried"
    );
    assert_eq!(elsewhere.seen(), [], "the new secret went nowhere else");
    // Not counted as delivered: the old secret is still the current one.
    let current: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT rotation_id FROM credentials WHERE status = 'current'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(current, None, "the operator's secret stays current");
    sim.running.stop().await;
}

/// Runs `check contoso` and returns its exit code, what it printed, and its peak RSS in KiB
/// (sampled every 10 ms).
async fn check_with_peak_rss(env: &TestEnv) -> (Option<i32>, String, u64) {
    let mut child = env
        .command(&["check", "contoso", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kib = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let rss = text
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(rss);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the check never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    (status.code(), stdout, peak_kib)
}

#[sqlx::test]
async fn an_endless_token_answer_costs_little_memory(pool: PgPool) {
    // The same check against a token endpoint that refuses at once, then against one that
    // answers 200 and then a gigabyte.
    let refusing = Server::start(|_| StatusCode::BAD_REQUEST.into_response()).await;
    let env = TestEnv::with_extra(&pool, &cloud(&refusing.base, &refusing.base));
    register_contoso(&env).await;
    let (_, _, baseline_kib) = check_with_peak_rss(&env).await;
    let flood = Server::start(|_| {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let stream = futures_util::stream::iter(
            (0..1024).map(move |_| Ok::<Bytes, std::io::Error>(chunk.clone())),
        );
        (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response()
    })
    .await;
    env.write_config(&cloud(&flood.base, &flood.base));
    let (code, stdout, peak_kib) = check_with_peak_rss(&env).await;
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("larger than 4 MiB"), "{stdout}");
    let extra_mib = peak_kib.saturating_sub(baseline_kib) / 1024;
    assert!(
        extra_mib < 50,
        "reading a 1 GiB answer cost {extra_mib} MiB more than a refusal ({} MiB)",
        baseline_kib / 1024
    );
}

#[sqlx::test]
async fn a_short_signing_key_is_refused_and_nothing_is_sent(pool: PgPool) {
    let receiver = Server::start(|_| StatusCode::OK.into_response()).await;
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5");
    let sim = Sim::start(&scenario).await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    write_file(key_file.path(), "short-key-16byte", 0o600);
    let extra = format!(
        "[rotation]\ngrace = \"0s\"\nverify_timeout = \"10s\"\n[[rotation.webhook]]\nurl = \"{}/secrets\"\nsecret_file = \"{}\"\n",
        receiver.base,
        key_file.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await;
    let rotated = env.exec(&["rotate", "contoso"]).await;
    assert!(
        rotated.stderr.contains("shorter than 32 bytes"),
        "{rotated:?}"
    );
    assert_eq!(receiver.seen(), [], "nothing signed with a guessable key");
    sim.running.stop().await;
}

/// Whether the server closed `stream` (a read returns end of file or an error) within
/// `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 512];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[sqlx::test]
async fn slow_and_idle_clients_are_cut_off_and_a_flood_of_connections_is_turned_away(pool: PgPool) {
    use tokio::io::AsyncWriteExt;
    let env = TestEnv::new(&pool);
    let daemon = crate::daemon_support::Daemon::start(
        &env,
        &[
            ("KODO_ACCESS__HTTP__REQUEST_TIMEOUT", "1s"),
            ("KODO_ACCESS__HTTP__MAX_CONNECTIONS", "4"),
        ],
    );
    daemon.wait_ready().await;
    // The readiness probe's connection is closed by now, but the daemon may not have seen
    // it yet: give it a moment, so that the four below are all it serves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let address = format!("127.0.0.1:{}", env.http_port);
    // Four connections: one sends nothing, one half a request's headers, one a request
    // and then stays idle on keep-alive, one dribbles a header byte every 300 ms.
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut dribbling = tokio::net::TcpStream::connect(&address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The limit is reached: a fifth connection is closed at once.
    let mut fifth = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        closed_within(&mut fifth, Duration::from_millis(500)).await,
        "a connection over the limit is closed at once: {}",
        daemon.log()
    );
    let dribble = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
            if dribbling.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        dribbling
    });
    for (what, stream) in [
        ("silent", &mut silent),
        ("half", &mut half),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_within(stream, Duration::from_secs(4)).await,
            "the {what} connection is cut off after the 1 s timeout"
        );
    }
    let mut dribbling = dribble.await.unwrap();
    assert!(
        closed_within(&mut dribbling, Duration::from_secs(1)).await,
        "a client dribbling its headers is cut off too"
    );
    assert!(
        daemon.log().contains("too many connections at once"),
        "{}",
        daemon.log()
    );
    // With the slow ones gone, the listener serves again.
    assert_eq!(
        daemon.get("/healthz").await.map(|(status, _)| status),
        Some(200)
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[sqlx::test]
async fn nothing_of_a_secret_is_left_behind_by_removal_killed_deliveries_or_org_remove(
    pool: PgPool,
) {
    let scenario = default_scenario().replace("expires_in_days = 200", "expires_in_days = 5");
    let sim = Sim::start(&scenario).await;
    let backup_dir = tempfile::tempdir().unwrap();
    // What a delivery killed between writing and renaming leaves.
    let leftover = backup_dir.path().join(format!(
        ".contoso.json.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    write_file(&leftover, "{\"client_secret\": \"stale\"}", 0o600);
    let extra = format!(
        "[rotation]\ngrace = \"0s\"\nverify_timeout = \"10s\"\n[[rotation.file]]\ndirectory = \"{}\"\n[[rotation.command]]\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"cat >/dev/null\"]\n",
        backup_dir.path().display()
    );
    let env = TestEnv::with_extra(&pool, &crate::checks::config(&sim, &extra));
    register_contoso(&env).await;
    env.exec(&["check", "contoso"]).await;
    env.exec(&["rotate", "contoso"]).await.success();
    env.exec(&["job", "run", "rotations"]).await.success();
    let delivered = backup_dir.path().join("contoso.json");
    assert!(delivered.exists());
    assert!(
        !leftover.exists(),
        "the killed delivery's temporary file is gone"
    );
    // The replaced secret was removed at Microsoft: its ciphertext is gone with it.
    let credentials: Vec<(String, i32)> =
        sqlx::query_as("SELECT status, length(secret_sealed) FROM credentials ORDER BY created_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(credentials.len(), 2, "{credentials:?}");
    assert_eq!(credentials[0], ("removed".to_string(), 0));
    assert_eq!(credentials[1].0, "current");
    assert!(credentials[1].1 > 0);
    // A removed row that still holds its ciphertext (from before removal wiped it) is
    // wiped by housekeeping.
    sqlx::query("UPDATE credentials SET status = 'removed' WHERE status = 'current'")
        .execute(&pool)
        .await
        .unwrap();
    let housekeeping = env.run(&["job", "run", "housekeeping"]);
    assert!(
        housekeeping
            .success()
            .stdout
            .contains("wiped the ciphertext of 1 removed secret(s)"),
        "{housekeeping:?}"
    );
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credentials WHERE length(secret_sealed) > 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    // A removal cut short after its transaction, before it took back what was delivered
    // (here: run without the deliverers configured): the file is still there...
    env.write_config(&crate::checks::config(
        &sim,
        "[rotation]\nenabled = false\n",
    ));
    let cut_short = env.run(&["org", "remove", "contoso", "--yes"]);
    assert!(
        cut_short
            .success()
            .stdout
            .contains("removed organization contoso")
            && cut_short.stderr.contains("stay valid in tenant"),
        "{cut_short:?}"
    );
    assert!(delivered.exists());
    // ...and repeating the removal takes back the delivered file and says what it cannot
    // take back.
    env.write_config(&crate::checks::config(&sim, &extra));
    let removed = env.run(&["org", "remove", "contoso", "--yes"]);
    assert!(
        removed
            .success()
            .stdout
            .contains("organization contoso was already removed")
            && removed.stdout.contains(&format!(
                "removed the delivered credentials file {}",
                delivered.display()
            )),
        "{removed:?}"
    );
    assert!(!delivered.exists());
    assert!(
        removed.stderr.contains(
            "warning: the backup server was handed contoso's secret by the command /bin/sh: it keeps its copy"
        ),
        "{removed:?}"
    );
    // An organization that never was is still an error.
    env.run(&["org", "remove", "nobody", "--yes"])
        .fails_with(2, "no organization nobody");
    sim.running.stop().await;
}

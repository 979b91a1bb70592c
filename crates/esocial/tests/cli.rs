//! The binary as a person uses it: `esocial up`, then `esocial health`,
//! `esocial token` and a call with that token, then SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use esocial_proto::classifier::v1 as pb;
use esocial_testkit::{TempDir, TestDatabase, TestEvents};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_esocial");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("port")
}

#[tokio::test]
async fn up_serves_the_sandbox_until_sigterm() {
    let database = TestDatabase::create().await.expect("database");
    let events = TestEvents::new();
    let data = TempDir::new("cli").expect("temp dir");
    let address = format!("127.0.0.1:{}", free_port());
    let env = [
        ("DATABASE_URL", database.url().to_owned()),
        ("NATS_URL", events.nats_url.clone()),
        ("ESOCIAL_EVENT_STREAM", events.settings.stream_name.clone()),
        ("ESOCIAL_EVENT_SUBJECT_PREFIX", events.settings.subject_prefix.clone()),
        ("ESOCIAL_DATA_DIR", data.path().display().to_string()),
        ("ESOCIAL_JWKS_FILE", data.path().join("jwks.json").display().to_string()),
        ("ESOCIAL_CLASSIFIER_ADDR", address.clone()),
        ("RUST_LOG", "info".to_owned()),
        ("ESOCIAL_LOG_FORMAT", "json".to_owned()),
    ];
    let mut up = Command::new(BINARY)
        .arg("up")
        .envs(env.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("esocial up starts");
    let mut log_lines = BufReader::new(up.stderr.take().expect("stderr")).lines();
    let logs = tokio::spawn(async move {
        let mut collected = Vec::new();
        while let Ok(Some(line)) = log_lines.next_line().await {
            collected.push(line);
        }
        collected
    });
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("esocial sandbox is up") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "up prints that it is up");

    let mut healthy = false;
    for _ in 0..50 {
        let status = Command::new(BINARY).args(["health", &address]).output().await.expect("health runs");
        if status.status.success() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(healthy, "esocial health reports SERVING");

    let token = Command::new(BINARY)
        .args(["token", "--role", "social_specialist"])
        .envs(env.clone())
        .output()
        .await
        .expect("token");
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).expect("utf-8").trim().to_owned();
    let mut client = pb::classifier_service_client::ClassifierServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connects");
    let mut request = tonic::Request::new(pb::GetSupportTypeRequest {
        code: "BIRTH_ASSISTANCE".to_owned(),
        as_of: Some(esocial_proto::common::v1::Date { year: 2026, month: 1, day: 1 }),
    });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let answer = client.get_support_type(request).await.expect("seeded data answers").into_inner();
    let total = answer
        .support_type
        .and_then(|version| version.content)
        .and_then(|content| content.payment_rule)
        .and_then(|rule| rule.total);
    assert_eq!(total.map(|money| money.kopiykas), Some(5_000_000));

    let pid = up.id().expect("running").to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs");
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), up.wait())
        .await
        .expect("exits within the grace period")
        .expect("status");
    assert!(exit.success(), "a clean exit after SIGTERM: {exit:?}");

    // ESOCIAL_LOG_FORMAT=json: every log line is one JSON object.
    let logs = logs.await.expect("logs");
    assert!(logs.iter().any(|line| line.contains("received SIGTERM")), "{logs:?}");
    for line in &logs {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert!(entry.get("level").is_some() && entry.get("message").is_some(), "{line}");
    }
}

#[tokio::test]
async fn bad_configuration_exits_64_naming_every_problem() {
    let output = Command::new(BINARY)
        .args(["serve", "classifier"])
        .env("DATABASE_URL", "mysql://localhost/x")
        .env("ESOCIAL_CLASSIFIER_ADDR", "not-an-address")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("DATABASE_URL") && message.contains("ESOCIAL_CLASSIFIER_ADDR"), "{message}");
}

#[tokio::test]
async fn tokens_need_the_sandbox_key_and_a_known_role() {
    let data = TempDir::new("cli").expect("temp dir");
    let env = [
        ("ESOCIAL_DATA_DIR", data.path().display().to_string()),
        ("ESOCIAL_JWKS_FILE", data.path().join("jwks.json").display().to_string()),
    ];
    let output = Command::new(BINARY)
        .args(["token", "--role", "social_specialist"])
        .envs(env.clone())
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("run `esocial up` first"));

    let keys = Command::new(BINARY).arg("sandbox-keys").envs(env.clone()).output().await.expect("runs");
    assert!(keys.status.success(), "{}", String::from_utf8_lossy(&keys.stderr));
    assert!(data.path().join("jwks.json").is_file());
    let output =
        Command::new(BINARY).args(["token", "--role", "emperor"]).envs(env.clone()).output().await.expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown role \"emperor\""));
    let output = Command::new(BINARY).args(["token", "--role", "integrator"]).envs(env).output().await.expect("runs");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim().split('.').count(), 3, "a compact JWS");
}

#[tokio::test]
async fn an_unknown_service_is_refused() {
    let output = Command::new(BINARY).args(["serve", "nonexistent"]).output().await.expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service \"nonexistent\""));
}

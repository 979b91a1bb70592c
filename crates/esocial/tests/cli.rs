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

async fn free_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The sandbox as a person uses it: up, sign in from the command line with a
/// sandbox qualified certificate, call the classifier with the token; after
/// the certificate is blocked, sign-in is refused; then SIGTERM.
#[tokio::test]
async fn a_person_signs_in_from_the_command_line_and_calls_the_classifier() {
    let database = TestDatabase::create().await.expect("database");
    let events = TestEvents::new();
    let data = TempDir::new("cli").expect("temp dir");
    let classifier = free_address().await;
    let registry = free_address().await;
    let identity = free_address().await;
    let identity_http = free_address().await;
    let gateway = free_address().await;
    let simulators = free_address().await;
    let outbound: Vec<String> =
        esocial_external::PACKAGES.iter().map(|package| format!("{package}=http://{simulators}")).collect();
    let env = [
        ("DATABASE_URL", database.url().to_owned()),
        ("NATS_URL", events.nats_url.clone()),
        ("ESOCIAL_EVENT_STREAM", events.settings.stream_name.clone()),
        ("ESOCIAL_EVENT_SUBJECT_PREFIX", events.settings.subject_prefix.clone()),
        ("ESOCIAL_DATA_DIR", data.path().display().to_string()),
        ("ESOCIAL_CLASSIFIER_ADDR", classifier.clone()),
        ("ESOCIAL_REGISTRY_ADDR", registry.clone()),
        ("ESOCIAL_IDENTITY_ADDR", identity.clone()),
        ("ESOCIAL_IDENTITY_HTTP_ADDR", identity_http.clone()),
        ("ESOCIAL_IDENTITY_URL", format!("http://{identity}")),
        ("ESOCIAL_TOKEN_ISSUER", format!("http://{identity_http}")),
        ("ESOCIAL_GATEWAY_ADDR", gateway.clone()),
        ("ESOCIAL_SIMULATORS_ADDR", simulators.clone()),
        (
            "ESOCIAL_GATEWAY_ROUTES",
            format!("esocial.classifier.v1=http://{classifier},esocial.registry.v1=http://{registry}"),
        ),
        ("ESOCIAL_GATEWAY_OUTBOUND_ROUTES", outbound.join(",")),
        ("ESOCIAL_GATEWAY_CHECKPOINT_SECONDS", "1".to_owned()),
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
    // The instructions name a sandbox person the specialist may read.
    let sample_rnokpp = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, rest)) = line.split_once("\"rnokpp\":\"") {
                return rest.chars().take_while(char::is_ascii_digit).collect::<String>();
            }
        }
        String::new()
    })
    .await
    .expect("instructions printed");
    assert_eq!(sample_rnokpp.len(), 10, "a sandbox person's RNOKPP in the instructions");
    for address in [&identity, &classifier, &registry, &simulators, &gateway] {
        let mut healthy = false;
        for _ in 0..50 {
            if Command::new(BINARY)
                .args(["health", address.as_str()])
                .output()
                .await
                .expect("health runs")
                .status
                .success()
            {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(healthy, "{address} reports SERVING");
    }

    let person = data.path().join("people").join("classifier-admin");
    let login = |directory: std::path::PathBuf| {
        let env = env.clone();
        async move {
            Command::new(BINARY)
                .arg("login")
                .arg("--cert")
                .arg(directory.join("certificate.pem"))
                .arg("--key")
                .arg(directory.join("private-key.pem"))
                .envs(env)
                .output()
                .await
                .expect("login runs")
        }
    };
    let signed_in = login(person.clone()).await;
    assert!(signed_in.status.success(), "{}", String::from_utf8_lossy(&signed_in.stderr));
    let token = String::from_utf8(signed_in.stdout).expect("utf-8").trim().to_owned();

    let mut client = pb::classifier_service_client::ClassifierServiceClient::connect(format!("http://{classifier}"))
        .await
        .expect("connects");
    let mut request = tonic::Request::new(pb::GetSupportTypeRequest {
        code: "BIRTH_ASSISTANCE".to_owned(),
        as_of: Some(esocial_proto::common::v1::Date { year: 2026, month: 1, day: 1 }),
    });
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let answer = client.get_support_type(request).await.expect("the classifier trusts identity's token").into_inner();
    let total = answer
        .support_type
        .and_then(|version| version.content)
        .and_then(|content| content.payment_rule)
        .and_then(|rule| rule.total);
    assert_eq!(total.map(|money| money.kopiykas), Some(5_000_000));

    // The specialist reads a sandbox person in the register, then imports a
    // generated file: Kyiv's rows are registered, the others are outside
    // the specialist's territory.
    let specialist = login(data.path().join("people").join("specialist")).await;
    assert!(specialist.status.success(), "{}", String::from_utf8_lossy(&specialist.stderr));
    let specialist_token = String::from_utf8(specialist.stdout).expect("utf-8").trim().to_owned();
    let mut register = esocial_proto::registry::v1::registry_service_client::RegistryServiceClient::connect(format!(
        "http://{registry}"
    ))
    .await
    .expect("connects");
    let mut lookup = tonic::Request::new(esocial_proto::registry::v1::GetPersonRequest {
        key: Some(esocial_proto::registry::v1::get_person_request::Key::Rnokpp(sample_rnokpp.clone())),
        as_of: None,
        purpose: "sandbox check".to_owned(),
    });
    lookup.metadata_mut().insert("authorization", format!("Bearer {specialist_token}").parse().expect("ascii"));
    let found = register.get_person(lookup).await.expect("the specialist reads a Kyiv person").into_inner();
    assert_eq!(found.person.and_then(|person| person.data).map(|data| data.rnokpp), Some(sample_rnokpp));

    let file = data.path().join("persons.csv");
    let generated = Command::new(BINARY)
        .args(["registry", "generate", "--persons", "300", "--seed", "7", "--out"])
        .arg(&file)
        .envs(env.clone())
        .output()
        .await
        .expect("generate runs");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let imported = Command::new(BINARY)
        .args(["registry", "import"])
        .arg(&file)
        .envs(env.clone())
        .env("ESOCIAL_TOKEN", &specialist_token)
        .output()
        .await
        .expect("import runs");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let summary = String::from_utf8_lossy(&imported.stdout).into_owned();
    let counts: Vec<u64> = summary
        .split_once(": ")
        .map(|(_, rest)| rest.split(", ").filter_map(|part| part.split_whitespace().next()?.parse().ok()).collect())
        .unwrap_or_default();
    let [rows, registered, rejected, duplicates] = counts[..4] else { panic!("{summary}") };
    assert!(rows >= 300 && registered > 0 && rejected > 0, "{summary}");
    assert_eq!(registered + rejected + duplicates, rows, "{summary}");

    // The security administrator blocks the classifier admin's certificate.
    let admin = login(data.path().join("people").join("security-admin")).await;
    assert!(admin.status.success());
    let admin_token = String::from_utf8(admin.stdout).expect("utf-8").trim().to_owned();
    let mut identity_admin =
        esocial_proto::identity::v1::identity_admin_service_client::IdentityAdminServiceClient::connect(format!(
            "http://{identity}"
        ))
        .await
        .expect("connects");
    let json = Command::new(BINARY)
        .arg("login")
        .arg("--cert")
        .arg(person.join("certificate.pem"))
        .arg("--key")
        .arg(person.join("private-key.pem"))
        .arg("--json")
        .envs(env.clone())
        .output()
        .await
        .expect("login runs");
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let account_id = document["account"]["id"].as_str().expect("account id").to_owned();
    let mut listing = tonic::Request::new(esocial_proto::identity::v1::ListCertificatesRequest {
        account_id,
        purpose: "blocking a lost token".to_owned(),
    });
    listing.metadata_mut().insert("authorization", format!("Bearer {admin_token}").parse().expect("ascii"));
    let certificate_id =
        identity_admin.list_certificates(listing).await.expect("listed").into_inner().certificates[0].id.clone();
    let mut block = tonic::Request::new(esocial_proto::identity::v1::SetCertificateStatusRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        certificate_id,
        status: esocial_proto::identity::v1::CertificateStatus::Blocked.into(),
        reason: "token reported lost".to_owned(),
    });
    block.metadata_mut().insert("authorization", format!("Bearer {admin_token}").parse().expect("ascii"));
    identity_admin.set_certificate_status(block).await.expect("blocked");
    let refused = login(person).await;
    assert!(!refused.status.success(), "a blocked certificate cannot sign in");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("blocked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A member system (the sandbox's Diia portal) through the gateway, then
    // the message log checked from the command line.
    let diia = Command::new(BINARY)
        .args(["client-token", "--client-id", "diia", "--key"])
        .arg(data.path().join("systems").join("diia").join("private-key.pem"))
        .envs(env.clone())
        .output()
        .await
        .expect("client-token runs");
    assert!(diia.status.success(), "{}", String::from_utf8_lossy(&diia.stderr));
    let diia_token = String::from_utf8(diia.stdout).expect("utf-8").trim().to_owned();
    let mut idp =
        esocial_proto::registry::v1::idp_service_client::IdpServiceClient::connect(format!("http://{gateway}"))
            .await
            .expect("connects to the gateway");
    let mut verify = tonic::Request::new(esocial_proto::registry::v1::VerifyIdpCertificateRequest {
        code: "1234567890123452".to_owned(),
    });
    verify.metadata_mut().insert("authorization", format!("Bearer {diia_token}").parse().expect("ascii"));
    let verified = idp.verify_idp_certificate(verify).await.expect("forwarded to the registry").into_inner();
    assert!(!verified.valid);
    let mut signed = false;
    for _ in 0..50 {
        let output =
            Command::new(BINARY).args(["gateway", "verify-log"]).envs(env.clone()).output().await.expect("runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report = String::from_utf8_lossy(&output.stdout).to_string();
        // Calls do not wait for the log: the entry may not be written yet.
        if report.contains("the message log is empty") {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert!(report.contains("gateway-1: intact"), "{report}");
        // Signed, and the checkpoint's copy is in the event stream.
        if !report.contains("signed through entry 0,") && !report.contains("newest checkpoint at entry 0") {
            assert!(report.contains("the event stream's newest checkpoint at entry"), "{report}");
            signed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(signed, "a checkpoint was signed");

    let pid = up.id().expect("running").to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill runs").success());
    let exit = tokio::time::timeout(Duration::from_secs(20), up.wait())
        .await
        .expect("exits within the grace period")
        .expect("status");
    assert!(exit.success(), "a clean exit after SIGTERM: {exit:?}");

    // The gateway's signing key replaced: the chain written so far verifies
    // only with the key it was written with given as an earlier key.
    let replacing = data.path().join("replacing-gateway-signing-key.pem");
    let created =
        Command::new(BINARY).args(["gateway", "signing-key", "--out"]).arg(&replacing).envs(env.clone()).output();
    let created = created.await.expect("signing-key runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let verify_log = async |earlier: &[&std::path::Path]| {
        let mut command = Command::new(BINARY);
        command.args(["gateway", "verify-log"]).envs(env.clone()).env("ESOCIAL_GATEWAY_SIGNING_KEY_FILE", &replacing);
        for path in earlier {
            command.arg("--earlier-key").arg(path);
        }
        command.output().await
    };
    let alone = verify_log(&[]).await.expect("verify-log runs");
    assert!(!alone.status.success(), "{}", String::from_utf8_lossy(&alone.stdout));
    assert!(String::from_utf8_lossy(&alone.stdout).contains("gateway-1: BROKEN at entry 1"), "{alone:?}");
    let replaced = data.path().join(esocial_gateway::SIGNING_KEY_FILE_NAME);
    let both = verify_log(&[&replaced]).await.expect("verify-log runs");
    assert!(both.status.success(), "{}", String::from_utf8_lossy(&both.stderr));
    assert!(String::from_utf8_lossy(&both.stdout).contains("gateway-1: intact"), "{both:?}");
    let missing = verify_log(&[&data.path().join("no-such-key.pem")]).await.expect("verify-log runs");
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("earlier signing key") && said.contains("no-such-key.pem"), "{said}");

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
        .env("DATABASE_URL", "mysql://user:hunter2@localhost/x")
        .env("ESOCIAL_CLASSIFIER_ADDR", "not-an-address")
        .output()
        .await
        .expect("runs");
    assert_eq!(output.status.code(), Some(64));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("DATABASE_URL") && message.contains("ESOCIAL_CLASSIFIER_ADDR"), "{message}");
    assert!(!message.contains("hunter2"), "credentials stay out of the message: {message}");
    assert_eq!(message.matches("DATABASE_URL").count(), 1, "each problem once: {message}");
}

#[tokio::test]
async fn the_sandbox_ca_issues_certificates_with_the_rnokpp_in_the_subject() {
    let data = TempDir::new("cli").expect("temp dir");
    let env = [("ESOCIAL_DATA_DIR", data.path().display().to_string())];
    let created = Command::new(BINARY).args(["identity", "ca", "init"]).envs(env.clone()).output().await.expect("runs");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let out = data.path().join("olena");
    let issued = Command::new(BINARY)
        .args([
            "identity",
            "issue-cert",
            "--rnokpp",
            "3300912347",
            "--name",
            "Олена Тест",
            "--algorithm",
            "ed25519",
            "--out",
        ])
        .arg(&out)
        .envs(env.clone())
        .output()
        .await
        .expect("runs");
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let pem = std::fs::read_to_string(out.join("certificate.pem")).expect("certificate");
    let bundle = std::fs::read_to_string(data.path().join("ca/ca-certificate.pem")).expect("CA");
    let trusted = esocial_identity::qes::TrustedIssuers::from_pem(&bundle).expect("CA bundle");
    let der = pem::parse(&pem).expect("pem").into_contents();
    let verified =
        esocial_identity::qes::verify_chain(&[der], &trusted, chrono::Utc::now()).expect("chains to the sandbox CA");
    assert_eq!(verified.rnokpp.to_string(), "3300912347");

    let bad = Command::new(BINARY)
        .args(["identity", "issue-cert", "--rnokpp", "3300912340", "--name", "X", "--out"])
        .arg(data.path().join("bad"))
        .envs(env)
        .output()
        .await
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rnokpp"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[tokio::test]
async fn an_unknown_service_is_refused() {
    let output = Command::new(BINARY).args(["serve", "nonexistent"]).output().await.expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service \"nonexistent\""));
}

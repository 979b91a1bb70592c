//! Sign-ins per second and token verifications per second, on one core.
//!
//! ```text
//! cargo bench -p esocial-identity --bench login
//! ```
//!
//! The identity service and its client run on a single-threaded Tokio
//! runtime (one core for esocial); PostgreSQL is a separate process. A
//! sign-in is the whole flow: BeginLogin, an ECDSA P-256 signature by the
//! person's key, CompleteLogin (certificate chain check, catalogue lookups,
//! signature check, session, refresh token, access token, event). Token
//! verification is the kit's verifier as every service runs it: first sight
//! of a token (signature check) and a token seen before (remembered).

#![allow(clippy::print_stdout, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use esocial_auth::{JwksSource, TokenVerifier, VerifierSettings};
use esocial_identifiers::{Rnokpp, Sex};
use esocial_identity::ca::KeyAlgorithm;
use esocial_identity::{IdentityServer, Listeners, Settings};
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use esocial_testkit::bench;
use esocial_testkit::{TempDir, TestDatabase, TestEvents};

fn seconds() -> u64 {
    bench::env_number("BENCH_SECONDS", 5)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let database = TestDatabase::create().await?;
        let events = TestEvents::new();
        let data = TempDir::new("identity-bench")?;
        esocial_identity::sandbox::ensure_files(data.path())?;
        let authority = esocial_identity::sandbox::authority(data.path())?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", http.local_addr()?);
        let address = format!("http://{}", grpc.local_addr()?);
        let settings = Settings::from_env(&Env::from_pairs([
            ("DATABASE_URL", database.url().to_owned()),
            ("NATS_URL", events.nats_url.clone()),
            ("ESOCIAL_EVENT_STREAM", events.settings.stream_name.clone()),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX", events.settings.subject_prefix.clone()),
            ("ESOCIAL_DATA_DIR", data.path().display().to_string()),
            ("ESOCIAL_TOKEN_ISSUER", issuer.clone()),
            ("ESOCIAL_DATABASE_MAX_CONNECTIONS", "8".to_owned()),
        ]))?;
        let server = IdentityServer::build(settings).await?;
        let rnokpp = Rnokpp::compose(chrono::NaiveDate::from_ymd_opt(1988, 8, 8).unwrap_or_default(), 7, Sex::Male)?;
        let issued = authority.issue_person(&rnokpp, "Bench Person", KeyAlgorithm::EcdsaP256, -1, 30)?;
        let organization = ("32855961".parse()?, "Bench".to_owned(), "UA80000000000093317".parse()?);
        esocial_identity::bootstrap_security_admin(
            server.identity(),
            organization,
            rnokpp,
            "Bench Person".to_owned(),
            issued.certificate_der.clone(),
        )
        .await?;
        let identity = server.identity().clone();
        let shutdown = Shutdown::new();
        let serving = tokio::spawn(server.run(Listeners { grpc, http }, shutdown.wait()));
        let client = IdentityServiceClient::connect(address.clone()).await?;

        let concurrency = 8;
        let duration = Duration::from_secs(seconds());
        println!(
            "\nidentity on one core (single-threaded runtime; PostgreSQL separate), {} s per figure\n",
            duration.as_secs()
        );
        println!("| measure | count | per second | p50 ms | p99 ms | steal |");
        println!("| --- | --- | --- | --- | --- | --- |");

        let signed_in = bench::drive(concurrency, duration, move |_, _| {
            let mut client = client.clone();
            let issued = issued.clone();
            async move {
                let Ok(challenge) = client.begin_login(pb::BeginLoginRequest {}).await.map(tonic::Response::into_inner)
                else {
                    return false;
                };
                let Ok(id) = uuid::Uuid::parse_str(&challenge.challenge_id) else { return false };
                let Ok(signature) = esocial_identity::ca::sign_with_pem_key(
                    &issued.private_key_pem,
                    &esocial_identity::qes::login_message(&id, &challenge.nonce),
                ) else {
                    return false;
                };
                client
                    .complete_login(pb::CompleteLoginRequest {
                        challenge_id: challenge.challenge_id,
                        certificate_chain: vec![issued.certificate_der.clone()],
                        signature,
                    })
                    .await
                    .is_ok()
            }
        })
        .await;
        println!(
            "| sign-ins ({concurrency} at a time) | {} | {:.0} | {:.2} | {:.2} | {} |",
            signed_in.requests, signed_in.per_second, signed_in.p50_ms, signed_in.p99_ms, signed_in.steal
        );
        anyhow::ensure!(signed_in.errors == 0, "{} sign-ins failed", signed_in.errors);

        // Verification as any service does it, keys from a published set.
        let published = identity.keys.published().await?;
        let source: Arc<dyn JwksSource> = Arc::new(esocial_auth::StaticJwks(published));
        let verifier = TokenVerifier::new(VerifierSettings::new(issuer.clone(), "esocial.classifier"), source);
        let signer = identity.keys.signer().await?;
        let account = esocial_identity::domain::Account {
            id: uuid::Uuid::now_v7(),
            rnokpp,
            full_name: "Bench".to_owned(),
            organization_id: uuid::Uuid::now_v7(),
            position: String::new(),
            roles: vec![esocial_auth::Role::SocialSpecialist],
            territories: Vec::new(),
            status: esocial_identity::domain::AccountStatus::Active,
            version: 1,
        };
        let tokens: Vec<String> = (0..20_000)
            .map(|_| {
                signer.sign(&esocial_identity::tokens::person_claims(
                    &identity.settings,
                    &account,
                    "32855961",
                    uuid::Uuid::now_v7(),
                ))
            })
            .collect::<Result<_, _>>()?;
        let started = Instant::now();
        for token in &tokens {
            verifier.verify(token).await?;
        }
        let first_sight = started.elapsed();
        println!(
            "| token verifications, first sight (Ed25519) | {} | {:.0} | | | |",
            tokens.len(),
            tokens.len() as f64 / first_sight.as_secs_f64()
        );
        let started = Instant::now();
        let repeats = 200_000;
        for index in 0..repeats {
            verifier.verify(&tokens[index % 1000]).await?;
        }
        let remembered = started.elapsed();
        println!(
            "| token verifications, remembered token | {repeats} | {:.0} | | | |",
            repeats as f64 / remembered.as_secs_f64()
        );

        shutdown.trigger();
        serving.await??;
        Ok(())
    })
}

//! `esocial login`: sign in with a certificate and its private key, the way
//! a person's signing tool would, and print the access token.

use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;

/// The challenge bytes the identity service wants signed.
fn login_message(challenge_id: &str, nonce: &[u8]) -> Vec<u8> {
    let mut message = format!("esocial-login:{challenge_id}:").into_bytes();
    message.extend_from_slice(nonce);
    message
}

/// Signs in at `identity_url`; returns the full response.
pub async fn sign_in(
    identity_url: &str,
    certificate_pem: &str,
    private_key_pem: &str,
) -> anyhow::Result<pb::CompleteLoginResponse> {
    let mut chain = Vec::new();
    for block in pem::parse_many(certificate_pem)? {
        if block.tag() == "CERTIFICATE" {
            chain.push(block.into_contents());
        }
    }
    if chain.is_empty() {
        anyhow::bail!("no CERTIFICATE in the certificate file");
    }
    let mut client = IdentityServiceClient::connect(identity_url.to_owned())
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach identity at {identity_url}: {error}"))?;
    let challenge = client.begin_login(pb::BeginLoginRequest {}).await?.into_inner();
    let signature = esocial_identity::ca::sign_with_pem_key(
        private_key_pem,
        &login_message(&challenge.challenge_id, &challenge.nonce),
    )?;
    let response = client
        .complete_login(pb::CompleteLoginRequest {
            challenge_id: challenge.challenge_id,
            certificate_chain: chain,
            signature,
        })
        .await
        .map_err(|status| anyhow::anyhow!("sign-in refused ({:?}): {}", status.code(), status.message()))?;
    Ok(response.into_inner())
}

/// `esocial login --cert FILE --key FILE [--json]`
pub async fn run(identity_url: &str, arguments: &[String]) -> anyhow::Result<()> {
    let mut certificate = None;
    let mut key = None;
    let mut json = false;
    let mut remaining = arguments.iter();
    while let Some(flag) = remaining.next() {
        match flag.as_str() {
            "--cert" => certificate = remaining.next().cloned(),
            "--key" => key = remaining.next().cloned(),
            "--json" => json = true,
            other => anyhow::bail!("unknown option {other:?}; usage: esocial login --cert FILE --key FILE [--json]"),
        }
    }
    let (Some(certificate), Some(key)) = (certificate, key) else {
        anyhow::bail!("usage: esocial login --cert FILE --key FILE [--json]");
    };
    let certificate_pem =
        std::fs::read_to_string(&certificate).map_err(|error| anyhow::anyhow!("{certificate}: {error}"))?;
    let key_pem = std::fs::read_to_string(&key).map_err(|error| anyhow::anyhow!("{key}: {error}"))?;
    let response = sign_in(identity_url, &certificate_pem, &key_pem).await?;
    let tokens = response.tokens.unwrap_or_default();
    if json {
        let account = response.account.unwrap_or_default();
        let document = serde_json::json!({
            "access_token": tokens.access_token,
            "access_token_expires_in_seconds": tokens.access_token_expires_in_seconds,
            "refresh_token": tokens.refresh_token,
            "refresh_token_expires_in_seconds": tokens.refresh_token_expires_in_seconds,
            "session_id": tokens.session_id,
            "account": { "id": account.id, "full_name": account.full_name, "roles": account.roles },
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!("{}", tokens.access_token);
    }
    Ok(())
}

/// `esocial client-token --client-id ID --key FILE`: a system client's
/// access token by client credentials, as member systems get theirs.
pub async fn client_token(auth: &esocial_kit::config::AuthSettings, arguments: &[String]) -> anyhow::Result<()> {
    let arguments =
        crate::arguments::Arguments::parse(arguments, "usage: esocial client-token --client-id ID --key FILE")?;
    let client_id = arguments.required("client-id")?;
    let key_file = arguments.required("key")?;
    let pem = std::fs::read_to_string(key_file).map_err(|error| anyhow::anyhow!("cannot read {key_file}: {error}"))?;
    let key = esocial_auth::SigningKey::from_pkcs8_pem(&pem)?;
    let tokens = esocial_kit::identity::ServiceTokens::new(&auth.identity_url, &auth.token_issuer, client_id, key)?;
    let token = tokens
        .token()
        .await
        .map_err(|status| anyhow::anyhow!("identity refused: {} ({:?})", status.message(), status.code()))?;
    println!("{token}");
    Ok(())
}

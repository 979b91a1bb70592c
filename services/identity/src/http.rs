//! The identity service over HTTP, for standard libraries: the JWK set, the
//! OpenID discovery document, and the OAuth 2.0 token endpoint for client
//! credentials with a JWT assertion (RFC 7523).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use esocial_kit::ApiError;

use crate::domain::CLIENT_SCOPES;
use crate::service::{Error, Identity};

pub fn router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/token", post(token))
        .with_state(identity)
}

async fn jwks(State(identity): State<Arc<Identity>>) -> Response {
    match identity.keys.published().await {
        Ok(keys) => ([("cache-control", "public, max-age=60")], Json(keys)).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot publish keys");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

async fn discovery(State(identity): State<Arc<Identity>>) -> Json<serde_json::Value> {
    let issuer = &identity.settings.issuer;
    Json(serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "subject_types_supported": ["public"],
        "response_types_supported": [],
        "scopes_supported": CLIENT_SCOPES.iter().map(|role| role.as_str()).collect::<Vec<_>>(),
    }))
}

#[derive(Debug, serde::Deserialize)]
struct TokenRequest {
    grant_type: String,
    #[serde(default)]
    client_assertion_type: String,
    #[serde(default)]
    client_assertion: String,
    #[serde(default)]
    scope: String,
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(serde_json::json!({ "error": error, "error_description": description }))).into_response()
}

async fn token(State(identity): State<Arc<Identity>>, Form(request): Form<TokenRequest>) -> Response {
    if request.grant_type != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported");
    }
    if request.client_assertion_type != ASSERTION_TYPE
        || request.client_assertion.is_empty()
        || request.client_assertion.len() > 8192
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a private_key_jwt client assertion is required",
        );
    }
    let scopes: Vec<String> = request.scope.split_whitespace().map(str::to_owned).collect();
    match identity.issue_service_token(&request.client_assertion, &scopes).await {
        Ok((access_token, granted)) => Json(serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": identity.settings.service_token_lifetime.as_secs(),
            "scope": granted.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(" "),
        }))
        .into_response(),
        Err(Error::Api(ApiError::Refused { message, .. })) => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &message)
        }
        Err(Error::Api(ApiError::PermissionDenied(message))) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &message)
        }
        Err(error) => {
            let status = tonic::Status::from(error);
            tracing::warn!(message = status.message(), "token endpoint failed");
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "try again later")
        }
    }
}

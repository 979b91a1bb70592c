use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;

use crate::{Access, AccessPolicy, Caller, TokenVerifier};

/// Tower layer that authenticates and authorises every gRPC request before it
/// reaches a service: the method's [`Access`] rule is looked up by path, the
/// bearer token verified, the roles checked, and the [`Caller`] inserted into
/// the request extensions (tonic hands them to the handler).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
    policy: Arc<AccessPolicy>,
}

impl AuthLayer {
    pub fn new(verifier: Arc<TokenVerifier>, policy: Arc<AccessPolicy>) -> Self {
        Self { verifier, policy }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, verifier: self.verifier.clone(), policy: self.policy.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
    policy: Arc<AccessPolicy>,
}

/// The bearer token in `authorization`, if there is a well-formed one.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for AuthService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let method = request.uri().path().to_owned();
        let access = self.policy.access_for(&method);
        Box::pin(async move {
            let Some(access) = access else {
                tracing::warn!(%method, "denied: method has no access rule");
                return Ok(Status::permission_denied(format!("method {method} is not open to any caller")).into_http());
            };
            if access == Access::Public {
                return inner.call(request).await;
            }
            let Some(token) = bearer_token(request.headers()) else {
                return Ok(Status::unauthenticated("a bearer token is required").into_http());
            };
            let claims = match verifier.verify(token).await {
                Ok(claims) => claims,
                Err(error) => {
                    tracing::info!(%method, reason = %error, "refused token");
                    return Ok(Status::unauthenticated("invalid token").into_http());
                }
            };
            let caller = Caller::from_claims(&claims);
            if !access.allows(&caller) {
                tracing::info!(%method, subject = %caller.subject, "denied: missing role");
                let required = match access {
                    Access::AnyRole(roles) => roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", "),
                    Access::Public | Access::Authenticated => String::new(),
                };
                return Ok(Status::permission_denied(format!("method {method} requires one of the roles: {required}"))
                    .into_http());
            }
            request.extensions_mut().insert(caller);
            inner.call(request).await
        })
    }
}

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

/// Where the gateway puts the token it exchanged for a member's (the bare
/// token, without a scheme) on a call it forwards to a service.
///
/// Not `authorization`: HTTP/2 libraries (h2, nghttp2) never add an
/// `authorization` value to a connection's header table (HPACK), so a token
/// in it is Huffman-coded in full on every call and decoded in full at the
/// other end. The gateway sends a member's exchanged token on every one of
/// its calls over the same connection; in a header of its own it goes in
/// full once and is then referred to by its place in the table. That gives
/// nothing away: HPACK matches whole values only, so a peer sharing the
/// connection learns nothing of a token it cannot guess whole (a signed
/// JWT). Callers cannot set it through the gateway, which removes every
/// `x-esocial-*` header a caller sends.
pub const FORWARDED_TOKEN_HEADER: http::HeaderName = http::HeaderName::from_static("x-esocial-token");

/// A call that carries two tokens: a bearer token in `authorization` and
/// one in [`FORWARDED_TOKEN_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoTokens;

/// The token a call to a service carries: a bearer token in
/// `authorization`, or one the gateway forwarded in
/// [`FORWARDED_TOKEN_HEADER`]. Both are verified alike; a call with both is
/// refused, so that no call presents two identities.
pub fn call_token(headers: &http::HeaderMap) -> Result<Option<&str>, TwoTokens> {
    let mut forwarded = headers.get_all(FORWARDED_TOKEN_HEADER).iter();
    let Some(token) = forwarded.next() else { return Ok(bearer_token(headers)) };
    if forwarded.next().is_some() || headers.contains_key(http::header::AUTHORIZATION) {
        return Err(TwoTokens);
    }
    Ok(token.to_str().ok().map(str::trim).filter(|token| !token.is_empty()))
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
            let token = match call_token(request.headers()) {
                Ok(Some(token)) => token,
                Ok(None) => return Ok(Status::unauthenticated("a bearer token is required").into_http()),
                Err(TwoTokens) => {
                    return Ok(Status::unauthenticated(format!(
                        "a call carries one token: in authorization or in {FORWARDED_TOKEN_HEADER}, not both"
                    ))
                    .into_http());
                }
            };
            let claims = match verifier.verify(token).await {
                Ok(claims) => claims,
                Err(error) => {
                    tracing::info!(%method, reason = %error, "refused token");
                    return Ok(Status::unauthenticated("invalid token").into_http());
                }
            };
            let caller = Caller::from_claims(&claims, verifier.accepted_until(&claims));
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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_call_token_comes_from_authorization_or_from_the_gateway_header() {
        assert_eq!(call_token(&headers(&[("authorization", "Bearer abc")])), Ok(Some("abc")));
        assert_eq!(call_token(&headers(&[("x-esocial-token", "def")])), Ok(Some("def")));
        assert_eq!(call_token(&headers(&[("authorization", "Basic abc")])), Ok(None), "not a bearer token");
        assert_eq!(call_token(&headers(&[("x-esocial-token", " ")])), Ok(None), "an empty token");
        assert_eq!(call_token(&headers(&[])), Ok(None));
    }

    #[test]
    fn a_call_with_two_tokens_has_them_refused() {
        assert_eq!(
            call_token(&headers(&[("authorization", "Bearer abc"), ("x-esocial-token", "def")])),
            Err(TwoTokens)
        );
        assert_eq!(
            call_token(&headers(&[("authorization", "Basic abc"), ("x-esocial-token", "def")])),
            Err(TwoTokens),
            "a malformed authorization beside a forwarded token",
        );
        assert_eq!(call_token(&headers(&[("x-esocial-token", "abc"), ("x-esocial-token", "def")])), Err(TwoTokens));
    }
}

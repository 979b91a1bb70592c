//! Who is calling, and may they call this method.
//!
//! * [`TokenVerifier`] checks bearer JWTs: EdDSA only (the algorithm is
//!   pinned, never read from the token), `iss`, `aud`, `exp`, `sub` and `jti`
//!   required, keys looked up by `kid` in a JWKS from a [`JwksSource`].
//! * [`AccessPolicy`] says, per gRPC method, who may call it; a method that is
//!   not in the table is denied.
//! * [`AuthLayer`] applies both to every request of a tonic server and puts
//!   the verified [`Caller`] into the request extensions.
//! * [`SigningKey`] mints tokens; the identity service is the only issuer in
//!   production, tests and the sandbox use it directly.

mod claims;
mod jwks;
mod layer;
mod policy;
mod signing;
mod verifier;

pub use claims::{Actor, Audience, CLIENT_SUBJECT_PREFIX, Caller, Claims, Role, system_client_of};
pub use jwks::{JwksSource, StaticJwks};
pub use layer::{AuthLayer, AuthService, FORWARDED_TOKEN_HEADER, TwoTokens, bearer_token, call_token};
pub use policy::{Access, AccessPolicy};
pub use signing::{SigningError, SigningKey};
pub use verifier::{TokenVerifier, VerificationError, VerifierSettings};

/// The method paths that every esocial server serves without a token: the
/// standard health checks and server reflection.
pub const INFRASTRUCTURE_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.health.v1.Health/List",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    // The older protocol, still the one many clients speak (Python grpcio).
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

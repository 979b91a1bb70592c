//! The gRPC adapters: each external system's trait implemented by calls to
//! the exchange gateway, which routes them by proto package.
//!
//! Every call carries `authorization: Bearer <token>` from the
//! [`TokenSource`] and a deadline (`grpc-timeout`); a failed status becomes
//! an [`Error`], and every answer is parsed into domain types
//! (identifiers with their check digits, dates, enums) before it is
//! returned: what does not parse is
//! [`Error::InvalidResponse`].
//!
//! The proto ↔ domain conversions live here too; the simulators use the same
//! functions to read requests, so both sides agree on the contract.

mod bank;
mod civil_registry;
pub(crate) mod convert;
mod demographic;
mod diia;
mod ehealth;
mod tax;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

pub use bank::GrpcBank;
pub(crate) use bank::{payment_from_proto, report_to_proto};
pub use civil_registry::GrpcCivilRegistry;
pub(crate) use civil_registry::{record_to_proto as birth_record_to_proto, registration_from_proto};
pub use demographic::GrpcDemographicRegister;
pub(crate) use demographic::record_to_proto as demographic_record_to_proto;
pub use diia::GrpcDiia;
pub(crate) use diia::notification_to_proto;
pub use ehealth::GrpcPatientRegister;
pub(crate) use ehealth::patient_to_proto;
pub use tax::GrpcTaxRegister;
pub(crate) use tax::{month_from_proto, month_to_proto, taxpayer_to_proto};

use crate::{Error, TokenError, TokenSource};

/// The deadline of a call unless [`Gateway::with_call_timeout`] sets another.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// [`TokenSource`] behind a pointer: its futures boxed, so the adapters need
/// no type parameter.
trait BoxedTokenSource: Send + Sync {
    fn boxed_token(&self) -> Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + '_>>;
}

impl<Source: TokenSource> BoxedTokenSource for Source {
    fn boxed_token(&self) -> Pin<Box<dyn Future<Output = Result<String, TokenError>> + Send + '_>> {
        Box::pin(self.token())
    }
}

/// The connection to the exchange gateway that every adapter shares: a
/// channel, a token source and the deadline of each call.
#[derive(Clone)]
pub struct Gateway {
    channel: Channel,
    tokens: Arc<dyn BoxedTokenSource>,
    call_timeout: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Gateway").field("call_timeout", &self.call_timeout).finish_non_exhaustive()
    }
}

impl Gateway {
    /// `channel` points at the exchange gateway (or, in tests, straight at
    /// the simulators).
    pub fn new(channel: Channel, tokens: impl TokenSource + 'static) -> Self {
        Self { channel, tokens: Arc::new(tokens), call_timeout: DEFAULT_CALL_TIMEOUT }
    }

    /// The deadline of every call from now on.
    #[must_use]
    pub fn with_call_timeout(mut self, call_timeout: Duration) -> Self {
        self.call_timeout = call_timeout;
        self
    }

    /// A request with the bearer token and the deadline.
    async fn request<Message>(&self, message: Message) -> Result<tonic::Request<Message>, Error> {
        let token = self.tokens.boxed_token().await?;
        let authorization: MetadataValue<Ascii> =
            format!("Bearer {token}").parse().map_err(|_| TokenError("the token is not printable ASCII".to_owned()))?;
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", authorization);
        request.set_timeout(self.call_timeout);
        Ok(request)
    }
}

/// The adapters of all six systems over one gateway connection.
#[derive(Debug, Clone)]
pub struct GatewayClients {
    pub civil_registry: GrpcCivilRegistry,
    pub demographic: GrpcDemographicRegister,
    pub tax: GrpcTaxRegister,
    pub ehealth: GrpcPatientRegister,
    pub bank: GrpcBank,
    pub diia: GrpcDiia,
}

impl GatewayClients {
    /// Adapters calling the gateway at `channel` with tokens from `tokens`.
    pub fn new(channel: Channel, tokens: impl TokenSource + 'static) -> Self {
        Self::over(&Gateway::new(channel, tokens))
    }

    /// Adapters sharing a configured gateway connection.
    pub fn over(gateway: &Gateway) -> Self {
        Self {
            civil_registry: GrpcCivilRegistry::new(gateway.clone()),
            demographic: GrpcDemographicRegister::new(gateway.clone()),
            tax: GrpcTaxRegister::new(gateway.clone()),
            ehealth: GrpcPatientRegister::new(gateway.clone()),
            bank: GrpcBank::new(gateway.clone()),
            diia: GrpcDiia::new(gateway.clone()),
        }
    }
}

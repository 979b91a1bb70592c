//! The CloudEvents 1.0 binary-mode mapping onto NATS headers.

use chrono::{DateTime, Utc};
use opentelemetry::propagation::Extractor;
use uuid::Uuid;

pub const SPEC_VERSION: &str = "1.0";
pub const CONTENT_TYPE: &str = "application/protobuf";
/// Prefix of every `ce-type`.
pub const TYPE_PREFIX: &str = "ua.gov.esocial";

pub mod header {
    pub const SPEC_VERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const TYPE: &str = "ce-type";
    pub const SOURCE: &str = "ce-source";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const DATA_SCHEMA: &str = "ce-dataschema";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
}

/// One kind of event a service publishes: `service.entity.event`, with the
/// protobuf message that is its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    pub service: &'static str,
    pub entity: &'static str,
    pub event: &'static str,
    /// Full protobuf name of the payload message.
    pub payload: &'static str,
}

impl EventType {
    /// Subject without the deployment's prefix: `classifier.support_type.retired`.
    pub fn relative_subject(&self) -> String {
        format!("{}.{}.{}", self.service, self.entity, self.event)
    }

    /// `ua.gov.esocial.classifier.support_type.retired.v1`
    pub fn ce_type(&self) -> String {
        format!("{TYPE_PREFIX}.{}.{}.{}.v1", self.service, self.entity, self.event)
    }

    /// `/esocial/classifier`
    pub fn source(&self) -> String {
        format!("/esocial/{}", self.service)
    }

    /// `proto:esocial.classifier.v1.SupportTypeRetired`
    pub fn data_schema(&self) -> String {
        format!("proto:{}", self.payload)
    }
}

/// An event as a consumer receives it.
#[derive(Debug, Clone)]
pub struct ReceivedEvent {
    pub id: Uuid,
    pub event_type: String,
    pub source: String,
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    /// The NATS subject it arrived on.
    pub nats_subject: String,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedEvent {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} has an invalid value")]
    InvalidHeader(&'static str),
    #[error("unsupported CloudEvents spec version")]
    SpecVersion,
}

impl ReceivedEvent {
    /// Reads the CloudEvent attributes of a JetStream message.
    pub fn from_message(message: &async_nats::Message) -> Result<Self, MalformedEvent> {
        let headers = message.headers.as_ref().ok_or(MalformedEvent::MissingHeader(header::ID))?;
        let text = |name: &'static str| headers.get(name).map(|value| value.as_str().to_owned());
        let required = |name: &'static str| text(name).ok_or(MalformedEvent::MissingHeader(name));
        if required(header::SPEC_VERSION)? != SPEC_VERSION {
            return Err(MalformedEvent::SpecVersion);
        }
        let id = Uuid::parse_str(&required(header::ID)?).map_err(|_| MalformedEvent::InvalidHeader(header::ID))?;
        let time = DateTime::parse_from_rfc3339(&required(header::TIME)?)
            .map_err(|_| MalformedEvent::InvalidHeader(header::TIME))?
            .with_timezone(&Utc);
        Ok(Self {
            id,
            event_type: required(header::TYPE)?,
            source: required(header::SOURCE)?,
            subject: text(header::SUBJECT),
            time,
            nats_subject: message.subject.to_string(),
            payload: message.payload.to_vec(),
            traceparent: text(header::TRACEPARENT),
            tracestate: text(header::TRACESTATE),
        })
    }

    /// Decodes the protobuf payload.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_slice())
    }
}

/// Trace context of a received event, for [`esocial_kit::telemetry::set_parent_from`].
#[derive(Debug)]
pub struct EventTraceContext<'a>(pub &'a ReceivedEvent);

impl Extractor for EventTraceContext<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            header::TRACEPARENT => self.0.traceparent.as_deref(),
            header::TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![header::TRACEPARENT, header::TRACESTATE]
    }
}

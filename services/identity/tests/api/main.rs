//! API tests of the identity service against real PostgreSQL and NATS, with
//! certificates made in the test by a CA of its own.

mod admin;
mod harness;
mod login;
mod security_review;
mod service_tokens;
mod token_exchange;

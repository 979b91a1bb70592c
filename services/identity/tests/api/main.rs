//! API tests of the identity service against real PostgreSQL and NATS, with
//! certificates made in the test by a CA of its own.

mod admin;
mod harness;
mod login;
mod service_tokens;

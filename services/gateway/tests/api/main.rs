//! API tests of the exchange gateway: a real classifier and registry behind
//! it, real PostgreSQL and NATS, tokens as identity would issue them.

mod admin;
mod harness;
mod message_log;
mod proxy;
mod subscriptions;

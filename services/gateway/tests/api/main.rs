//! API tests of the exchange gateway: a real identity service, classifier
//! and registry behind it, real PostgreSQL and NATS.

mod admin;
mod catalog;
mod harness;
mod message_log;
mod migration;
mod mutual_tls;
mod proxy;
mod subscriptions;

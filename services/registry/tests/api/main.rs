//! API tests of the registry against real PostgreSQL and NATS: each test
//! gets its own database and event stream, a seeded classifier whose events
//! the registry replicates, and a registry on port 0.

mod extracts;
mod harness;
mod idp;
mod import;
mod persons;
mod providers;

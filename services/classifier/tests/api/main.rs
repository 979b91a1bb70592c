//! API tests of the classifier: the service on port 0 against real
//! PostgreSQL and NATS, each test with its own database and stream, called
//! through the generated gRPC client.

mod auth;
mod events;
mod harness;
mod reference_books;
mod server;
mod support_types;

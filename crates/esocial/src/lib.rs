//! The `esocial` binary's commands, as a library so that tests (and the
//! compose file check) see the same tables the binary uses.

#![allow(clippy::print_stdout)]

pub mod arguments;
pub mod gateway_commands;
pub mod identity_commands;
pub mod login;
pub mod registry_commands;
pub mod sandbox;
pub mod services;

/// Every command the binary accepts.
pub const COMMANDS: &[&str] = &[
    "up",
    "serve",
    "migrate",
    "seed",
    "sandbox-init",
    "login",
    "client-token",
    "identity",
    "registry",
    "gateway",
    "health",
    "config",
    "help",
];

pub const USAGE: &str = "usage: esocial <command>

commands:
  up                   run every service in one process with sandbox data, CA and people
  serve <service>      run one service (identity, classifier, registry, simulators, gateway)
  migrate              create every service's schema and run its migrations
  seed                 load the reference data that is missing (support types, reference books)
  sandbox-init         create the sandbox CA, identity master key, register signing key and people
                       (certificates in the data dir)
  login --cert FILE --key FILE [--json]
                       sign in with a qualified e-signature; prints the access token
  client-token --client-id ID --key FILE
                       a system client's access token by client credentials (RFC 7523);
                       member systems call the gateway with it
  identity …           CA, certificates, master key, first administrator (esocial identity help)
  registry …           signing key, synthetic persons, bulk import of a file (esocial registry help)
  gateway …            checkpoint signing key, verification of the message log (esocial gateway help)
  health <address>     exit 0 if the gRPC server at host:port reports SERVING
  config               print the environment variables and their defaults

configuration comes from environment variables; `esocial config` lists them.";

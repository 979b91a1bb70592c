//! The `esocial` binary's commands, as a library so that tests (and the
//! compose file check) see the same tables the binary uses.

#![allow(clippy::print_stdout)]

pub mod sandbox;
pub mod services;

/// Every command the binary accepts.
pub const COMMANDS: &[&str] = &["up", "serve", "migrate", "seed", "token", "sandbox-keys", "health", "config", "help"];

pub const USAGE: &str = "usage: esocial <command>

commands:
  up                   run every service in one process with sandbox data and keys
  serve <service>      run one service (services: classifier)
  migrate              create every service's schema and run its migrations
  seed                 load the seed data that is missing (reference books, support types)
  token [--role R]... [--audience A] [--minutes N] [--subject S]
                       print an access token signed with the sandbox key
  sandbox-keys         create the sandbox signing key and its JWKS if missing
  health <address>     exit 0 if the gRPC server at host:port reports SERVING
  config               print the environment variables and their defaults

configuration comes from environment variables; `esocial config` lists them.";

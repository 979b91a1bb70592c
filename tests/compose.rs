//! There is no Docker engine on these machines, so the compose file is
//! checked against the binary instead: every container of the esocial image
//! runs a command the binary knows, every service it serves exists, the
//! environment holds only variables the configuration code reads, and the
//! published ports are the ones the services listen on.

use std::collections::BTreeMap;

use serde_yaml::Value;

fn compose() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml")).expect("compose file");
    serde_yaml::from_str(&text).expect("valid YAML")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// A service's environment after merging `<<` anchors.
fn environment(service: &Value) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    if let Some(Value::Mapping(map)) = service.get("environment") {
        if let Some(Value::Mapping(base)) = map.get("<<") {
            for (key, value) in base {
                merged.insert(text(key), text(value));
            }
        }
        for (key, value) in map {
            if text(key) != "<<" {
                merged.insert(text(key), text(value));
            }
        }
    }
    merged
}

fn esocial_containers(document: &Value) -> Vec<(String, Value)> {
    let services = document.get("services").and_then(Value::as_mapping).expect("services");
    services
        .iter()
        .filter(|(_, service)| {
            service.get("image").and_then(Value::as_str).is_some_and(|image| image.starts_with("esocial"))
        })
        .map(|(name, service)| (text(name), service.clone()))
        .collect()
}

#[test]
fn every_esocial_container_runs_a_command_the_binary_knows() {
    let document = compose();
    let containers = esocial_containers(&document);
    assert!(containers.len() >= 4, "migrate, sandbox-init, seed and the services");
    let mut served = Vec::new();
    for (name, service) in &containers {
        let command: Vec<String> =
            service.get("command").and_then(Value::as_sequence).expect("command list").iter().map(text).collect();
        assert!(esocial::COMMANDS.contains(&command[0].as_str()), "{name}: unknown command {:?}", command[0]);
        if command[0] == "serve" {
            assert!(
                esocial::services::NAMES.contains(&command[1].as_str()),
                "{name}: unknown service {:?}",
                command[1]
            );
            assert_eq!(name, &command[1], "a service container is named after its service");
            served.push(command[1].clone());
        }
    }
    served.sort();
    let mut known: Vec<String> = esocial::services::NAMES.iter().map(|name| (*name).to_owned()).collect();
    known.sort();
    assert_eq!(served, known, "every service of the binary has a container");
}

#[test]
fn environment_and_ports_agree_with_the_configuration_code() {
    let document = compose();
    let known: Vec<&str> = esocial::services::variables().iter().map(|variable| variable.name).collect();
    for (name, service) in esocial_containers(&document) {
        let env = environment(&service);
        for key in env.keys() {
            assert!(known.contains(&key.as_str()), "{name}: {key} is not read by the configuration code");
        }
        // The configuration must parse as the services will parse it.
        let settings = esocial::services::ProcessSettings::from_env(&esocial_kit::config::Env::from_pairs(env.clone()));
        assert!(settings.is_ok(), "{name}: {settings:?}");
        let command: Vec<String> =
            service.get("command").and_then(Value::as_sequence).expect("command").iter().map(text).collect();
        if command[0] != "serve" {
            continue;
        }
        let variable = format!("ESOCIAL_{}_ADDR", command[1].to_uppercase());
        let listen = env.get(&variable).unwrap_or_else(|| panic!("{name}: {variable} must be set"));
        assert!(listen.starts_with("0.0.0.0:"), "{name}: inside a container listen on all interfaces, not {listen}");
        let port = listen.rsplit(':').next().expect("port");
        let ports: Vec<String> =
            service.get("ports").and_then(Value::as_sequence).expect("ports").iter().map(text).collect();
        assert!(
            ports.iter().any(|mapping| mapping.ends_with(&format!(":{port}"))),
            "{name}: port {port} is not published ({ports:?})"
        );
        assert!(ports.iter().all(|mapping| mapping.starts_with("127.0.0.1:")), "{name}: publish on loopback only");
    }
}

#[test]
fn nats_runs_jetstream_with_durable_writes() {
    let document = compose();
    let nats = document.get("services").and_then(|services| services.get("nats")).expect("nats service");
    let image = nats.get("image").and_then(Value::as_str).expect("image");
    let version: Vec<u32> = image.trim_start_matches("nats:").split('.').filter_map(|part| part.parse().ok()).collect();
    assert!(version >= vec![2, 10], "sync_interval needs NATS 2.10 or later, found {image}");
    let config =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/nats.conf")).expect("nats.conf");
    assert!(config.contains("jetstream {"), "JetStream enabled");
    assert!(config.lines().any(|line| line.trim() == "sync_interval: always"), "acknowledged writes are flushed");
    for (name, service) in esocial_containers(&document) {
        if let Some(url) = environment(&service).get("NATS_URL") {
            assert_eq!(url, "nats://nats:4222", "{name}");
        }
    }
}

#[test]
fn services_trust_the_identity_container_and_it_issues_under_the_same_name() {
    let document = compose();
    for (name, service) in esocial_containers(&document) {
        let env = environment(&service);
        assert_eq!(env.get("ESOCIAL_IDENTITY_URL").map(String::as_str), Some("http://identity:50056"), "{name}");
        assert_eq!(env.get("ESOCIAL_TOKEN_ISSUER").map(String::as_str), Some("http://identity:50057"), "{name}");
    }
}

//! `esocial`: one binary for every service. See `esocial help`.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use esocial::{USAGE, gateway_commands, identity_commands, login, registry_commands, sandbox, services};
use esocial_kit::config::{EXIT_BAD_CONFIGURATION, Env};

fn report(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("esocial {command}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::from_process();
    let command = arguments.first().map(String::as_str).unwrap_or("help");
    match command {
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "config" => {
            services::print_configuration();
            return ExitCode::SUCCESS;
        }
        "health" => {
            let Some(address) = arguments.get(1) else {
                eprintln!("esocial health: which address? e.g. 127.0.0.1:50051");
                return ExitCode::FAILURE;
            };
            let checked = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(services::check_health(address)));
            return report(command, checked);
        }
        _ => {}
    }

    // Everything else reads the full configuration first, before any
    // connection or port.
    let settings = match services::ProcessSettings::from_env(&env) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("esocial: {error}");
            return ExitCode::from(u8::try_from(EXIT_BAD_CONFIGURATION).unwrap_or(64));
        }
    };
    if command == "login" {
        let identity_url = settings.common().auth.identity_url.clone();
        let result = runtime()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(login::run(&identity_url, &arguments[1..])));
        return report(command, result);
    }
    if command == "client-token" {
        let result = runtime()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(login::client_token(&settings.common().auth, &arguments[1..])));
        return report(command, result);
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("esocial: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let telemetry = esocial_kit::telemetry::init("esocial", &settings.common().telemetry)?;
        let result = match (command, arguments.get(1).map(String::as_str)) {
            ("up", _) => sandbox::up(&settings).await,
            ("serve", Some(service)) => services::serve(&settings, service).await,
            ("serve", None) => Err(anyhow::anyhow!("which service? {}", services::NAMES.join(", "))),
            ("migrate", _) => services::migrate(&settings).await,
            ("seed", _) => services::seed(&settings).await,
            ("sandbox-init", _) => sandbox::init(&settings).await.map(|people| {
                for person in people {
                    println!("{:<18} {} {}", person.handle, person.certificate.display(), person.private_key.display());
                }
            }),
            ("identity", _) => identity_commands::run(&settings, &arguments[1..]).await,
            ("registry", _) => registry_commands::run(&settings, &arguments[1..]).await,
            ("gateway", _) => gateway_commands::run(&settings, &arguments[1..]).await,
            (other, _) => Err(anyhow::anyhow!("unknown command {other:?}\n\n{USAGE}")),
        };
        // Send what is buffered before the runtime goes away.
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("esocial: {error:#}");
            ExitCode::FAILURE
        }
    }
}

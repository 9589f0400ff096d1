//! The `molecule-server` binary: reads its configuration and runs the control plane.

use std::process::ExitCode;

use clap::Parser;
use molecule_server::config::{Command, Config};
use molecule_server::healthcheck;
use molecule_server::telemetry::Telemetry;

fn main() -> ExitCode {
    // `.env` first, so that its values can fill the flags' environment variables; variables
    // already set win. A malformed `.env` is reported after logging starts.
    let dotenv = dotenvy::dotenv();
    let config = Config::parse();
    if config.command == Some(Command::Healthcheck) {
        let addr = healthcheck::probe_address(config.host, config.port);
        return match healthcheck::check(addr, healthcheck::TIMEOUT) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            molecule_server::logging::init(config.log_format, None);
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The exporter's requests run on the runtime.
    let telemetry = {
        let _inside = runtime.enter();
        Telemetry::from_env()
    };
    let telemetry = match telemetry {
        Ok(t) => t,
        Err(e) => {
            molecule_server::logging::init(config.log_format, None);
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    molecule_server::logging::init(config.log_format, telemetry.as_ref());
    if telemetry.is_some() {
        tracing::info!("telemetry: exporting traces over OTLP/HTTP");
    }
    if let Err(e) = &dotenv
        && !e.not_found()
    {
        tracing::error!("cannot read .env: {e}");
        return ExitCode::FAILURE;
    }
    let outcome = runtime.block_on(molecule_server::run(config));
    // The runtime still runs the last exports while this thread waits for them.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `molecule-server` binary: reads its configuration and runs the control plane.

use std::process::ExitCode;

use clap::Parser;
use molecule_server::config::Config;

fn main() -> ExitCode {
    // `.env` first, so that its values can fill the flags' environment variables; variables
    // already set win. A malformed `.env` is reported after logging starts.
    let dotenv = dotenvy::dotenv();
    let config = Config::parse();
    molecule_server::logging::init(config.log_format);
    if let Err(e) = &dotenv
        && !e.not_found()
    {
        tracing::error!("cannot read .env: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(molecule_server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

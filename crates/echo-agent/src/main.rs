//! `molecule-echo-agent`: see the library documentation for the contract it follows.

use std::process::ExitCode;

use molecule_echo_agent::{Agent, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("echo-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-agent: cannot listen on port {}: {e}", config.port);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "echo-agent: workspace {} listening on port {}",
        config.workspace_id, config.port
    );
    let agent = Agent::new(config);
    tokio::spawn(agent.clone().run_registry());
    tokio::select! {
        served = agent.serve(listener) => {
            if let Err(e) = served {
                eprintln!("echo-agent: server stopped: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
    }
}

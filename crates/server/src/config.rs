//! Configuration: every setting is an environment variable and an equal command-line flag.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The server's configuration. A `.env` file in the working directory (or a parent) is read
/// first; variables already in the environment win over it, and flags win over both.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "molecule-server",
    version,
    about = "The molecule-rs control plane"
)]
pub struct Config {
    /// Database: postgres://… or sqlite:… (unset: the SQLite file molecule.db in the data
    /// directory).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for the embedded database and other state; created if missing.
    #[arg(long, env = "MOLECULE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "MOLECULE_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,

    /// Port to listen on (0: any free port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Log format.
    #[arg(long, env = "MOLECULE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_8080_with_sqlite_in_data() {
        let c = Config::try_parse_from(["molecule-server"]).unwrap();
        // DATABASE_URL may be set in a developer's shell; the other defaults are fixed.
        assert_eq!(c.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.port, 8080);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.log_format, LogFormat::Human);
    }

    #[test]
    fn flags_parse_and_bad_values_are_refused() {
        let c = Config::try_parse_from([
            "molecule-server",
            "--port",
            "9090",
            "--host",
            "0.0.0.0",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(c.port, 9090);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(Config::try_parse_from(["molecule-server", "--port", "99999"]).is_err());
        assert!(Config::try_parse_from(["molecule-server", "--host", "nowhere"]).is_err());
    }
}

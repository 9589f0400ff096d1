//! Tests of the configuration's parsing and defaults.
use super::*;

#[test]
fn defaults_listen_on_loopback_8080_with_sqlite_in_data() {
    let c = Config::try_parse_from(["molecule-server"]).unwrap();
    // DATABASE_URL may be set in a developer's shell; the other defaults are fixed.
    assert_eq!(c.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.port, 8080);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.log_format, LogFormat::Human);
    assert_eq!(c.header_read_timeout_seconds, 10);
    assert_eq!(c.body_read_timeout_seconds, 30);
    assert_eq!(c.max_connections, 1024);
}

#[test]
fn ws_origins_only_when_cors_origins_is_set() {
    let parse = |args: &[&str]| {
        let mut all = vec!["molecule-server"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    };
    assert_eq!(parse(&["--cors-origins", ""]).ws_origins(), None);
    assert_eq!(
        parse(&["--cors-origins", DEFAULT_CORS_ORIGINS]).ws_origins(),
        None
    );
    assert_eq!(
        parse(&["--cors-origins", " HTTPS://A.example , https://b.example,"]).ws_origins(),
        Some(vec!["https://a.example".into(), "https://b.example".into()])
    );
}

#[test]
fn dev_mode_needs_the_env_and_no_admin_token() {
    let parse = |args: &[&str]| {
        let mut all = vec!["molecule-server"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    };
    assert!(parse(&["--env", "Development"]).dev_mode());
    assert!(parse(&["--env", " dev "]).dev_mode());
    assert!(!parse(&["--env", "dev", "--admin-token", "t"]).dev_mode());
    assert!(!parse(&["--env", "staging"]).dev_mode());
    assert!(parse(&["--env", "dev"]).test_tokens_enabled());
    assert!(parse(&["--enable-test-tokens", "1"]).test_tokens_enabled());
    assert!(!parse(&["--env", "production"]).test_tokens_enabled());
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
    for zero in [
        "--header-read-timeout-seconds",
        "--body-read-timeout-seconds",
        "--max-connections",
    ] {
        assert!(Config::try_parse_from(["molecule-server", zero, "0"]).is_err());
    }
    assert!(Config::try_parse_from(["molecule-server", "--host", "nowhere"]).is_err());
}

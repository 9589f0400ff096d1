//! The one SSRF policy (spec `a2a.md` §1.8, invariants 35 and 36, Decision 8): every range in
//! every mode, URL syntax, DNS, and the reqwest resolver against a real local HTTP server.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use molecule_a2a::ssrf::{
    PolicyResolver, UrlError, UrlPolicy, policy_error, saas_mode, vetted_client_builder,
};
use reqwest::dns::{Name, Resolve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const STRICT: UrlPolicy = UrlPolicy {
    dev_mode: false,
    saas: false,
};
const SAAS: UrlPolicy = UrlPolicy {
    dev_mode: false,
    saas: true,
};
const DEV: UrlPolicy = UrlPolicy {
    dev_mode: true,
    saas: false,
};
const DEV_SAAS: UrlPolicy = UrlPolicy {
    dev_mode: true,
    saas: true,
};
/// The four modes, in the column order of [`TABLE`].
const MODES: [UrlPolicy; 4] = [STRICT, SAAS, DEV, DEV_SAAS];

const LINK_LOCAL_V4: &str = "link-local 169.254.0.0/16 (cloud metadata)";
const LINK_LOCAL_V6: &str = "link-local fe80::/10";
const UNSPECIFIED_V4: &str = "unspecified 0.0.0.0/8";
const UNSPECIFIED_V6: &str = "unspecified ::";
const BROADCAST: &str = "broadcast 255.255.255.255";
const LOOPBACK_V4: &str = "loopback 127.0.0.0/8";
const LOOPBACK_V6: &str = "loopback ::1";
const LOOPBACK_NAME: &str = "loopback (localhost)";
const TEST_NET_1: &str = "TEST-NET-1 192.0.2.0/24";
const TEST_NET_2: &str = "TEST-NET-2 198.51.100.0/24";
const TEST_NET_3: &str = "TEST-NET-3 203.0.113.0/24";
const CGNAT: &str = "CGNAT 100.64.0.0/10";
const MULTICAST_V4: &str = "multicast 224.0.0.0/4";
const MULTICAST_V6: &str = "multicast ff00::/8";
const DOCUMENTATION: &str = "documentation 2001:db8::/32";
const FC: &str = "unique-local fc00::/8";
const FD: &str = "unique-local fd00::/8";
const PRIVATE_10: &str = "private 10.0.0.0/8";
const PRIVATE_172: &str = "private 172.16.0.0/12";
const PRIVATE_192: &str = "private 192.168.0.0/16";

type Expect = Option<&'static str>;
const OK: Expect = None;

const fn always(label: &'static str) -> [Expect; 4] {
    [Some(label); 4]
}
const fn never() -> [Expect; 4] {
    [OK; 4]
}
/// Blocked unless dev mode (loopback).
const fn dev_only(label: &'static str) -> [Expect; 4] {
    [Some(label), Some(label), OK, OK]
}
/// Blocked unless SaaS or dev mode (private ranges).
const fn saas_or_dev(label: &'static str) -> [Expect; 4] {
    [Some(label), OK, OK, OK]
}

/// Address → expected result in [strict, SaaS, dev, dev + SaaS].
const TABLE: &[(&str, [Expect; 4])] = &[
    // link-local, cloud metadata
    ("169.254.169.254", always(LINK_LOCAL_V4)),
    ("169.254.0.1", always(LINK_LOCAL_V4)),
    ("fe80::1", always(LINK_LOCAL_V6)),
    ("febf:ffff::1", always(LINK_LOCAL_V6)),
    ("fec0::1", never()),
    // unspecified / this network
    ("0.0.0.0", always(UNSPECIFIED_V4)),
    ("0.1.2.3", always(UNSPECIFIED_V4)),
    ("::", always(UNSPECIFIED_V6)),
    // TEST-NET-1/2/3
    ("192.0.2.1", always(TEST_NET_1)),
    ("198.51.100.7", always(TEST_NET_2)),
    ("203.0.113.255", always(TEST_NET_3)),
    ("192.0.3.1", never()),
    ("198.51.101.1", never()),
    ("203.0.114.1", never()),
    // CGNAT
    ("100.64.0.1", always(CGNAT)),
    ("100.127.255.254", always(CGNAT)),
    ("100.63.255.255", never()),
    ("100.128.0.0", never()),
    // multicast
    ("224.0.0.1", always(MULTICAST_V4)),
    ("230.1.2.3", always(MULTICAST_V4)),
    ("239.255.255.250", always(MULTICAST_V4)),
    ("223.255.255.255", never()),
    ("ff02::1", always(MULTICAST_V6)),
    ("ff05::2", always(MULTICAST_V6)),
    ("ff0e::1", always(MULTICAST_V6)),
    // broadcast
    ("255.255.255.255", always(BROADCAST)),
    // documentation
    ("2001:db8::1", always(DOCUMENTATION)),
    ("2001:db8:ffff::1", always(DOCUMENTATION)),
    ("2001:db9::1", never()),
    // fc00::/8
    ("fc00::1", always(FC)),
    ("fcff:1::1", always(FC)),
    // loopback: dev mode only
    ("127.0.0.1", dev_only(LOOPBACK_V4)),
    ("127.255.255.254", dev_only(LOOPBACK_V4)),
    ("::1", dev_only(LOOPBACK_V6)),
    // private: SaaS or dev mode
    ("10.0.0.1", saas_or_dev(PRIVATE_10)),
    ("10.255.255.255", saas_or_dev(PRIVATE_10)),
    ("172.16.0.1", saas_or_dev(PRIVATE_172)),
    ("172.31.255.255", saas_or_dev(PRIVATE_172)),
    ("172.15.255.255", never()),
    ("172.32.0.0", never()),
    ("192.168.1.1", saas_or_dev(PRIVATE_192)),
    ("192.169.0.1", never()),
    ("fd00::1", saas_or_dev(FD)),
    ("fdff:ffff::1", saas_or_dev(FD)),
    // public
    ("8.8.8.8", never()),
    ("1.1.1.1", never()),
    ("93.184.216.34", never()),
    ("2606:4700:4700::1111", never()),
    ("2a00:1450:4001::1", never()),
    // IPv4-mapped IPv6 is checked as IPv4
    ("::ffff:169.254.169.254", always(LINK_LOCAL_V4)),
    ("::ffff:127.0.0.1", dev_only(LOOPBACK_V4)),
    ("::ffff:10.1.2.3", saas_or_dev(PRIVATE_10)),
    ("::ffff:100.64.0.1", always(CGNAT)),
    ("::ffff:0.0.0.0", always(UNSPECIFIED_V4)),
    ("::ffff:8.8.8.8", never()),
    // so is the IPv4 address inside the NAT64 prefix
    ("64:ff9b::a9fe:a9fe", always(LINK_LOCAL_V4)),
    ("64:ff9b::7f00:1", dev_only(LOOPBACK_V4)),
    ("64:ff9b::808:808", never()),
];

#[test]
fn every_range_in_every_mode() {
    let mut failures = Vec::new();
    for (ip, expected) in TABLE {
        let addr: IpAddr = ip.parse().unwrap();
        for (policy, expect) in MODES.iter().zip(expected) {
            let got = policy.check_ip(addr);
            let want = expect.map_or(Ok(()), Err);
            if got != want {
                failures.push(format!("{ip} {policy:?}: got {got:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn ip_literal_urls_follow_the_table_without_dns() {
    for (ip, expected) in TABLE {
        let addr: IpAddr = ip.parse().unwrap();
        let url = match addr {
            IpAddr::V4(_) => format!("http://{ip}:8000/a2a"),
            IpAddr::V6(_) => format!("http://[{ip}]:8000/a2a"),
        };
        for (policy, expect) in MODES.iter().zip(expected) {
            let got = policy.check(&url).await;
            match expect {
                None => {
                    assert_eq!(
                        got,
                        Ok(vec![SocketAddr::new(addr, 8000)]),
                        "{url} {policy:?}"
                    );
                    assert!(policy.check_syntax(&url).is_ok());
                }
                Some(label) => {
                    assert_eq!(got, Err(UrlError::Blocked(label)), "{url} {policy:?}");
                    assert_eq!(policy.check_syntax(&url), Err(UrlError::Blocked(label)));
                }
            }
        }
    }
}

#[tokio::test]
async fn other_spellings_of_an_address_are_the_address() {
    // The WHATWG parser turns numeric hosts into the IPv4 address they denote.
    for url in [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
    ] {
        assert_eq!(
            STRICT.check(url).await,
            Err(UrlError::Blocked(LOOPBACK_V4)),
            "{url}"
        );
    }
    assert_eq!(
        STRICT.check("http://0xa9fea9fe/latest/meta-data").await,
        Err(UrlError::Blocked(LINK_LOCAL_V4))
    );
    assert_eq!(
        DEV_SAAS
            .check("http://[::ffff:a9fe:a9fe]/latest/meta-data")
            .await,
        Err(UrlError::Blocked(LINK_LOCAL_V4))
    );
}

#[tokio::test]
async fn ports_default_by_scheme() {
    assert_eq!(
        STRICT.check("https://8.8.8.8/").await,
        Ok(vec!["8.8.8.8:443".parse().unwrap()])
    );
    assert_eq!(
        STRICT.check("HTTP://8.8.8.8").await,
        Ok(vec!["8.8.8.8:80".parse().unwrap()])
    );
    assert_eq!(
        STRICT.check("https://[2606:4700:4700::1111]:8443/x").await,
        Ok(vec!["[2606:4700:4700::1111]:8443".parse().unwrap()])
    );
}

#[test]
fn syntax_errors_and_their_messages() {
    for policy in MODES {
        for (url, error, message) in [
            ("", UrlError::Missing, "url is required"),
            ("  ", UrlError::Missing, "url is required"),
            (
                "ftp://example.com/",
                UrlError::Scheme("ftp".into()),
                "url scheme must be http or https, got \"ftp\"",
            ),
            (
                "file:///etc/passwd",
                UrlError::Scheme("file".into()),
                "url scheme must be http or https, got \"file\"",
            ),
            (
                "javascript:alert(1)",
                UrlError::Scheme("javascript".into()),
                "url scheme must be http or https, got \"javascript\"",
            ),
            (
                "example.com:8000",
                UrlError::Scheme("example.com".into()),
                "url scheme must be http or https, got \"example.com\"",
            ),
            (
                "gopher://8.8.8.8:70/",
                UrlError::Scheme("gopher".into()),
                "url scheme must be http or https, got \"gopher\"",
            ),
        ] {
            let got = policy.check_syntax(url).unwrap_err();
            assert_eq!(got, error, "{url:?}");
            assert_eq!(got.to_string(), message, "{url:?}");
        }
        for url in [
            "not a url",
            "http://",
            "http://exa mple.com/",
            "http://[::1",
        ] {
            let got = policy.check_syntax(url).unwrap_err();
            assert!(matches!(got, UrlError::Invalid(_)), "{url:?}: {got:?}");
            assert!(
                got.to_string().starts_with("url is not valid: "),
                "{url:?}: {got}"
            );
        }
    }
    assert_eq!(
        STRICT
            .check_syntax("http://169.254.169.254/latest/meta-data")
            .unwrap_err()
            .to_string(),
        "url targets a blocked address: link-local 169.254.0.0/16 (cloud metadata)"
    );
    let url = STRICT
        .check_syntax("https://agent.example.com:8443/")
        .unwrap();
    assert_eq!(url.host_str(), Some("agent.example.com"));
    assert_eq!(url.port(), Some(8443));
}

#[tokio::test]
async fn localhost_is_loopback_by_name() {
    for url in [
        "http://localhost:8000/",
        "http://LOCALHOST/",
        "http://localhost./",
        "http://agent.localhost:9000/",
    ] {
        for policy in [STRICT, SAAS] {
            assert_eq!(
                policy.check_syntax(url),
                Err(UrlError::Blocked(LOOPBACK_NAME)),
                "{url} {policy:?}"
            );
            let err = policy.check(url).await.unwrap_err();
            assert_eq!(err, UrlError::Blocked(LOOPBACK_NAME), "{url} {policy:?}");
            assert_eq!(
                err.to_string(),
                "url targets a blocked address: loopback (localhost)"
            );
        }
    }
    // In dev mode the name is resolved and every address is loopback, with the URL's port.
    for policy in [DEV, DEV_SAAS] {
        let addrs = policy.check("http://localhost:8123/").await.unwrap();
        assert!(!addrs.is_empty());
        for addr in addrs {
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_eq!(addr.port(), 8123);
        }
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_refused_in_every_mode() {
    for policy in MODES {
        let err = policy.check("http://name.invalid:8000/").await.unwrap_err();
        assert_eq!(err, UrlError::Unresolvable("name.invalid".into()));
        assert_eq!(
            err.to_string(),
            "hostname \"name.invalid\" cannot be resolved (DNS error)"
        );
        // The syntax check alone does not ask DNS.
        assert!(policy.check_syntax("http://name.invalid:8000/").is_ok());
    }
}

#[tokio::test]
async fn the_resolver_checks_every_address_it_resolves() {
    let resolve = |policy: UrlPolicy, name: &str| {
        PolicyResolver::new(policy).resolve(name.parse::<Name>().unwrap())
    };

    // Numeric names reach the system resolver, and what it returns is checked.
    for (policy, name, label) in [
        (STRICT, "127.0.0.1", LOOPBACK_V4),
        (SAAS, "127.0.0.1", LOOPBACK_V4),
        (DEV, "169.254.169.254", LINK_LOCAL_V4),
        (STRICT, "10.0.0.1", PRIVATE_10),
        (STRICT, "localhost", LOOPBACK_NAME),
    ] {
        let err = resolve(policy, name).await.err().unwrap();
        let refusal = err.downcast_ref::<UrlError>().unwrap();
        assert_eq!(
            refusal,
            &UrlError::ResolvesToBlocked {
                host: name.into(),
                label
            },
            "{name} {policy:?}"
        );
        assert_eq!(
            refusal.to_string(),
            format!("hostname \"{name}\" resolves to forbidden address: {label}")
        );
    }

    let err = resolve(DEV_SAAS, "name.invalid").await.err().unwrap();
    assert_eq!(
        err.downcast_ref::<UrlError>(),
        Some(&UrlError::Unresolvable("name.invalid".into()))
    );

    let addrs: Vec<SocketAddr> = resolve(DEV, "127.0.0.1").await.unwrap().collect();
    assert_eq!(addrs, vec!["127.0.0.1:0".parse().unwrap()]);
    let addrs: Vec<SocketAddr> = resolve(SAAS, "10.0.0.1").await.unwrap().collect();
    assert_eq!(addrs, vec!["10.0.0.1:0".parse().unwrap()]);
}

/// A real HTTP/1.1 server on 127.0.0.1: `/redirect` answers 302 to the metadata address,
/// anything else 200 `ok`. Counts the connections it accepted.
async fn local_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let response: &[u8] = if request.starts_with(b"GET /redirect ") {
                b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            stream.write_all(response).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    (port, accepted)
}

#[tokio::test]
async fn a_reqwest_client_reaches_localhost_only_in_dev_mode() {
    let (port, accepted) = local_server().await;
    let url = format!("http://localhost:{port}/");

    // Strict and SaaS: refused by the resolver, before any connection.
    for policy in [STRICT, SAAS] {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PolicyResolver { policy }))
            .no_proxy()
            .build()
            .unwrap();
        let err = client.get(&url).send().await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        assert_eq!(
            policy_error(&err),
            Some(&UrlError::ResolvesToBlocked {
                host: "localhost".into(),
                label: LOOPBACK_NAME
            }),
            "{err:?}"
        );
    }

    // Dev mode: the same request is answered.
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver { policy: DEV }))
        .no_proxy()
        .build()
        .unwrap();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    // The server accepts connections in order, so the refused clients never connected.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_vetted_client_does_not_follow_redirects() {
    let (port, accepted) = local_server().await;
    let client = vetted_client_builder(DEV).build().unwrap();
    let response = client
        .get(format!("http://localhost:{port}/redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "http://169.254.169.254/latest/meta-data"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let refused = vetted_client_builder(STRICT)
        .build()
        .unwrap()
        .get(format!("http://localhost:{port}/"))
        .send()
        .await
        .unwrap_err();
    assert!(policy_error(&refused).is_some(), "{refused:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn saas_mode_parsing() {
    for (deploy_mode, org_id, expected) in [
        (None, None, false),
        (None, Some("org-1"), true),
        (None, Some("  "), false),
        (Some(""), Some("org-1"), true),
        (Some("   "), Some(" org-1 "), true),
        (Some("  "), None, false),
        (Some("saas"), None, true),
        (Some(" SaaS "), None, true),
        (Some("self-hosted"), Some("org-1"), false),
        (Some("SelfHosted"), Some("org-1"), false),
        (Some("standalone"), Some("org-1"), false),
        (Some("sass"), Some("org-1"), false),
        (Some("cloud"), None, false),
    ] {
        assert_eq!(
            saas_mode(deploy_mode, org_id),
            expected,
            "{deploy_mode:?} {org_id:?}"
        );
    }
}

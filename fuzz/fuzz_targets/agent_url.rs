//! The agent-URL guard (`molecule_a2a::ssrf::UrlPolicy::check_syntax`: registration, discovery
//! and dispatch) on arbitrary strings, under the three policies: never panics; a URL the strict
//! policy accepts is accepted by the SaaS and dev policies too; an accepted URL is http(s) with
//! a host, an IP-literal host passes `check_ip`, and the URL as stored (`Url::as_str`) is
//! accepted again with the same host.

#![no_main]

use libfuzzer_sys::fuzz_target;
use molecule_a2a::ssrf::UrlPolicy;

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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let results = [STRICT, SAAS, DEV].map(|p| (p, p.check_syntax(text)));
    let [(_, strict), (_, saas), (_, dev)] = &results;
    if strict.is_ok() {
        assert!(
            saas.is_ok() && dev.is_ok(),
            "strict accepts, a laxer policy refuses"
        );
    }
    if saas.is_ok() {
        assert!(dev.is_ok(), "SaaS accepts, dev refuses");
    }
    for (policy, result) in &results {
        let Ok(url) = result else { continue };
        assert!(matches!(url.scheme(), "http" | "https"), "scheme of {url}");
        let host = url.host().expect("an accepted URL has a host").to_owned();
        match &host {
            url::Host::Ipv4(ip) => assert!(policy.check_ip((*ip).into()).is_ok(), "{url}"),
            url::Host::Ipv6(ip) => assert!(policy.check_ip((*ip).into()).is_ok(), "{url}"),
            url::Host::Domain(_) => {}
        }
        let again = policy
            .check_syntax(url.as_str())
            .unwrap_or_else(|e| panic!("{url} refused once stored: {e}"));
        assert_eq!(
            again.host().map(|h| h.to_owned()),
            Some(host),
            "host changed"
        );
    }
});

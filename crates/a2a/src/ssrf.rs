//! The one SSRF policy for agent URLs: registration, discovery and dispatch.
//!
//! The reference had two divergent checks (spec `a2a.md` §1.8, known defect 4). This module
//! is the deliberate unification (Decision 8): one table, two explicit mode flags
//! ([`UrlPolicy::dev_mode`], [`UrlPolicy::saas`]), used everywhere a URL is accepted or
//! connected to. The label in brackets is what [`UrlPolicy::check_ip`] returns.
//!
//! | range | strict | SaaS | dev |
//! |---|---|---|---|
//! | 169.254.0.0/16, fe80::/10: link-local, cloud metadata (`link-local …`) | blocked | blocked | blocked |
//! | 0.0.0.0/8, `::`: unspecified / this network (`unspecified …`) | blocked | blocked | blocked |
//! | 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (`TEST-NET-1/2/3 …`) | blocked | blocked | blocked |
//! | 100.64.0.0/10 (`CGNAT …`) | blocked | blocked | blocked |
//! | 224.0.0.0/4, ff00::/8 (`multicast …`) | blocked | blocked | blocked |
//! | 255.255.255.255 (`broadcast …`) | blocked | blocked | blocked |
//! | 2001:db8::/32 (`documentation …`) | blocked | blocked | blocked |
//! | fc00::/8 (`unique-local fc00::/8`) | blocked | blocked | blocked |
//! | 127.0.0.0/8, ::1, the name `localhost` (`loopback …`) | blocked | blocked | allowed |
//! | 10/8, 172.16/12, 192.168/16 (`private …`), fd00::/8 (`unique-local fd00::/8`) | blocked | allowed | allowed |
//! | anything else | allowed | allowed | allowed |
//!
//! Choices made in the unification: registration and dispatch block the same ranges (the
//! registration list, the stricter one, for everything but the mode-dependent rows); loopback
//! follows dispatch (allowed in dev mode only, where local agents run), and so does the name
//! `localhost` (and `*.localhost`), refused by name outside dev mode without asking DNS; the
//! private ranges follow dispatch (SaaS or dev mode). Two additions beyond the reference's
//! lists, both only stricter: all of 0.0.0.0/8 (not just 0.0.0.0, which Linux routes to the
//! host itself), and the NAT64 prefix 64:ff9b::/96, whose embedded IPv4 address is checked as
//! IPv4, as is the one of an IPv4-mapped address (`::ffff:a.b.c.d`).
//!
//! A hostname is resolved with the system resolver; a name that does not resolve, or resolves
//! to nothing, is refused, and so is a name of which *any* address is blocked. [`UrlPolicy::check`]
//! returns the vetted addresses; a dispatch client built with [`PolicyResolver`] (see
//! [`vetted_client_builder`]) connects only to addresses that passed the check, so there is no
//! window between the check and the connection (DNS rebinding).

mod resolver;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use url::{Host, Url};

pub use resolver::{PolicyResolver, policy_error, vetted_client_builder};

/// How long one hostname resolution may take before the name counts as unresolvable.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// The SSRF policy: which agent URLs may be registered and connected to.
///
/// The default is the strictest policy (neither dev nor SaaS mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    /// Dev mode (`MOLECULE_ENV` = `development`/`dev`): loopback and private ranges allowed.
    pub dev_mode: bool,
    /// SaaS mode ([`saas_mode`]): private ranges (RFC 1918, fd00::/8) allowed.
    pub saas: bool,
}

/// Why a URL was refused. `Display` gives the registration messages of spec `a2a.md` §1.8 A;
/// no operating-system error text is ever included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The URL is empty.
    #[error("url is required")]
    Missing,
    /// The URL does not parse (the parser's reason) or has no host.
    #[error("url is not valid: {0}")]
    Invalid(String),
    /// The scheme is neither `http` nor `https`.
    #[error("url scheme must be http or https, got \"{0}\"")]
    Scheme(String),
    /// The host is an IP literal (or the name `localhost`) in a blocked range (its label).
    #[error("url targets a blocked address: {0}")]
    Blocked(&'static str),
    /// The hostname does not resolve, or resolves to no address.
    #[error("hostname \"{0}\" cannot be resolved (DNS error)")]
    Unresolvable(String),
    /// The hostname resolves to at least one address in a blocked range.
    #[error("hostname \"{host}\" resolves to forbidden address: {label}")]
    ResolvesToBlocked {
        /// The hostname.
        host: String,
        /// The label of the blocked range.
        label: &'static str,
    },
}

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
const DOCUMENTATION_V6: &str = "documentation 2001:db8::/32";
const UNIQUE_LOCAL_FC: &str = "unique-local fc00::/8";
const UNIQUE_LOCAL_FD: &str = "unique-local fd00::/8";
const PRIVATE_10: &str = "private 10.0.0.0/8";
const PRIVATE_172: &str = "private 172.16.0.0/12";
const PRIVATE_192: &str = "private 192.168.0.0/16";

impl UrlPolicy {
    /// Checks one address; `Err` carries the label of the blocked range.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        match ip {
            IpAddr::V4(v4) => self.check_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => self.check_v4(v4),
                None => self.check_v6(v6),
            },
        }
    }

    fn check_v4(&self, ip: Ipv4Addr) -> Result<(), &'static str> {
        let [a, b, c, _] = ip.octets();
        let blocked = match (a, b, c) {
            (0, _, _) => Some(UNSPECIFIED_V4),
            _ if ip.is_broadcast() => Some(BROADCAST),
            (169, 254, _) => Some(LINK_LOCAL_V4),
            (192, 0, 2) => Some(TEST_NET_1),
            (198, 51, 100) => Some(TEST_NET_2),
            (203, 0, 113) => Some(TEST_NET_3),
            (100, 64..=127, _) => Some(CGNAT),
            (224..=239, _, _) => Some(MULTICAST_V4),
            (127, _, _) if !self.dev_mode => Some(LOOPBACK_V4),
            (10, _, _) if !self.private_allowed() => Some(PRIVATE_10),
            (172, 16..=31, _) if !self.private_allowed() => Some(PRIVATE_172),
            (192, 168, _) if !self.private_allowed() => Some(PRIVATE_192),
            _ => None,
        };
        blocked.map_or(Ok(()), Err)
    }

    fn check_v6(&self, ip: Ipv6Addr) -> Result<(), &'static str> {
        let s = ip.segments();
        let blocked = if ip.is_unspecified() {
            Some(UNSPECIFIED_V6)
        } else if ip.is_loopback() {
            (!self.dev_mode).then_some(LOOPBACK_V6)
        } else if s[0] & 0xffc0 == 0xfe80 {
            Some(LINK_LOCAL_V6)
        } else if s[0] & 0xff00 == 0xff00 {
            Some(MULTICAST_V6)
        } else if s[0] == 0x2001 && s[1] == 0x0db8 {
            Some(DOCUMENTATION_V6)
        } else if s[0] & 0xff00 == 0xfc00 {
            Some(UNIQUE_LOCAL_FC)
        } else if s[0] & 0xff00 == 0xfd00 {
            (!self.private_allowed()).then_some(UNIQUE_LOCAL_FD)
        } else {
            None
        };
        blocked.map_or(Ok(()), Err)
    }

    fn private_allowed(&self) -> bool {
        self.saas || self.dev_mode
    }

    /// Checks everything that needs no DNS: the URL parses, its scheme is `http`/`https`, it
    /// has a host, an IP-literal host is allowed ([`UrlPolicy::check_ip`]), and the name
    /// `localhost` is allowed only in dev mode. Returns the parsed URL.
    pub fn check_syntax(&self, url: &str) -> Result<Url, UrlError> {
        if url.trim().is_empty() {
            return Err(UrlError::Missing);
        }
        let parsed = Url::parse(url).map_err(|e| UrlError::Invalid(e.to_string()))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => return Err(UrlError::Scheme(other.to_owned())),
        }
        match parsed.host() {
            None => return Err(UrlError::Invalid("missing host".to_owned())),
            Some(Host::Domain(name)) => {
                if is_localhost_name(name) && !self.dev_mode {
                    return Err(UrlError::Blocked(LOOPBACK_NAME));
                }
            }
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map_err(UrlError::Blocked)?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map_err(UrlError::Blocked)?,
        }
        Ok(parsed)
    }

    /// Checks a URL completely: [`UrlPolicy::check_syntax`], then a hostname is resolved
    /// (system resolver, [`DNS_TIMEOUT`]) and every address checked. Returns the vetted
    /// addresses with the URL's port (an IP literal needs no DNS and gives itself).
    pub async fn check(&self, url: &str) -> Result<Vec<SocketAddr>, UrlError> {
        let parsed = self.check_syntax(url)?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        match parsed.host() {
            Some(Host::Ipv4(ip)) => Ok(vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(Host::Ipv6(ip)) => Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(Host::Domain(name)) => self.resolve(name, port).await,
            None => Err(UrlError::Invalid("missing host".to_owned())),
        }
    }

    /// Resolves `host` and checks every address; the one resolution path of this module.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UrlError> {
        if is_localhost_name(host) && !self.dev_mode {
            return Err(UrlError::ResolvesToBlocked {
                host: host.to_owned(),
                label: LOOPBACK_NAME,
            });
        }
        let unresolvable = || UrlError::Unresolvable(host.to_owned());
        let lookup = tokio::net::lookup_host((host, port));
        let resolved = match tokio::time::timeout(DNS_TIMEOUT, lookup).await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(_)) | Err(_) => return Err(unresolvable()),
        };
        let mut vetted: Vec<SocketAddr> = Vec::new();
        for addr in resolved {
            self.check_ip(addr.ip())
                .map_err(|label| UrlError::ResolvesToBlocked {
                    host: host.to_owned(),
                    label,
                })?;
            if !vetted.contains(&addr) {
                vetted.push(addr);
            }
        }
        if vetted.is_empty() {
            return Err(unresolvable());
        }
        Ok(vetted)
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:0:0/96`) or NAT64 (`64:ff9b::/96`)
/// IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// `localhost`, `*.localhost` (RFC 6761), with or without the trailing dot.
fn is_localhost_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// SaaS mode from `MOLECULE_DEPLOY_MODE` and `MOLECULE_ORG_ID` (spec `a2a.md` §1.8).
///
/// The deploy mode, trimmed and case-insensitive: `saas` is SaaS; `self-hosted`,
/// `selfhosted`, `standalone` are not; any other non-empty value is not either (fails
/// closed, warned once). Unset or blank: SaaS exactly when the org id is non-blank.
pub fn saas_mode(deploy_mode: Option<&str>, org_id: Option<&str>) -> bool {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let mode = deploy_mode.map(str::trim).unwrap_or_default();
    if mode.is_empty() {
        return org_id.is_some_and(|id| !id.trim().is_empty());
    }
    match mode.to_ascii_lowercase().as_str() {
        "saas" => true,
        "self-hosted" | "selfhosted" | "standalone" => false,
        _ => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    deploy_mode = mode,
                    "unknown MOLECULE_DEPLOY_MODE; treating it as self-hosted (private agent URLs refused)"
                );
            }
            false
        }
    }
}

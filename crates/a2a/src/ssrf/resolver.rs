//! A reqwest DNS resolver that gives the client only addresses the policy has vetted.

use std::error::Error;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{UrlError, UrlPolicy};

/// A [`reqwest::dns::Resolve`] that resolves with the system resolver and checks every
/// address with its [`UrlPolicy`]: the client connects only to addresses that passed the
/// check (no DNS-rebinding window between check and connect). A name with any blocked
/// address, or with none, fails the request with the [`UrlError`] in its source chain
/// ([`policy_error`]).
///
/// reqwest does not ask the resolver about IP-literal hosts, nor about the target host when
/// it goes through a proxy: check each URL with [`UrlPolicy::check`] before sending, and
/// build the client with [`vetted_client_builder`] (no proxy, no redirects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyResolver {
    /// The policy every resolved address must pass.
    pub policy: UrlPolicy,
}

impl PolicyResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: UrlPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let vetted = policy.resolve(&host, 0).await?;
            let addrs: Addrs = Box::new(vetted.into_iter());
            Ok(addrs)
        })
    }
}

/// A client builder for dispatching to agents under `policy`: [`PolicyResolver`] as its
/// resolver, redirects never followed (a 3xx is the agent's answer), no proxy (system or
/// environment). Timeouts are left to the caller.
pub fn vetted_client_builder(policy: UrlPolicy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver::new(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

/// The policy refusal behind an error (a `reqwest::Error` from a client using
/// [`PolicyResolver`]), found by walking its source chain.
pub fn policy_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a UrlError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refusal) = e.downcast_ref::<UrlError>() {
            return Some(refusal);
        }
        current = e.source();
    }
    None
}

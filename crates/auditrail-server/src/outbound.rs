//! Every connection auditrail makes to a URL an org controls (destination and STS
//! endpoints, webhooks) goes through here, so the address policy of
//! [`auditrail_core::outbound`] is applied to the address actually connected to:
//!
//! - a host name is resolved by [`GuardedResolver`], which refuses the name when any
//!   address it resolves to is refused (checked at every new connection, not only when
//!   the URL was configured: a name can resolve elsewhere later);
//! - an address literal never reaches a resolver, so it is checked before the request
//!   is sent ([`Outbound::check_literal`], and [`GuardedService`] for `object_store`);
//! - redirects are not followed and no proxy is used (a proxy would resolve for us).
//!
//! The operator's own SMTP relay is not an org's choice and does not pass here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use auditrail_core::outbound::{AddressPolicy, Refused};
use object_store::ClientOptions;
use object_store::client::{HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpService};
use object_store::client::{HttpRequest, HttpResponse};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a connection to an org's URL is not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("outbound address refused: {0}")]
    Refused(#[from] Refused),
    #[error("outbound address refused: {host} resolves to {refused}")]
    RefusedName { host: String, refused: Refused },
    #[error("not a usable URL: {0}")]
    BadUrl(String),
    #[error("no HTTP client: {0}")]
    Client(String),
}

impl OutboundError {
    /// The rule that refused the address, if one did.
    pub fn rule(&self) -> Option<&'static str> {
        match self {
            OutboundError::Refused(r) | OutboundError::RefusedName { refused: r, .. } => {
                Some(r.rule.as_str())
            }
            OutboundError::BadUrl(_) | OutboundError::Client(_) => None,
        }
    }
}

/// The operator's outbound policy, and clients that obey it.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    policy: Arc<AddressPolicy>,
}

impl Outbound {
    pub fn new(policy: AddressPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Checks a URL whose host is an address literal (in any spelling the URL parser
    /// accepts: `2130706433`, `0x7f.1`, `[::ffff:127.0.0.1]`, `127.0.0.1.`). Names are
    /// left to the resolver.
    pub fn check_literal(&self, url: &Url) -> Result<(), OutboundError> {
        match url.host() {
            Some(url::Host::Ipv4(a)) => Ok(self.policy.check(IpAddr::V4(a))?),
            Some(url::Host::Ipv6(a)) => Ok(self.policy.check(IpAddr::V6(a))?),
            Some(url::Host::Domain(d)) => match literal(d) {
                Some(ip) => Ok(self.policy.check(ip)?),
                None => Ok(()),
            },
            None => Err(OutboundError::BadUrl("no host".into())),
        }
    }

    /// At configuration time: the URL's literal address, or every address its name
    /// resolves to now, must be allowed. A name that does not resolve yet is accepted;
    /// it is checked again at each connection.
    pub async fn check_url(&self, url: &str) -> Result<(), OutboundError> {
        let parsed = Url::parse(url).map_err(|e| OutboundError::BadUrl(e.to_string()))?;
        self.check_literal(&parsed)?;
        if let Some(url::Host::Domain(host)) = parsed.host()
            && literal(host).is_none()
            && let Ok(addrs) = lookup(host).await
        {
            check_all(&self.policy, host, &addrs)?;
        }
        Ok(())
    }

    /// A client for one org's URLs: the policy on every connection, no redirects, no
    /// proxy. Fails closed: there is no unguarded fallback.
    pub fn http_client(
        &self,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<reqwest::Client, OutboundError> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .no_gzip()
            .dns_resolver(Arc::new(GuardedResolver(self.policy.clone())))
            .build()
            .map_err(|e| OutboundError::Client(e.to_string()))
    }

    /// An `object_store` connector whose every request obeys the policy.
    pub fn connector(&self, timeout: Duration, connect_timeout: Duration) -> GuardedConnector {
        GuardedConnector {
            outbound: self.clone(),
            timeout,
            connect_timeout,
        }
    }
}

/// A host that the system resolver would read as an address although the URL parser
/// left it a name (it cannot for http(s) URLs, but the check costs nothing).
fn literal(host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_suffix('.').unwrap_or(h);
    h.parse().ok()
}

/// The addresses `host` resolves to. `localhost` and its subdomains are loopback
/// whatever the system resolver says (RFC 6761), in any case and with or without a
/// trailing dot.
async fn lookup(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    let bare = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if bare == "localhost" || bare.ends_with(".localhost") {
        return Ok(vec![
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
        ]);
    }
    Ok(tokio::net::lookup_host((host, 0)).await?.collect())
}

fn check_all(
    policy: &AddressPolicy,
    host: &str,
    addrs: &[SocketAddr],
) -> Result<(), OutboundError> {
    for a in addrs {
        if let Err(refused) = policy.check(a.ip()) {
            return Err(OutboundError::RefusedName {
                host: host.to_owned(),
                refused,
            });
        }
    }
    Ok(())
}

/// Resolves names for org URLs, refusing a name any of whose addresses is refused.
struct GuardedResolver(Arc<AddressPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = lookup(&host).await?;
            check_all(&policy, &host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The first refusal in an error's chain of sources, so a refused connection is
/// reported as such however many layers wrapped it.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<OutboundError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(o) = err.downcast_ref::<OutboundError>() {
            return Some(o.clone());
        }
        cur = err.source();
    }
    None
}

/// Builds guarded clients for `object_store`.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    outbound: Outbound,
    timeout: Duration,
    connect_timeout: Duration,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = self
            .outbound
            .http_client(self.timeout, self.connect_timeout)
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(GuardedService {
            outbound: self.outbound.clone(),
            client,
        }))
    }
}

/// `object_store`'s requests, address literals checked before they are sent.
#[derive(Debug)]
pub struct GuardedService {
    outbound: Outbound,
    client: reqwest::Client,
}

#[async_trait::async_trait]
impl HttpService for GuardedService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = Url::parse(&req.uri().to_string()).map_err(|e| {
            HttpError::new(HttpErrorKind::Request, OutboundError::BadUrl(e.to_string()))
        })?;
        self.outbound
            .check_literal(&url)
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        self.client.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &Outbound, url: &str) -> Option<&'static str> {
        let u = Url::parse(url).unwrap();
        policy.check_literal(&u).err().and_then(|e| e.rule())
    }

    #[test]
    fn every_spelling_of_a_refused_address_is_refused() {
        let o = Outbound::default();
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://0177.0.0.01/",
            "http://127.0.0.1./",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://0/",
            "http://0.0.0.0:9000/",
            "http://[::]/",
            "http://169.254.169.254/",
            "http://2852039166/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://10.0.0.1/",
            "http://012.0.0.1/",
            "http://192.168.0.1/",
            "http://100.64.0.1/",
            "http://[fe80::1]/",
            "https://224.0.0.1/",
        ] {
            assert!(refused(&o, url).is_some(), "{url} should be refused");
        }
        assert_eq!(refused(&o, "http://8.8.8.8/"), None);
        assert_eq!(
            refused(&o, "http://s3.example.com/"),
            None,
            "names go to the resolver"
        );
    }

    #[test]
    fn allowed_ranges_pass_in_every_spelling() {
        let o = Outbound::new(AddressPolicy::parse(&["127.0.0.0/8"]).unwrap());
        for url in [
            "http://127.0.0.1:9000/",
            "http://2130706433/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert_eq!(refused(&o, url), None, "{url}");
        }
        assert_eq!(refused(&o, "http://[::1]/"), Some("loopback"));
        assert_eq!(refused(&o, "http://10.0.0.1/"), Some("private"));
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let o = Outbound::default();
        for url in [
            "http://localhost:9000/",
            "http://localhost.:9000/",
            "http://LOCALHOST/",
            "http://s3.localhost/",
        ] {
            let e = o.check_url(url).await.unwrap_err();
            assert_eq!(e.rule(), Some("loopback"), "{url}: {e}");
        }
        let allowed = Outbound::new(AddressPolicy::parse(&["127.0.0.0/8", "::1/128"]).unwrap());
        allowed.check_url("http://localhost:9000/").await.unwrap();
    }
}

//! The `http` capability: outbound `wasi:http` requests, checked against the
//! agent's grant and the host's network policy.
//!
//! A request passes four gates, in order:
//! 1. the per-task request budget;
//! 2. the grant: the URL's host (and port) must match one of the agent's
//!    `outbound_hosts` patterns;
//! 3. the address: the host name is resolved by the host, and if any
//!    address it resolves to is loopback, private, link-local (which holds
//!    the cloud metadata service at 169.254.169.254), or otherwise not
//!    public, the request is refused. The connection then goes to exactly
//!    the addresses that were checked, so a second DNS answer cannot
//!    rebind it;
//! 4. size and time caps on the request body, the response body and the
//!    whole exchange.
//!
//! Redirects are not followed (the guest sees the 3xx and must make a new
//! request, which passes the gates again) and no proxy is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::AgentShared;
use crate::runtime::RuntimeError;

/// Host-wide limits on outbound HTTP, set by the operator.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time to open a connection (TCP and TLS). Default 5 s.
    pub connect_timeout: Duration,
    /// Time for a whole exchange, from sending to the last body byte. A
    /// guest may ask for less, never more. Default 30 s.
    pub request_timeout: Duration,
    /// Largest request body a guest may send. Default 1 MiB.
    pub max_request_body: u64,
    /// Largest response body a guest may read. Default 8 MiB.
    pub max_response_body: u64,
    /// Requests one task (or tick) may make. Default 32.
    pub max_requests_per_task: u32,
    /// Addresses exempt from the non-public address block, for operators
    /// who want agents to reach a service on their own network (and for
    /// tests). Empty by default.
    pub exempt_addrs: Vec<IpAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_request_body: 1 << 20,
            max_response_body: 8 << 20,
            max_requests_per_task: 32,
            exempt_addrs: Vec::new(),
        }
    }
}

/// One entry of `grants.outbound_hosts`: `host`, `*.suffix`, optional `:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lowercase host, or the suffix (with its leading dot) for `*.suffix`.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

/// A grant entry that is not a host pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` {problem}")]
pub struct HostPatternError {
    pub pattern: String,
    pub problem: &'static str,
}

impl HostPattern {
    /// Parses a grant entry. Spec validation has already rejected URLs and
    /// bad names; this only splits the parts.
    pub fn parse(s: &str) -> Result<Self, HostPatternError> {
        let bad = |problem| HostPatternError {
            pattern: s.to_string(),
            problem,
        };
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(p.parse::<u16>().map_err(|_| bad("has an invalid port"))?),
            ),
            None => (s, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() || host.contains('/') {
            return Err(bad("is not a host pattern"));
        }
        Ok(match host.strip_prefix("*.") {
            Some(suffix) => HostPattern {
                host: format!(".{suffix}"),
                wildcard: true,
                port,
            },
            None => HostPattern {
                host,
                wildcard: false,
                port,
            },
        })
    }

    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not
    /// `example.com`. Without a port, any port matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host_ok = if self.wildcard {
            host.len() > self.host.len() && host.ends_with(&self.host)
        } else {
            host == self.host
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// Whether an address is one agents may never reach: anything that is not
/// a public unicast address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: cloud metadata services
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0 // 0/8 "this network"
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 shared (CGNAT; Alibaba metadata)
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF assignments
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || a >= 240 // 240/4 reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    // 64:ff9b::/96 (NAT64) and ::/96 (IPv4-compatible) embed an IPv4 address.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (seg[..6] == [0; 6] && !ip.is_loopback()) {
        return ip.is_unspecified() || forbidden_v4(embedded);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (AWS metadata fd00:ec2::254)
        || (seg[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (seg[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || seg[0] == 0x2002 // 6to4 can reach any IPv4 address
        || (seg[0] == 0x2001 && seg[1] == 0) // 2001::/32 Teredo
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
}

/// A name resolved to an address agents may not reach.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to {addr}, which is not a public address")]
struct Blocked {
    name: String,
    addr: IpAddr,
}

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("{name} did not resolve: {reason}")]
struct Unresolved {
    name: String,
    reason: String,
}

/// Resolves with the system resolver, then refuses the whole answer if any
/// address is non-public. reqwest connects to exactly what this returns.
#[derive(Debug)]
struct GuardedResolver {
    exempt: Arc<[IpAddr]>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let exempt = self.exempt.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|e| Unresolved {
                    name: name.clone(),
                    reason: e.to_string(),
                })?
                .collect();
            if addrs.is_empty() {
                return Err(Unresolved {
                    name,
                    reason: "no addresses".into(),
                }
                .into());
            }
            if let Some(bad) = addrs
                .iter()
                .find(|a| is_forbidden(a.ip()) && !exempt.contains(&a.ip()))
            {
                return Err(Blocked {
                    name,
                    addr: bad.ip(),
                }
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The host's outbound HTTP client and limits, shared by every task.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    cfg: Arc<HttpConfig>,
    client: reqwest::Client,
}

impl HttpPolicy {
    pub fn new(cfg: HttpConfig) -> Result<Self, RuntimeError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                exempt: cfg.exempt_addrs.clone().into(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| RuntimeError::HttpClient {
                what: "outbound",
                source,
            })?;
        Ok(HttpPolicy {
            cfg: Arc::new(cfg),
            client,
        })
    }

    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }
}

/// The per-task `wasi:http` hooks: the gates above, for one agent.
pub struct HttpGate {
    policy: HttpPolicy,
    agent: Arc<AgentShared>,
    sent: u32,
}

impl std::fmt::Debug for HttpGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGate")
            .field("agent", &self.agent.id)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl HttpGate {
    pub fn new(policy: HttpPolicy, agent: Arc<AgentShared>) -> Self {
        HttpGate {
            policy,
            agent,
            sent: 0,
        }
    }

    fn deny(&self, why: String) -> HttpError {
        self.agent
            .log
            .push(&self.agent.id, "warn", &format!("http denied: {why}"));
        tracing::info!(agent = %self.agent.id, "outbound http denied: {why}");
        HttpError::HttpRequestDenied
    }

    /// The synchronous gates: budget, grant, literal address.
    fn admit(&mut self, uri: &http::Uri) -> Result<(), HttpError> {
        let cfg = self.policy.config();
        if self.sent >= cfg.max_requests_per_task {
            return Err(self.deny(format!(
                "more than {} requests in one task",
                cfg.max_requests_per_task
            )));
        }
        self.sent += 1;
        let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if !self.agent.http_allow.iter().any(|p| p.matches(bare, port)) {
            return Err(self.deny(format!("{bare}:{port} is not in grants.outbound_hosts")));
        }
        // An address literal never reaches the resolver, so check it here.
        if let Ok(ip) = bare.parse::<IpAddr>()
            && is_forbidden(ip)
            && !cfg.exempt_addrs.contains(&ip)
        {
            self.agent.log.push(
                &self.agent.id,
                "warn",
                &format!("http denied: {ip} is not a public address"),
            );
            return Err(HttpError::DestinationIpProhibited);
        }
        Ok(())
    }
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        if let Err(e) = self.admit(request.uri()) {
            return Box::new(async move { Err(e) });
        }
        let cfg = self.policy.cfg.clone();
        let client = self.policy.client.clone();
        let agent = self.agent.clone();
        let timeout = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(cfg.request_timeout, |t| t.min(cfg.request_timeout));
        Box::new(async move {
            let (parts, body) = request.into_parts();
            let max_req = cfg.max_request_body;
            let body = Limited::new(body, usize::try_from(max_req).unwrap_or(usize::MAX))
                .collect()
                .await
                .map_err(|e| match e.downcast::<HttpError>() {
                    Ok(inner) => *inner,
                    Err(_) => HttpError::HttpRequestBodySize(Some(max_req)),
                })?
                .to_bytes();
            let url = parts.uri.to_string();
            let response = client
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| {
                    let code = classify(&e);
                    agent.log.push(
                        &agent.id,
                        "warn",
                        &format!("http {url} failed: {}", error_chain(&e)),
                    );
                    code
                })?;
            let max_resp = cfg.max_response_body;
            if response.content_length().is_some_and(|n| n > max_resp) {
                return Err(HttpError::HttpResponseBodySize(response.content_length()));
            }
            let response: http::Response<reqwest::Body> = response.into();
            let response = response.map(|b| {
                Limited::new(b, usize::try_from(max_resp).unwrap_or(usize::MAX))
                    .map_err(move |e| match e.downcast::<reqwest::Error>() {
                        Ok(re) if re.is_timeout() => HttpError::HttpResponseTimeout,
                        Ok(_) => HttpError::HttpResponseIncomplete,
                        Err(_) => HttpError::HttpResponseBodySize(Some(max_resp)),
                    })
                    .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Maps a failed send to the `wasi:http` error code the guest sees.
fn classify(e: &reqwest::Error) -> HttpError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if c.is::<Blocked>() {
            return HttpError::DestinationIpProhibited;
        }
        if let Some(u) = c.downcast_ref::<Unresolved>() {
            return HttpError::DnsError {
                rcode: Some(u.reason.clone()),
                info_code: None,
            };
        }
        cur = c.source();
    }
    if e.is_timeout() {
        if e.is_connect() {
            HttpError::ConnectionTimeout
        } else {
            HttpError::HttpResponseTimeout
        }
    } else if e.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_hosts_and_ports() {
        let p = HostPattern::parse("API.example.com").unwrap();
        assert!(p.matches("api.example.com", 443));
        assert!(p.matches("api.example.com.", 8080));
        assert!(!p.matches("x.api.example.com", 443));
        assert!(!p.matches("example.com", 443));
        let w = HostPattern::parse("*.example.com:8443").unwrap();
        assert!(w.matches("a.example.com", 8443));
        assert!(w.matches("a.b.example.com", 8443));
        assert!(!w.matches("a.example.com", 443));
        assert!(!w.matches("example.com", 8443));
        assert!(!w.matches("badexample.com", 8443));
        assert!(HostPattern::parse("x:99999").is_err());
    }

    #[test]
    fn non_public_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(
                is_forbidden(bad.parse().unwrap()),
                "{bad} must be forbidden"
            );
        }
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good} is public");
        }
    }
}

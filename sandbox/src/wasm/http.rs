//! The `http` capability: outbound `wasi:http` requests, checked against the
//! agent's grant and the host's network policy.
//!
//! A request passes these gates, in order:
//! 1. the per-task request budget;
//! 2. the egress gate ([`crate::egress`]): the URL is parsed once, by the
//!    WHATWG rules; its canonical host and port must match the agent's
//!    `outbound_hosts`, and every address it is connected to (the literal,
//!    or each address the name resolves to) must be public. The parsed URL
//!    itself is handed to the client, so nothing parses the host twice;
//! 3. size and time caps on the request body, the response body and the
//!    whole exchange.
//!
//! Redirects are not followed (the guest sees the 3xx and must make a new
//! request, which passes the gates again) and no proxy is used.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::AgentShared;
use crate::egress::{Denied, Destination, Egress};
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

/// The host's outbound HTTP client and limits, shared by every task.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    cfg: Arc<HttpConfig>,
    egress: Egress,
    client: reqwest::Client,
}

impl HttpPolicy {
    pub fn new(cfg: HttpConfig) -> Result<Self, RuntimeError> {
        let egress = Egress::new(cfg.exempt_addrs.clone());
        let client = reqwest::Client::builder()
            .dns_resolver(egress.resolver())
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
            egress,
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

    /// The synchronous gates: the budget, then the egress gate's grant
    /// and address-literal checks on the one parse of the URL.
    fn admit(&mut self, uri: &http::Uri) -> Result<Destination, HttpError> {
        let cfg = self.policy.config();
        if self.sent >= cfg.max_requests_per_task {
            return Err(self.deny(format!(
                "more than {} requests in one task",
                cfg.max_requests_per_task
            )));
        }
        self.sent += 1;
        let dest = Destination::parse(&uri.to_string()).map_err(|e| {
            self.note(&e);
            HttpError::HttpRequestUriInvalid
        })?;
        self.policy
            .egress
            .authorize(&self.agent.http_allow, &dest)
            .map_err(|e| self.refused(e))?;
        Ok(dest)
    }

    fn note(&self, e: &Denied) {
        self.agent
            .log
            .push(&self.agent.id, "warn", &format!("http denied: {e}"));
        tracing::info!(agent = %self.agent.id, "outbound http denied: {e}");
    }

    /// The `wasi:http` code for a refusal, after logging it.
    fn refused(&self, e: Denied) -> HttpError {
        self.note(&e);
        denied_code(&e)
    }
}

/// The `wasi:http` error code a guest sees for a refusal.
fn denied_code(e: &Denied) -> HttpError {
    match e {
        Denied::Prohibited { .. } => HttpError::DestinationIpProhibited,
        Denied::NotGranted { .. } => HttpError::HttpRequestDenied,
        Denied::BadUrl { .. } | Denied::Scheme(_) => HttpError::HttpRequestUriInvalid,
        Denied::Unresolved { reason, .. } => HttpError::DnsError {
            rcode: Some(reason.clone()),
            info_code: None,
        },
    }
}

impl WasiHttpHooks for HttpGate {
    /// No: the client writes `Host` from the URL the gate judged, so a
    /// server never sees a host (or userinfo) that was not checked.
    fn set_host_header(&mut self) -> bool {
        false
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let dest = match self.admit(request.uri()) {
            Ok(d) => d,
            Err(e) => return Box::new(async move { Err(e) }),
        };
        let cfg = self.policy.cfg.clone();
        let client = self.policy.client.clone();
        let agent = self.agent.clone();
        let timeout = options
            .and_then(|o| o.first_byte_timeout)
            .map_or(cfg.request_timeout, |t| t.min(cfg.request_timeout));
        Box::new(async move {
            let (mut parts, body) = request.into_parts();
            // Whatever the guest put in `Host`, the judged URL decides it.
            parts.headers.remove(http::header::HOST);
            let max_req = cfg.max_request_body;
            let body = Limited::new(body, usize::try_from(max_req).unwrap_or(usize::MAX))
                .collect()
                .await
                .map_err(|e| match e.downcast::<HttpError>() {
                    Ok(inner) => *inner,
                    Err(_) => HttpError::HttpRequestBodySize(Some(max_req)),
                })?
                .to_bytes();
            // The URL the gate judged, not a second parse of the request.
            let url = dest.url.to_string();
            let response = client
                .request(parts.method, dest.url)
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
        if let Some(d) = c.downcast_ref::<Denied>() {
            return denied_code(d);
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

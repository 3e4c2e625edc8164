//! The egress gate: the one place that decides whether an agent may open
//! a connection, for every runtime (the WASI `wasi:http` host uses it
//! today; the process agents' egress proxy is to use the same calls).
//!
//! There is one interpretation of a destination. A URL is parsed once, by
//! the WHATWG rules (the `url` crate, the parser the HTTP client itself
//! uses), and that parsed [`Destination`] is what is judged and what is
//! connected to:
//! 1. **the grant**: the destination's canonical host (lower case, IDN as
//!    punycode, an IPv4 address in dotted-quad form whatever spelling it
//!    came in: `127.1`, `0x7f.1`, `0177.0.0.1`, `2130706433`) and port
//!    must match one of the agent's `outbound_hosts` patterns;
//! 2. **the address**: an address literal is checked as it is; a name is
//!    resolved by the host and refused if *any* address it resolves to is
//!    not a public unicast address (loopback, private, link-local with the
//!    cloud metadata service at 169.254.169.254, CGNAT, NAT64/6to4/
//!    IPv4-compatible forms of those, ...). The connection then goes to
//!    exactly the addresses that were checked, so a second DNS answer
//!    cannot rebind it.
//!
//! Operators may exempt specific addresses (their own services, tests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Why the gate refused a destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("`{url}` is not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("`{0}` is not http or https")]
    Scheme(String),
    #[error("{host}:{port} is not in grants.outbound_hosts")]
    NotGranted { host: String, port: u16 },
    #[error("{host} is {addr}, which is not a public address")]
    Prohibited { host: String, addr: IpAddr },
    #[error("{host} did not resolve: {reason}")]
    Unresolved { host: String, reason: String },
}

/// A URL the gate has parsed: what is judged is what is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub url: Url,
    /// The canonical host: a lower-case ASCII name, or an address.
    pub host: Host<String>,
    pub port: u16,
}

impl Destination {
    /// Parses `url` by the WHATWG rules; only `http` and `https` with a host.
    pub fn parse(url: &str) -> Result<Destination, Denied> {
        let u = Url::parse(url).map_err(|e| Denied::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Destination::from_url(u)
    }

    pub fn from_url(url: Url) -> Result<Destination, Denied> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Denied::Scheme(url.scheme().to_string()));
        }
        let host = url
            .host()
            .map(|h| h.to_owned())
            .ok_or_else(|| Denied::BadUrl {
                url: url.to_string(),
                reason: "no host".into(),
            })?;
        let port = url.port_or_known_default().ok_or_else(|| Denied::BadUrl {
            url: url.to_string(),
            reason: "no port".into(),
        })?;
        Ok(Destination { url, host, port })
    }

    /// The host as grant patterns see it: a name, or an address without
    /// brackets.
    pub fn host_text(&self) -> String {
        match &self.host {
            Host::Domain(d) => d.trim_end_matches('.').to_string(),
            Host::Ipv4(a) => a.to_string(),
            Host::Ipv6(a) => a.to_string(),
        }
    }
}

/// The gate, with the operator's exemptions and this host's own addresses.
#[derive(Debug, Clone, Default)]
pub struct Egress {
    exempt: Arc<[IpAddr]>,
    /// The host's interface addresses: a public one still leads to every
    /// service the host binds on all interfaces (the node's libp2p port).
    own: Arc<[IpAddr]>,
}

impl Egress {
    /// `exempt`: addresses agents may reach although they are not public.
    /// The host's own interface addresses are refused too.
    pub fn new(exempt: Vec<IpAddr>) -> Egress {
        Egress {
            exempt: exempt.into(),
            own: local_addresses().into(),
        }
    }

    /// Whether agents may connect to `ip`.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        if self.exempt.contains(&ip) {
            return true;
        }
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !is_forbidden(ip) && !self.own.contains(&canonical)
    }

    /// The checks that need no DNS: the grant, then an address literal.
    pub fn authorize(&self, grant: &[HostPattern], dest: &Destination) -> Result<(), Denied> {
        let host = dest.host_text();
        if !grant.iter().any(|p| p.matches(&host, dest.port)) {
            return Err(Denied::NotGranted {
                host,
                port: dest.port,
            });
        }
        let literal = match dest.host {
            Host::Ipv4(a) => Some(IpAddr::V4(a)),
            Host::Ipv6(a) => Some(IpAddr::V6(a)),
            Host::Domain(_) => None,
        };
        match literal {
            Some(addr) if !self.address_allowed(addr) => Err(Denied::Prohibited { host, addr }),
            _ => Ok(()),
        }
    }

    /// The socket addresses to connect to: the literal, or every address
    /// the name resolves to, each of them allowed.
    pub async fn addresses(&self, dest: &Destination) -> Result<Vec<SocketAddr>, Denied> {
        match &dest.host {
            Host::Ipv4(a) => self.checked(
                dest.host_text(),
                vec![SocketAddr::new((*a).into(), dest.port)],
            ),
            Host::Ipv6(a) => self.checked(
                dest.host_text(),
                vec![SocketAddr::new((*a).into(), dest.port)],
            ),
            Host::Domain(d) => self.resolve(d, dest.port).await,
        }
    }

    /// Resolves `name` with the system resolver and refuses the whole
    /// answer if any address is not allowed.
    pub async fn resolve(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, Denied> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Denied::Unresolved {
                host: name.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(Denied::Unresolved {
                host: name.to_string(),
                reason: "no addresses".into(),
            });
        }
        self.checked(name.to_string(), addrs)
    }

    fn checked(&self, host: String, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Denied> {
        match addrs.iter().find(|a| !self.address_allowed(a.ip())) {
            Some(bad) => Err(Denied::Prohibited {
                host,
                addr: bad.ip(),
            }),
            None => Ok(addrs),
        }
    }

    /// Authorizes `dest` for `grant` and opens a TCP connection to one of
    /// its checked addresses: the call an egress proxy makes.
    pub async fn connect(
        &self,
        grant: &[HostPattern],
        dest: &Destination,
    ) -> Result<tokio::net::TcpStream, ConnectError> {
        self.authorize(grant, dest)?;
        let addrs = self.addresses(dest).await?;
        let mut last = None;
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(ConnectError::Io(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
        })))
    }

    /// The resolver the HTTP client uses, so names are checked at the
    /// moment they are resolved for a connection.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver { gate: self.clone() })
    }
}

/// This host's interface addresses (empty if they cannot be listed).
fn local_addresses() -> Vec<IpAddr> {
    let Ok(ifs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    ifs.filter_map(|i| i.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

/// [`Egress::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("connect failed: {0}")]
    Io(std::io::Error),
}

/// reqwest's resolver: [`Egress::resolve`]. reqwest connects to exactly
/// what it returns.
#[derive(Debug)]
pub struct GuardedResolver {
    gate: Egress,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let gate = self.gate.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            gate.resolve(&name, 0)
                .await
                .map(|a| Box::new(a.into_iter()) as reqwest::dns::Addrs)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
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
        // A pattern is compared with the canonical host of the parsed URL,
        // so an address spelled any other way (`127.1`, `0x7f.1`,
        // `2130706433`) could only ever be a second interpretation. Refuse
        // it; the canonical spelling is still subject to the address check.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(h) = url::Host::parse(&host)
            && matches!(h, url::Host::Ipv4(_) | url::Host::Ipv6(_))
            && h.to_string().trim_start_matches('[').trim_end_matches(']') != bare
        {
            return Err(bad("is an address in a non-canonical spelling"));
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
        || ip == Ipv4Addr::new(168, 63, 129, 16) // Azure's platform endpoint (public space)
}

/// IPv6 by allow-list: only global unicast (2000::/3) may be reached, and
/// within it not the ranges that lead somewhere else (6to4, Teredo) or
/// nowhere (documentation, benchmarking, ORCHID). Forms that embed an IPv4
/// address (mapped, SIIT, the well-known NAT64 prefix, IPv4-compatible) are
/// judged by that address.
fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    // 64:ff9b::/96 (NAT64), ::ffff:0:0/96 (SIIT) and ::/96 (IPv4-compatible).
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
        || seg[..6] == [0, 0, 0, 0, 0xffff, 0]
        || (seg[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified())
    {
        return forbidden_v4(embedded);
    }
    (seg[0] & 0xe000) != 0x2000 // outside 2000::/3: loopback, ULA, link-local, multicast, 64:ff9b:1::/48, ...
        || seg[0] == 0x2002 // 6to4 can reach any IPv4 address
        || (seg[0] == 0x2001 && seg[1] == 0) // 2001::/32 Teredo
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x2001 && seg[1] == 2 && seg[2] == 0) // 2001:2::/48 benchmarking
        || (seg[0] == 0x2001 && (seg[1] & 0xffe0) == 0x0020) // 2001:20::/28 ORCHIDv2
        || (seg[0] == 0x2001 && (seg[1] & 0xfff0) == 0x0010) // 2001:10::/28 ORCHID
        || (seg[0] & 0xffc0) == 0x3fc0 // 3fff::/20 documentation (RFC 9637)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grant(patterns: &[&str]) -> Vec<HostPattern> {
        patterns
            .iter()
            .map(|p| HostPattern::parse(p).expect("pattern"))
            .collect()
    }

    /// Grants as broad as an attacker could hope for: the names, the
    /// wildcard, and the canonical private addresses themselves.
    fn everything() -> Vec<HostPattern> {
        grant(&[
            "localhost",
            "api.example.com",
            "*.example.com",
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
        ])
    }

    fn judge(url: &str) -> Result<Destination, Denied> {
        let d = Destination::parse(url)?;
        Egress::default().authorize(&everything(), &d)?;
        Ok(d)
    }

    #[test]
    fn every_spelling_of_a_non_public_address_is_refused() {
        // (URL, the address it means, or None when the URL itself is refused)
        let corpus: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:7878/api/health", Some("127.0.0.1")),
            ("http://127.1:7878/api/health", Some("127.0.0.1")),
            ("http://127.0.1/", Some("127.0.0.1")),
            ("http://2130706433:7878/", Some("127.0.0.1")),
            ("http://0x7f.1/", Some("127.0.0.1")),
            ("http://0x7f000001/", Some("127.0.0.1")),
            ("http://0177.0.0.1/", Some("127.0.0.1")),
            ("http://0177.0.0.01/", Some("127.0.0.1")),
            ("http://017700000001/", Some("127.0.0.1")),
            ("http://0x7f.0.0.1/", Some("127.0.0.1")),
            ("http://127.0.0.1./", Some("127.0.0.1")),
            ("HTTP://127.0.0.1/", Some("127.0.0.1")),
            ("http://%31%32%37.0.0.1/", Some("127.0.0.1")),
            ("http://%31%32%37%2e1/", Some("127.0.0.1")),
            ("http://api.example.com@127.0.0.1/", Some("127.0.0.1")),
            ("http://api.example.com:443@127.1/", Some("127.0.0.1")),
            ("http://10.1/", Some("10.0.0.1")),
            ("http://167772161/", Some("10.0.0.1")),
            (
                "http://2852039166/latest/meta-data/",
                Some("169.254.169.254"),
            ),
            ("http://0xa9fea9fe/", Some("169.254.169.254")),
            ("http://169.254.43518/", Some("169.254.169.254")),
            ("http://0251.0376.0251.0376/", Some("169.254.169.254")),
            ("http://0/", Some("0.0.0.0")),
            ("http://[::1]/", Some("::1")),
            ("http://[0:0:0:0:0:0:0:1]/", Some("::1")),
            ("http://[::ffff:127.0.0.1]/", Some("::ffff:127.0.0.1")),
            ("http://[::ffff:7f00:1]/", Some("::ffff:127.0.0.1")),
            ("http://[::ffff:a9fe:a9fe]/", Some("::ffff:169.254.169.254")),
            ("http://[64:ff9b::7f00:1]/", Some("64:ff9b::7f00:1")),
            ("http://[::7f00:1]/", Some("::7f00:1")),
            ("http://[2002:7f00:1::]/", Some("2002:7f00:1::")),
            ("http://[fe80::1]/", Some("fe80::1")),
            ("http://[fd00:ec2::254]/", Some("fd00:ec2::254")),
            ("http://[::]/", Some("::")),
            ("http://[::ffff:0:7f00:1]/", Some("::ffff:0:7f00:1")),
            (
                "http://[64:ff9b:1:a9fe:0:a9fe::]/",
                Some("64:ff9b:1:a9fe:0:a9fe::"),
            ),
            ("http://[100::1]/", Some("100::1")),
            ("http://[2001:2::1]/", Some("2001:2::1")),
            ("http://168.63.129.16/", Some("168.63.129.16")),
            ("http://[fe80::1%25eth0]/", None),
            ("http://127.0.0.1:99999/", None),
            ("file:///etc/passwd", None),
            ("gopher://127.0.0.1/", None),
        ];
        for (url, means) in corpus {
            let r = judge(url);
            match (means, &r) {
                (Some(addr), Err(Denied::Prohibited { addr: a, .. })) => {
                    assert_eq!(a, &addr.parse::<IpAddr>().unwrap(), "{url}")
                }
                // Not granted is refused too: only canonical names and
                // addresses can match a grant.
                (Some(_), Err(Denied::NotGranted { .. })) => {}
                (None, Err(Denied::BadUrl { .. } | Denied::Scheme(_))) => {}
                _ => panic!("{url} must be refused, got {r:?}"),
            }
        }
    }

    #[test]
    fn names_are_judged_as_the_client_will_read_them() {
        // A backslash ends the authority (WHATWG): this is api.example.com.
        let d = judge("http://api.example.com\\@127.0.0.1/").unwrap();
        assert_eq!(d.host_text(), "api.example.com");
        // Upper case, a trailing dot and IDN fold to one canonical name.
        for url in ["http://API.Example.COM/", "http://api.example.com./"] {
            assert_eq!(judge(url).unwrap().host_text(), "api.example.com");
        }
        let d = judge("http://\u{24db}ocalhost/").unwrap();
        assert_eq!(d.host_text(), "localhost");
        let d = Destination::parse("https://b\u{fc}cher.example.com/").unwrap();
        assert_eq!(d.host_text(), "xn--bcher-kva.example.com");
        assert!(Egress::default().authorize(&everything(), &d).is_ok());
        // A name not granted, even one that looks like a granted one.
        for url in [
            "http://api.example.com.evil.net/",
            "http://example.com/",
            "http://localhost.evil.net/",
        ] {
            assert!(
                matches!(judge(url), Err(Denied::NotGranted { .. })),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_are_refused_at_resolution() {
        let gate = Egress::default();
        for url in [
            "http://localhost:1/",
            "http://LOCALHOST.:1/",
            "http://\u{24db}ocalhost:1/",
        ] {
            let d = judge(url).unwrap();
            match gate.addresses(&d).await {
                Err(Denied::Prohibited { addr, .. }) => assert!(addr.is_loopback(), "{url}"),
                // Some resolvers do not answer for `localhost.`: refused too.
                Err(Denied::Unresolved { .. }) if url.contains(".:") => {}
                other => panic!("{url}: {other:?}"),
            }
        }
        // Exempted by the operator: reachable, at exactly the checked address.
        let open = Egress::new(vec!["127.0.0.1".parse().unwrap()]);
        let d = Destination::parse("http://127.1:9/").unwrap();
        open.authorize(&grant(&["127.0.0.1"]), &d).unwrap();
        assert_eq!(
            open.addresses(&d).await.unwrap(),
            vec!["127.0.0.1:9".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn this_hosts_own_addresses_are_refused_even_when_public() {
        let gate = Egress::new(vec![]);
        for a in local_addresses() {
            assert!(!gate.address_allowed(a), "{a} is this host's");
        }
        let public_host = Egress {
            exempt: Arc::from(Vec::new()),
            own: Arc::from(vec!["8.8.8.8".parse::<IpAddr>().unwrap()]),
        };
        assert!(!public_host.address_allowed("8.8.8.8".parse().unwrap()));
        assert!(!public_host.address_allowed("::ffff:8.8.8.8".parse().unwrap()));
        assert!(public_host.address_allowed("1.1.1.1".parse().unwrap()));
    }

    #[test]
    fn granted_public_destinations_pass() {
        let gate = Egress::default();
        let g = grant(&["api.example.com", "8.8.8.8:53", "*.example.org"]);
        for url in [
            "https://api.example.com/v1",
            "http://8.8.8.8:53/",
            "http://134744072:53/",
            "https://a.b.example.org/",
        ] {
            let d = Destination::parse(url).unwrap();
            assert!(gate.authorize(&g, &d).is_ok(), "{url}");
        }
    }

    #[test]
    fn grant_patterns_refuse_non_canonical_addresses() {
        for bad in ["127.1", "0x7f.0.0.1", "2130706433", "127.1:7878"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(HostPattern::parse("127.0.0.1:7878").is_ok());
    }

    /// One IPv4 address in one of the spellings the WHATWG parser reads.
    fn spell(ip: u32, style: u8, parts: u8) -> String {
        let o = ip.to_be_bytes();
        let num = |v: u32, s: u8| match s % 3 {
            0 => v.to_string(),
            1 => format!("0x{v:x}"),
            _ => format!("0{v:o}"),
        };
        match parts % 4 {
            0 => num(ip, style),
            1 => format!(
                "{}.{}",
                num(o[0].into(), style),
                num(ip & 0xff_ffff, style / 3)
            ),
            2 => format!(
                "{}.{}.{}",
                num(o[0].into(), style),
                num(o[1].into(), style / 3),
                num(ip & 0xffff, style / 9)
            ),
            _ => format!(
                "{}.{}.{}.{}",
                num(o[0].into(), style),
                num(o[1].into(), style / 3),
                num(o[2].into(), style / 9),
                num(o[3].into(), style / 27)
            ),
        }
    }

    proptest! {
        /// Whatever the spelling, the gate sees the address the client will
        /// connect to, and lets it through only when it is public.
        #[test]
        fn any_spelling_of_an_ipv4_address_is_judged_as_that_address(
            ip in any::<u32>(), style in any::<u8>(), parts in any::<u8>(), port in 1u16..
        ) {
            let addr = Ipv4Addr::from(ip);
            let url = format!("http://{}:{port}/", spell(ip, style, parts));
            let d = Destination::parse(&url).unwrap();
            prop_assert_eq!(&d.host, &Host::<String>::Ipv4(addr));
            let g = grant(&[&addr.to_string()]);
            let r = Egress::default().authorize(&g, &d);
            prop_assert_eq!(r.is_ok(), !is_forbidden(IpAddr::V4(addr)), "{} {:?}", url, r);
        }
    }

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

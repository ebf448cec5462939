//! The SSRF guard: which URLs a webhook named in a request may make this service call.
//!
//! A caller of Enqueue names the URL. Without a guard, any caller could make the service reach
//! what only the service can reach: a cloud metadata endpoint, an admin port on localhost, a
//! database on the private network. The operator's allow-list
//! (`flyteNotify.webhooks.allowedHosts`) says which hosts may be called at all; a private,
//! loopback or otherwise non-public address also needs an entry of its own (an exact host name,
//! the address, or a CIDR holding it), also when an allowed name merely resolves to one.
//! `allowPrivate` admits non-public addresses wholesale, except the few that are never a webhook
//! (see `Kind::covered_by_allow_private`).
//!
//! One policy, three checks:
//! - `check_url` when a URL is read: scheme, credentials, the host against the list, and an
//!   address literal against the ranges. No DNS.
//! - `check_resolved` at Enqueue: the same, then every address the name resolves to.
//! - `GuardedResolver` at send time, as the HTTP client's resolver: it hands the connector only
//!   addresses that pass, so a name that resolved to a public address at Enqueue and resolves to
//!   127.0.0.1 when the webhook is sent (DNS rebinding) still cannot reach 127.0.0.1. Address
//!   literals never reach a resolver, which is why the sender runs `check_url` before each send.
//!
//! Entries of the allow-list:
//! - `hooks.example.com`: that host, whatever it resolves to (the operator named it);
//! - `*.example.com`: any host below example.com (not example.com itself), public addresses only;
//! - `*`: any host, public addresses only;
//! - `10.1.2.3`, `[fd00::1]`, `10.1.0.0/16`, `fd00::/8`: URLs naming such an address, and names
//!   (allowed by another entry) that resolve into it.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use url::{Host, Url};

/// The config key operators are pointed at.
pub const ALLOWED_HOSTS_KEY: &str = "flyteNotify.webhooks.allowedHosts";

/// The longest URL accepted: far beyond any real webhook, short enough to show in an error.
pub const MAX_URL_BYTES: usize = 4096;

/// How long `check_resolved` waits for DNS: Enqueue must answer promptly.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Name resolution, behind a trait so that tests (and operators with unusual resolvers) can say
/// what a name resolves to.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>>;
}

/// The system's resolver (getaddrinfo), as reqwest would use it.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// One allow-list entry, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Any,
    /// Lower case, without a trailing dot.
    Name(String),
    /// `*.example.com` as ".example.com".
    Below(String),
    /// An address is a network of one. The address is canonical (IPv4-mapped IPv6 as IPv4)
    /// and its host bits are zero.
    Net {
        addr: IpAddr,
        prefix: u8,
    },
}

/// Why the guard refused: what the caller (or the operator) must change. Carried through the
/// HTTP client's error chain from the resolver, so that the sender can tell a refusal (no retry
/// mends it) from a DNS outage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What `check_resolved` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The URL or an address it resolves to is not allowed: an invalid argument.
    #[error("{0}")]
    Refused(String),
    /// DNS did not answer, or had no address: perhaps a passing outage. The resolver checks
    /// again at send time, so a caller may accept the URL.
    #[error("{0}")]
    Lookup(String),
}

/// Which kind of non-public address, for the error and for what `allowPrivate` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    UniqueLocal,
    SiteLocal,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    Reserved,
    /// 169.254.169.254 and its kin: the credentials of the machine the service runs on.
    CloudMetadata,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Unspecified => "an unspecified address",
            Kind::Loopback => "a loopback address",
            Kind::Private => "a private address",
            Kind::LinkLocal => "a link-local address",
            Kind::Shared => "a shared (carrier-grade NAT) address",
            Kind::UniqueLocal => "a unique-local IPv6 address",
            Kind::SiteLocal => "a site-local IPv6 address",
            Kind::Multicast => "a multicast address",
            Kind::Broadcast => "the broadcast address",
            Kind::Documentation => "a documentation address",
            Kind::Benchmarking => "a benchmarking address",
            Kind::Reserved => "a reserved address",
            Kind::CloudMetadata => "a cloud metadata address",
        }
    }

    /// `allowPrivate` is for webhooks on the private network. The unspecified address (which
    /// Linux connects to the local host), link-local addresses and cloud metadata endpoints are
    /// never that, so they stay refused unless an entry names them.
    pub fn covered_by_allow_private(self) -> bool {
        !matches!(
            self,
            Kind::Unspecified | Kind::LinkLocal | Kind::CloudMetadata
        )
    }
}

/// A non-public address: its kind, and the IPv4 address it embeds when it is an IPv6 form of one
/// (mapped, NAT64, 6to4), which is what it was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    pub kind: Kind,
    pub embedded: Option<(&'static str, Ipv4Addr)>,
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            None => f.write_str(self.kind.describe()),
            Some((form, v4)) => write!(f, "{form} form of {v4}, {}", self.kind.describe()),
        }
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn special_v4(ip: Ipv4Addr) -> Option<Kind> {
    const RANGES: &[([u8; 4], u32, Kind)] = &[
        ([169, 254, 169, 254], 32, Kind::CloudMetadata),
        ([100, 100, 100, 200], 32, Kind::CloudMetadata),
        ([255, 255, 255, 255], 32, Kind::Broadcast),
        ([0, 0, 0, 0], 8, Kind::Unspecified),
        ([10, 0, 0, 0], 8, Kind::Private),
        ([100, 64, 0, 0], 10, Kind::Shared),
        ([127, 0, 0, 0], 8, Kind::Loopback),
        ([169, 254, 0, 0], 16, Kind::LinkLocal),
        ([172, 16, 0, 0], 12, Kind::Private),
        ([192, 0, 0, 0], 24, Kind::Reserved),
        ([192, 0, 2, 0], 24, Kind::Documentation),
        ([192, 88, 99, 0], 24, Kind::Reserved),
        ([192, 168, 0, 0], 16, Kind::Private),
        ([198, 18, 0, 0], 15, Kind::Benchmarking),
        ([198, 51, 100, 0], 24, Kind::Documentation),
        ([203, 0, 113, 0], 24, Kind::Documentation),
        ([224, 0, 0, 0], 4, Kind::Multicast),
        ([240, 0, 0, 0], 4, Kind::Reserved),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

/// Whether `ip` is anything but a public unicast address, and which kind.
pub fn special(ip: IpAddr) -> Option<Special> {
    let plain = |kind| Special {
        kind,
        embedded: None,
    };
    let v6 = match ip {
        IpAddr::V4(v4) => return special_v4(v4).map(plain),
        IpAddr::V6(v6) => v6,
    };
    let bits = u128::from(v6);
    // IPv6 forms of an IPv4 address reach that address: judge them by it.
    let embedded = |form, v4: Ipv4Addr| {
        special_v4(v4).map(|kind| Special {
            kind,
            embedded: Some((form, v4)),
        })
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return embedded("an IPv4-mapped", v4);
    }
    let net = |s: &str| s.parse::<Ipv6Addr>().expect("a valid range");
    if in_v6(v6, net("64:ff9b::"), 96) {
        return embedded("a NAT64", Ipv4Addr::from(bits as u32));
    }
    if in_v6(v6, net("2002::"), 16) {
        return embedded("a 6to4", Ipv4Addr::from((bits >> 80) as u32));
    }
    let ranges: [(&str, u32, Kind); 13] = [
        ("::", 128, Kind::Unspecified),
        ("::1", 128, Kind::Loopback),
        ("fd00:ec2::254", 128, Kind::CloudMetadata),
        // IPv4-compatible addresses (deprecated) and the rest of ::/8.
        ("::", 8, Kind::Reserved),
        ("64:ff9b:1::", 48, Kind::Reserved),
        ("100::", 64, Kind::Reserved),
        ("2001:2::", 48, Kind::Benchmarking),
        ("2001:db8::", 32, Kind::Documentation),
        ("3fff::", 20, Kind::Documentation),
        ("fc00::", 7, Kind::UniqueLocal),
        ("fe80::", 10, Kind::LinkLocal),
        ("fec0::", 10, Kind::SiteLocal),
        ("ff00::", 8, Kind::Multicast),
    ];
    if let Some((_, _, kind)) = ranges
        .iter()
        .find(|(n, prefix, _)| in_v6(v6, net(n), *prefix))
    {
        return Some(plain(*kind));
    }
    // Teredo and the other IETF assignments of 2001::/23, and everything outside global
    // unicast (2000::/3): no webhook lives there.
    if in_v6(v6, net("2001::"), 23) || !in_v6(v6, net("2000::"), 3) {
        return Some(plain(Kind::Reserved));
    }
    None
}

fn contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    match (net, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(a)) => in_v4(a, n.octets(), prefix.into()),
        (IpAddr::V6(n), IpAddr::V6(a)) => in_v6(a, n, prefix.into()),
        _ => false,
    }
}

/// A host as written in a URL or an entry: lower case, without a trailing dot.
fn normal_name(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.strip_suffix('.') {
        Some(stripped) => stripped.to_string(),
        None => name,
    }
}

fn parse_addr(text: &str) -> Option<IpAddr> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

fn parse_entry(text: &str) -> Result<Entry, String> {
    let entry = normal_name(text.trim());
    let how = "write a host name (hooks.example.com), *.example.com, an address (10.1.2.3) or a \
               CIDR (10.1.0.0/16)";
    if entry.is_empty() {
        return Err(format!("an empty entry; {how}"));
    }
    if entry == "*" {
        return Ok(Entry::Any);
    }
    if entry.contains("://") {
        return Err(format!(
            "{text:?} is a URL; write its host alone (no scheme, port or path)"
        ));
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        let addr = parse_addr(addr).ok_or_else(|| format!("{text:?} is not a CIDR; {how}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?;
        return Ok(net_entry(addr, prefix));
    }
    if let Some(addr) = parse_addr(&entry) {
        let prefix = if addr.to_canonical().is_ipv4() {
            32
        } else {
            128
        };
        return Ok(net_entry(addr, prefix));
    }
    let (below, name) = match entry.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, entry.as_str()),
    };
    if name.contains('*') {
        return Err(format!(
            "{text:?}: a wildcard may only stand for the leading labels, as in *.example.com"
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "{text:?}: write the host without a port; any port of an allowed host may be called"
        ));
    }
    match Host::parse(name) {
        Ok(Host::Domain(domain)) if !below => Ok(Entry::Name(domain)),
        Ok(Host::Domain(domain)) => Ok(Entry::Below(format!(".{domain}"))),
        // `0x7f.1` and the like: the URL parser reads them as addresses, and so do we.
        Ok(Host::Ipv4(v4)) if !below => Ok(net_entry(IpAddr::V4(v4), 32)),
        _ => Err(format!("{text:?} is not a host name; {how}")),
    }
}

fn net_entry(addr: IpAddr, prefix: u8) -> Entry {
    let addr = addr.to_canonical();
    // An IPv4-mapped CIDR (::ffff:10.0.0.0/104) is the IPv4 one it maps.
    let prefix = match addr {
        IpAddr::V4(_) if prefix > 32 => prefix - 96,
        _ => prefix,
    };
    let addr = match addr {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    Entry::Net { addr, prefix }
}

/// Which webhook URLs may be called. Built once from the config and shared (`Arc`) by Enqueue's
/// checks and the sender.
pub struct WebhookPolicy {
    entries: Vec<Entry>,
    allow_private: bool,
    lookup: Arc<dyn Lookup>,
}

impl fmt::Debug for WebhookPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPolicy")
            .field("entries", &self.entries)
            .field("allow_private", &self.allow_private)
            .finish_non_exhaustive()
    }
}

impl WebhookPolicy {
    /// `allowed_hosts` as `flyteNotify.webhooks.allowedHosts` holds them (see the module doc).
    /// An entry that cannot be read is an error: `(its config key, why)`.
    pub fn new(allowed_hosts: &[String], allow_private: bool) -> Result<Self, (String, String)> {
        let entries = allowed_hosts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_entry(text).map_err(|e| (format!("{ALLOWED_HOSTS_KEY}[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            entries,
            allow_private,
            lookup: Arc::new(SystemLookup),
        })
    }

    /// The same policy resolving names with `lookup` instead of the system's resolver.
    pub fn with_lookup(mut self, lookup: Arc<dyn Lookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// Checks `url` without DNS: an http or https URL without credentials, whose host the
    /// allow-list admits, and which is not a non-public address (or `localhost`) unless an entry
    /// or `allowPrivate` admits that. Returns the parsed URL, which is what gets called.
    pub fn check_url(&self, url: &str) -> Result<Url, String> {
        if url.len() > MAX_URL_BYTES {
            return Err(format!(
                "{} bytes; a webhook URL may have at most {MAX_URL_BYTES}",
                url.len()
            ));
        }
        // The URL parser silently drops tabs and newlines and trims spaces: refuse them, so
        // that what the caller wrote is what is checked and called.
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("contains whitespace or control characters".into());
        }
        let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme {} is not allowed; use http or https",
                parsed.scheme()
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "credentials in the URL (user:password@) are not allowed; a URL with a secret \
                 belongs in a configured destination (flyteNotify.webhooks.destinations)"
                    .into(),
            );
        }
        match parsed.host() {
            None => return Err("has no host".into()),
            Some(Host::Domain(name)) => self.check_name(name).map_err(|Refused(e)| e)?,
            Some(Host::Ipv4(v4)) => self.check_literal(IpAddr::V4(v4))?,
            Some(Host::Ipv6(v6)) => self.check_literal(IpAddr::V6(v6))?,
        }
        Ok(parsed)
    }

    /// `check_url`, then every address the host resolves to must pass too: what Enqueue checks.
    /// The sender's resolver checks again at send time, whatever DNS says then.
    pub async fn check_resolved(&self, url: &str) -> Result<Url, GuardError> {
        let parsed = self.check_url(url).map_err(GuardError::Refused)?;
        if let Some(Host::Domain(name)) = parsed.host() {
            let name = normal_name(name);
            let addrs = tokio::time::timeout(LOOKUP_TIMEOUT, self.lookup.lookup(name.clone()))
                .await
                .map_err(|_| {
                    GuardError::Lookup(format!(
                        "cannot resolve host {name}: no answer within {}",
                        humantime::format_duration(LOOKUP_TIMEOUT)
                    ))
                })?
                .map_err(|e| GuardError::Lookup(format!("cannot resolve host {name}: {e}")))?;
            if addrs.is_empty() {
                return Err(GuardError::Lookup(format!("host {name} has no address")));
            }
            for ip in addrs {
                self.check_address_of(&name, ip)
                    .map_err(|Refused(e)| GuardError::Refused(e))?;
            }
        }
        Ok(parsed)
    }

    /// The resolver for an HTTP client that may only reach what this policy allows.
    pub fn resolver(self: &Arc<Self>) -> GuardedResolver {
        GuardedResolver {
            policy: self.clone(),
        }
    }

    fn exact(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Name(n) if n == name))
    }

    fn admits_name(&self, name: &str) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Any => true,
            Entry::Name(n) => n == name,
            Entry::Below(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
            Entry::Net { .. } => false,
        })
    }

    fn listed_address(&self, ip: IpAddr) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e, Entry::Net { addr, prefix } if contains(*addr, *prefix, ip)))
    }

    fn not_allowed(&self, host: &str) -> String {
        if self.entries.is_empty() {
            format!(
                "host {host} is not allowed: {ALLOWED_HOSTS_KEY} is empty, so webhooks can only \
                 go to configured destinations"
            )
        } else {
            format!("host {host} is not in {ALLOWED_HOSTS_KEY}")
        }
    }

    /// A host name against the list. `localhost` and names below it are loopback without
    /// asking DNS (RFC 6761), so they need their own entry like 127.0.0.1 does.
    fn check_name(&self, name: &str) -> Result<(), Refused> {
        let name = normal_name(name);
        if !self.admits_name(&name) {
            return Err(Refused(self.not_allowed(&name)));
        }
        let loopback_name = name == "localhost" || name.ends_with(".localhost");
        if loopback_name && !self.exact(&name) && !self.allow_private {
            return Err(Refused(format!(
                "host {name} is a loopback name; add it to {ALLOWED_HOSTS_KEY} to allow it"
            )));
        }
        Ok(())
    }

    /// An address written in the URL: an address entry must hold it, or `*` admit it and it
    /// be public (or covered by `allowPrivate`).
    fn check_literal(&self, ip: IpAddr) -> Result<(), String> {
        if self.listed_address(ip) {
            return Ok(());
        }
        let any = self.entries.contains(&Entry::Any);
        match special(ip) {
            Some(s) if !(self.allow_private && s.kind.covered_by_allow_private()) => Err(format!(
                "host {ip} is {s}; add it to {ALLOWED_HOSTS_KEY} to allow it"
            )),
            _ if any => Ok(()),
            _ => Err(self.not_allowed(&ip.to_string())),
        }
    }

    /// One address an allowed name resolved to.
    fn check_address_of(&self, name: &str, ip: IpAddr) -> Result<(), Refused> {
        if self.exact(name) || self.listed_address(ip) {
            return Ok(());
        }
        match special(ip) {
            Some(s) if !(self.allow_private && s.kind.covered_by_allow_private()) => {
                Err(Refused(format!(
                    "host {name} resolves to {ip}, {s}; add the host or the address to \
                     {ALLOWED_HOSTS_KEY} to allow it"
                )))
            }
            _ => Ok(()),
        }
    }

    /// What the guarded resolver hands the connector: the addresses of `name` that pass. A
    /// refusal is a `Refused`; a DNS failure stays an I/O error (worth a retry).
    async fn resolve(
        &self,
        name: &str,
    ) -> Result<Vec<IpAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let name = normal_name(name);
        self.check_name(&name)?;
        let addrs = self.lookup.lookup(name.clone()).await?;
        let mut passed = Vec::with_capacity(addrs.len());
        let mut refused = Vec::new();
        for ip in addrs {
            match self.check_address_of(&name, ip) {
                Ok(()) => passed.push(ip),
                Err(Refused(why)) => refused.push(why),
            }
        }
        if passed.is_empty() {
            return Err(Box::new(Refused(match refused.first() {
                Some(first) => first.clone(),
                None => format!("host {name} has no address"),
            })));
        }
        if !refused.is_empty() {
            tracing::warn!(
                host = %name,
                dropped = %refused.join("; "),
                "some addresses of a webhook host are not allowed; connecting to the others only"
            );
        }
        Ok(passed)
    }
}

/// The HTTP client's resolver for webhooks named in requests: resolves, then drops every address
/// the policy refuses (failing when none is left), so the connection can only go to addresses
/// that passed, whatever DNS answered at Enqueue.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<WebhookPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy.resolve(&name).await?;
            // Port 0: the connector puts the URL's port in.
            let addrs: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The guard's refusal somewhere in `e`'s causes: an HTTP client error that happened because
/// the resolver refused every address.
pub fn refusal_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(refused) = c.downcast_ref::<Refused>() {
            return Some(refused);
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Answers from a table; a name not in it does not exist.
    struct Table(HashMap<&'static str, Vec<IpAddr>>);

    impl Lookup for Table {
        fn lookup(&self, host: String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> {
            let answer = self.0.get(host.as_str()).cloned();
            Box::pin(async move {
                answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
            })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy(entries: &[&str], allow_private: bool) -> WebhookPolicy {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        WebhookPolicy::new(&entries, allow_private)
            .unwrap()
            .with_lookup(Arc::new(Table(HashMap::from([
                ("hooks.example.com", vec![ip("93.184.216.34")]),
                ("internal.example.com", vec![ip("10.0.0.5")]),
                ("rebind.example.com", vec![ip("127.0.0.1")]),
                (
                    "both.example.com",
                    vec![ip("93.184.216.34"), ip("10.0.0.5")],
                ),
                ("metadata.example.com", vec![ip("169.254.169.254")]),
                ("localhost", vec![ip("127.0.0.1"), ip("::1")]),
                ("svc.corp.example", vec![ip("10.1.2.3")]),
            ]))))
    }

    #[test]
    fn non_public_addresses_are_classified() {
        let kind = |s: &str| special(ip(s)).map(|s| s.kind);
        for (addr, want) in [
            ("10.0.0.5", Kind::Private),
            ("172.31.255.255", Kind::Private),
            ("192.168.1.1", Kind::Private),
            ("127.0.0.1", Kind::Loopback),
            ("127.255.0.9", Kind::Loopback),
            ("169.254.1.1", Kind::LinkLocal),
            ("169.254.169.254", Kind::CloudMetadata),
            ("0.0.0.0", Kind::Unspecified),
            ("100.64.0.1", Kind::Shared),
            ("224.0.0.1", Kind::Multicast),
            ("255.255.255.255", Kind::Broadcast),
            ("240.0.0.1", Kind::Reserved),
            ("192.0.2.1", Kind::Documentation),
            ("198.18.0.1", Kind::Benchmarking),
            ("::", Kind::Unspecified),
            ("::1", Kind::Loopback),
            ("fe80::1", Kind::LinkLocal),
            ("fd12:3456::1", Kind::UniqueLocal),
            ("fd00:ec2::254", Kind::CloudMetadata),
            ("fec0::1", Kind::SiteLocal),
            ("ff02::1", Kind::Multicast),
            ("2001:db8::1", Kind::Documentation),
            ("2001::1", Kind::Reserved),
            ("::10.0.0.1", Kind::Reserved),
            ("::ffff:10.0.0.5", Kind::Private),
            ("::ffff:127.0.0.1", Kind::Loopback),
            ("64:ff9b::a9fe:a9fe", Kind::CloudMetadata),
            ("2002:7f00:1::", Kind::Loopback),
        ] {
            assert_eq!(kind(addr), Some(want), "{addr}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(kind(public), None, "{public}");
        }
        assert_eq!(
            special(ip("::ffff:10.0.0.5")).unwrap().to_string(),
            "an IPv4-mapped form of 10.0.0.5, a private address"
        );
    }

    #[test]
    fn entries_are_read_once_and_bad_ones_name_their_key() {
        let e = |s: &str| parse_entry(s);
        assert_eq!(
            e("Hooks.Example.COM.").unwrap(),
            Entry::Name("hooks.example.com".into())
        );
        assert_eq!(
            e("*.example.com").unwrap(),
            Entry::Below(".example.com".into())
        );
        assert_eq!(e("*").unwrap(), Entry::Any);
        assert_eq!(
            e("10.1.2.3/16").unwrap(),
            Entry::Net {
                addr: ip("10.1.0.0"),
                prefix: 16
            }
        );
        assert_eq!(
            e("[::ffff:127.0.0.1]").unwrap(),
            Entry::Net {
                addr: ip("127.0.0.1"),
                prefix: 32
            }
        );
        assert_eq!(
            e("fd00::/8").unwrap(),
            Entry::Net {
                addr: ip("fd00::"),
                prefix: 8
            }
        );
        for bad in [
            "",
            "https://hooks.example.com",
            "hooks.example.com:443",
            "10.0.0.0/33",
            "a*.example.com",
            "*.*.example.com",
            "exa mple.com",
        ] {
            assert!(e(bad).is_err(), "{bad:?}");
        }
        let (key, why) =
            WebhookPolicy::new(&["ok.example.com".into(), "10.0.0.0/40".into()], false)
                .unwrap_err();
        assert_eq!(key, "flyteNotify.webhooks.allowedHosts[1]");
        assert!(why.contains("0 to 32"), "{why}");
    }

    #[test]
    fn only_http_urls_without_credentials_to_listed_hosts_pass() {
        let p = policy(&["hooks.example.com", "*.svc.example.com"], false);
        assert!(p.check_url("https://hooks.example.com/a?b=c").is_ok());
        assert!(p.check_url("http://HOOKS.example.com.:8080/").is_ok());
        assert!(p.check_url("https://a.b.svc.example.com/x").is_ok());
        for (url, why) in [
            ("ftp://hooks.example.com/", "scheme ftp"),
            ("file:///etc/passwd", "scheme file"),
            ("https://u:p@hooks.example.com/", "credentials"),
            ("https://u@hooks.example.com/", "credentials"),
            (
                "https://svc.example.com/",
                "not in flyteNotify.webhooks.allowedHosts",
            ),
            ("https://evil.com/", "host evil.com is not in"),
            ("https://hooks.example.com.evil.com/", "not in"),
            ("not a url", "whitespace"),
            ("hooks.example.com/x", "not a URL"),
            ("https://hooks.exam\nple.com/", "control"),
        ] {
            let e = p.check_url(url).unwrap_err();
            assert!(e.contains(why), "{url}: {e}");
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(p.check_url(&long).unwrap_err().contains("at most 4096"));
        let none = policy(&[], false);
        let e = none.check_url("https://hooks.example.com/").unwrap_err();
        assert!(e.contains("allowedHosts is empty"), "{e}");
    }

    #[test]
    fn address_literals_need_an_entry_unless_public_under_a_star() {
        let p = policy(&["*"], false);
        assert!(p.check_url("http://93.184.216.34/").is_ok());
        assert!(p.check_url("http://[2606:4700::1111]/").is_ok());
        for (url, shown) in [
            (
                "http://10.0.0.5/",
                "host 10.0.0.5 is a private address; add it to flyteNotify.webhooks.allowedHosts \
                 to allow it",
            ),
            (
                "http://127.0.0.1:8091/",
                "host 127.0.0.1 is a loopback address",
            ),
            // The URL parser reads every spelling of an address as that address.
            ("http://2130706433/", "host 127.0.0.1 is a loopback address"),
            ("http://0x7f.1/", "host 127.0.0.1 is a loopback address"),
            ("http://0/", "host 0.0.0.0 is an unspecified address"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "a cloud metadata address",
            ),
            ("http://[::1]/", "host ::1 is a loopback address"),
            ("http://[fe80::1]/", "a link-local address"),
            ("http://[fd00::1]/", "a unique-local IPv6 address"),
            (
                "http://[::ffff:10.0.0.5]/",
                "host ::ffff:10.0.0.5 is an IPv4-mapped form of 10.0.0.5, a private address",
            ),
            (
                "http://[::ffff:7f00:1]/",
                "form of 127.0.0.1, a loopback address",
            ),
            (
                "http://[64:ff9b::a00:5]/",
                "a NAT64 form of 10.0.0.5, a private address",
            ),
            ("http://100.64.1.1/", "carrier-grade NAT"),
            (
                "http://localhost:8091/",
                "host localhost is a loopback name",
            ),
            (
                "http://api.localhost/",
                "host api.localhost is a loopback name",
            ),
        ] {
            let e = p.check_url(url).unwrap_err();
            assert!(e.contains(shown), "{url}: {e}");
        }
        // An entry of its own admits each; without `*`, a public address needs one too.
        let p = policy(
            &["127.0.0.1", "localhost", "10.1.0.0/16", "::1", "fd00::/8"],
            false,
        );
        for url in [
            "http://127.0.0.1:8091/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
            "http://10.1.200.3/",
            "http://[::1]/",
            "http://[fd00::1]/",
        ] {
            assert!(p.check_url(url).is_ok(), "{url}: {:?}", p.check_url(url));
        }
        for url in [
            "http://10.2.0.1/",
            "http://127.0.0.2/",
            "http://93.184.216.34/",
        ] {
            assert!(p.check_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn allow_private_admits_the_private_network_but_never_metadata_or_link_local() {
        let p = policy(&["*"], true);
        for url in [
            "http://10.0.0.5/",
            "http://127.0.0.1/",
            "http://localhost/",
            "http://[fd12::1]/",
            "http://100.64.0.1/",
        ] {
            assert!(p.check_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://169.254.169.254/",
            "http://169.254.1.1/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
        ] {
            assert!(p.check_url(url).is_err(), "{url}");
        }
        // Named explicitly, even those pass.
        let p = policy(&["169.254.169.254"], false);
        assert!(p.check_url("http://169.254.169.254/").is_ok());
    }

    #[tokio::test]
    async fn every_resolved_address_must_pass() {
        let p = policy(&["*.example.com", "localhost"], false);
        assert!(p.check_resolved("https://hooks.example.com/").await.is_ok());
        for (url, why) in [
            (
                "https://internal.example.com/",
                "host internal.example.com resolves to 10.0.0.5, a private address; add the \
                 host or the address to flyteNotify.webhooks.allowedHosts to allow it",
            ),
            (
                "https://rebind.example.com/",
                "resolves to 127.0.0.1, a loopback address",
            ),
            ("https://both.example.com/", "resolves to 10.0.0.5"),
            ("https://metadata.example.com/", "a cloud metadata address"),
        ] {
            match p.check_resolved(url).await {
                Err(GuardError::Refused(e)) => assert!(e.contains(why), "{url}: {e}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        // An exact entry admits the name whatever it resolves to.
        assert!(p.check_resolved("http://localhost:9/").await.is_ok());
        let exact = policy(&["internal.example.com", "rebind.example.com"], false);
        assert!(
            exact
                .check_resolved("https://internal.example.com/")
                .await
                .is_ok()
        );
        assert!(
            exact
                .check_resolved("https://rebind.example.com/")
                .await
                .is_ok()
        );
        // So does an address entry holding what it resolves to.
        let net = policy(&["*.corp.example", "10.1.0.0/16"], false);
        assert!(
            net.check_resolved("https://svc.corp.example/")
                .await
                .is_ok()
        );
        // A name that does not resolve is a lookup failure, not a refusal.
        match p.check_resolved("https://nxdomain.example.com/").await {
            Err(GuardError::Lookup(e)) => assert!(e.contains("cannot resolve host"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses_and_fails_when_none_is_left() {
        let p = Arc::new(policy(&["*.example.com"], false));
        assert_eq!(
            p.resolve("both.example.com").await.unwrap(),
            vec![ip("93.184.216.34")]
        );
        assert_eq!(
            p.resolve("Hooks.Example.com.").await.unwrap(),
            vec![ip("93.184.216.34")]
        );
        let e = p.resolve("rebind.example.com").await.unwrap_err();
        let refused = refusal_in(e.as_ref()).expect("a refusal");
        assert!(refused.0.contains("resolves to 127.0.0.1"), "{refused}");
        // A name the list does not admit is never looked up.
        let e = p.resolve("evil.com").await.unwrap_err();
        assert!(refusal_in(e.as_ref()).is_some(), "{e}");
        // A DNS failure is not a refusal: it may pass.
        let e = p.resolve("nxdomain.example.com").await.unwrap_err();
        assert!(refusal_in(e.as_ref()).is_none(), "{e}");
    }
}

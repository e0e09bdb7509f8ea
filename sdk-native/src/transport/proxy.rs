//! The proxy rule: for a target URL, connect directly or through which HTTP proxy.
//!
//! One rule serves both transports, so they can never disagree: the WebSocket link asks it
//! before it opens a TCP connection (and tunnels with `CONNECT`, `transport/tunnel.rs`), and
//! the SSE link's reqwest client is built with the rule as its only proxy
//! (`reqwest::Proxy::custom`, reqwest's own reading of the environment turned off).
//!
//! The rule comes from [`Proxy`], the builder's option, and is made once, when the client is
//! built: an invalid proxy URL, from the app or from the environment, is a
//! [`BuildError::Proxy`](crate::BuildError::Proxy) then, never a surprise at connect time.
//!
//! From the environment (the default), as curl, Go and reqwest read it: `ws://` and `http://`
//! targets use `HTTP_PROXY` (or `http_proxy`), `wss://` and `https://` targets `HTTPS_PROXY`
//! (or `https_proxy`), either falling back to `ALL_PROXY` (or `all_proxy`); `NO_PROXY` (or
//! `no_proxy`) lists the targets that go direct. An empty variable counts as unset. In a CGI
//! program (`REQUEST_METHOD` set) `HTTP_PROXY` is ignored: there it is the request's `Proxy:`
//! header, chosen by whoever sent the request ("httpoxy"); `http_proxy` still counts.
//!
//! Loopback targets (`localhost`, `*.localhost`, 127.0.0.0/8 also IPv4-mapped, `::1`) bypass a
//! proxy from the environment, as in Go's net/http: a process-wide variable names the way out
//! of the machine, and a proxy elsewhere that is sent `CONNECT 127.0.0.1:…` reaches its own
//! loopback, never this machine's. An explicit [`Proxy::Url`] is the app's own choice and is used for
//! every target, loopback included (a local debugging proxy sees local traffic).

use crate::BuildError;
use std::net::IpAddr;
use std::sync::Arc;

/// Which proxy a client's connections go through: [`ClientBuilder::proxy`](crate::ClientBuilder::proxy).
///
/// Only `http://` proxies: a WebSocket, `wss://` included, goes through them with `CONNECT`
/// (TLS end to end, the proxy sees only the host and port), and an event stream as reqwest
/// sends it (`CONNECT` for `https://`, the request itself for `http://`). An `https://` proxy
/// (TLS to the proxy itself) and SOCKS proxies are refused when the client is built.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proxy {
    /// Whatever the environment says, read when the client is built (the default):
    /// `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, minus `NO_PROXY` and loopback targets.
    #[default]
    FromEnvironment,
    /// Connect directly, whatever the environment says.
    Direct,
    /// Every connection through this proxy, `http://[user:password@]host[:port]` (port 80 if
    /// none; `host:port` alone means `http://host:port`). The user name and password, if any,
    /// are percent-decoded and sent as `Proxy-Authorization: Basic …`; they never appear in
    /// an error, a log line or this type's `Debug`. The environment is not read.
    Url(String),
}

impl Proxy {
    /// [`Proxy::Url`]: every connection through the proxy at `url`.
    pub fn url(url: impl Into<String>) -> Self {
        Proxy::Url(url.into())
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proxy::FromEnvironment => f.write_str("FromEnvironment"),
            Proxy::Direct => f.write_str("Direct"),
            Proxy::Url(url) => f
                .debug_tuple("Url")
                .field(&super::redacted_url(url))
                .finish(),
        }
    }
}

/// A proxy to go through, parsed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ProxyServer {
    /// The URL as reqwest takes it, without the credentials: reqwest would decode them as
    /// UTF-8, lossily, so it is handed [`authorization`](Self::authorization) instead
    /// (`ProxyRule::apply`), the same bytes the tunnel sends.
    url: reqwest::Url,
    /// The host to connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// `Basic …`, if the URL had a user name or password.
    authorization: Option<String>,
}

impl ProxyServer {
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The `Proxy-Authorization` header's value, if any.
    pub(crate) fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// Parses a proxy URL from `setting` (named in the error). The error never repeats the
    /// value: it may hold a password.
    fn parse(value: &str, setting: &'static str) -> Result<ProxyServer, BuildError> {
        let error = |reason: &str| BuildError::Proxy {
            setting,
            reason: reason.to_owned(),
        };
        let value = value.trim();
        let url = match value.contains("://") {
            true => reqwest::Url::parse(value),
            // `proxy.corp:3128`, as curl, Go and reqwest take it.
            false => reqwest::Url::parse(&format!("http://{value}")),
        }
        .map_err(|e| error(&format!("not a proxy URL ({e})")))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(error(
                    "https:// proxies (TLS to the proxy itself) are not supported: use the \
                     proxy's http:// address (wss:// and https:// stay encrypted end to end \
                     through it)",
                ))
            }
            s if s.starts_with("socks") => return Err(error("SOCKS proxies are not supported")),
            _ => return Err(error("not an http:// proxy URL")),
        }
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => unbracketed(host).to_owned(),
            _ => return Err(error("the proxy URL has no host")),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let mut credentials = percent_decode(url.username());
            credentials.push(b':');
            credentials.extend(percent_decode(url.password().unwrap_or_default()));
            format!("Basic {}", base64(&credentials))
        });
        let mut url = url;
        // Cannot fail: an http:// URL with a host.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(ProxyServer {
            url,
            host,
            port,
            authorization,
        })
    }

    /// The proxy as an error or a log line may show it: no user name or password.
    pub(crate) fn shown(&self) -> String {
        match self.host.contains(':') {
            true => format!("http://[{}]:{}", self.host, self.port),
            false => format!("http://{}:{}", self.host, self.port),
        }
    }
}

impl std::fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// For each target URL: direct, or through which proxy.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct ProxyRule {
    /// For `ws://` and `http://`.
    http: Option<ProxyServer>,
    /// For `wss://` and `https://`.
    https: Option<ProxyServer>,
    no_proxy: NoProxy,
    /// Loopback targets go direct (a rule from the environment: see the module docs).
    bypass_loopback: bool,
}

impl ProxyRule {
    /// The rule for the builder's option, reading the environment (now) if it says so, for a
    /// client of `target` (the client's URL).
    pub(crate) fn new(option: &Proxy, target: &str) -> Result<Self, BuildError> {
        match option {
            Proxy::FromEnvironment => Self::from_vars(|name| std::env::var(name).ok(), target),
            Proxy::Direct => Ok(ProxyRule::default()),
            Proxy::Url(url) => {
                let server = ProxyServer::parse(url, "ClientBuilder::proxy")?;
                Ok(ProxyRule {
                    http: Some(server.clone()),
                    https: Some(server),
                    no_proxy: NoProxy::default(),
                    bypass_loopback: false,
                })
            }
        }
    }

    /// The rule the environment variables `var` gives describe, for a client of `target` (a
    /// pure function of them, so it is tested without touching the process's environment).
    ///
    /// A variable naming a proxy this client cannot use (`ALL_PROXY=socks5://…`, common on
    /// developer machines, or an `https://` proxy) fails the build only when `target` would
    /// go through it; otherwise it is left out, so that a loopback relay, a `NO_PROXY` host or
    /// the other scheme still connects as it did before proxies were read.
    pub(crate) fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        target: &str,
    ) -> Result<Self, BuildError> {
        // The first of `names` that is set and not empty.
        let first = |names: &[&'static str]| {
            names.iter().find_map(|&name| {
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let cgi = var("REQUEST_METHOD").is_some();
        let http_names: &[&'static str] = match cgi {
            true => &["http_proxy", "ALL_PROXY", "all_proxy"],
            false => &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"],
        };
        let parse = |found: Option<(&'static str, String)>| {
            found
                .map(|(name, value)| ProxyServer::parse(&value, name))
                .transpose()
        };
        let http = parse(first(http_names));
        let https = parse(first(&[
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]));
        let rule = ProxyRule {
            http: http.as_ref().ok().cloned().flatten(),
            https: https.as_ref().ok().cloned().flatten(),
            no_proxy: first(&["NO_PROXY", "no_proxy"])
                .map(|(_, v)| NoProxy::parse(&v))
                .unwrap_or_default(),
            bypass_loopback: true,
        };
        let target = reqwest::Url::parse(target).ok();
        for (found, schemes) in [(http, ["ws", "http"]), (https, ["wss", "https"])] {
            let Err(error) = found else { continue };
            let used = target
                .as_ref()
                .is_some_and(|url| schemes.contains(&url.scheme()) && !rule.goes_direct(url));
            if used {
                return Err(error);
            }
        }
        // No proxy at all is one rule, however it was said: clients with equal rules share
        // their HTTP client (`client::link_context`).
        Ok(match rule.is_direct() {
            true => ProxyRule::default(),
            false => rule,
        })
    }

    /// Whether no target ever goes through a proxy.
    pub(crate) fn is_direct(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy for `url`, or `None` to connect directly (also for a URL without a host, or
    /// of another scheme: the connection fails as it would have).
    pub(crate) fn for_url(&self, url: &reqwest::Url) -> Option<&ProxyServer> {
        let server = match url.scheme() {
            "ws" | "http" => self.http.as_ref(),
            "wss" | "https" => self.https.as_ref(),
            _ => None,
        }?;
        (!self.goes_direct(url)).then_some(server)
    }

    /// Whether `url`'s host is one this rule never proxies: loopback (from the environment),
    /// a `NO_PROXY` entry, or no host at all.
    fn goes_direct(&self, url: &reqwest::Url) -> bool {
        let Some(host) = Target::of(url) else {
            return true;
        };
        (self.bypass_loopback && host.is_loopback())
            || self.no_proxy.matches(&host, url.port_or_known_default())
    }

    /// The HTTP client's proxy setting: this rule, and nothing else (not reqwest's own reading
    /// of the environment, nor the system's settings it reads on some platforms).
    pub(crate) fn apply(
        self: &Arc<Self>,
        builder: reqwest::ClientBuilder,
    ) -> reqwest::ClientBuilder {
        let mut builder = builder.no_proxy();
        // One reqwest proxy per target scheme, each with its own server's credentials as the
        // header (reqwest has one per proxy): the bytes percent-decoded from the URL, as the
        // tunnel sends them, not reqwest's UTF-8 reading of them, which turns a byte that is
        // not UTF-8 into U+FFFD and gets the event stream a 407 the WebSocket did not get.
        for (scheme, server) in [("http", &self.http), ("https", &self.https)] {
            let Some(server) = server else { continue };
            let rule = self.clone();
            let mut proxy = reqwest::Proxy::custom(move |url| {
                (url.scheme() == scheme)
                    .then(|| rule.for_url(url))
                    .flatten()
                    .map(|server| server.url.clone())
            });
            if let Some(authorization) = server.authorization() {
                // Base64 after `Basic `: always a valid header value.
                if let Ok(mut value) = reqwest::header::HeaderValue::from_str(authorization) {
                    value.set_sensitive(true);
                    proxy = proxy.custom_http_auth(value);
                }
            }
            builder = builder.proxy(proxy);
        }
        builder
    }
}

/// A target's host, as `NO_PROXY` compares it.
enum Target {
    /// Lowercase, without a final dot.
    Name(String),
    Ip(IpAddr),
}

impl Target {
    fn of(url: &reqwest::Url) -> Option<Target> {
        let host = unbracketed(url.host_str()?);
        Some(match host.parse::<IpAddr>() {
            // An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is the IPv4 address it maps:
            // loopback if that is, and in NO_PROXY's IPv4 entries and blocks (as Go's
            // net.IP compares them).
            Ok(ip) => Target::Ip(ip.to_canonical()),
            Err(_) => Target::Name(host.trim_end_matches('.').to_ascii_lowercase()),
        })
    }

    fn is_loopback(&self) -> bool {
        match self {
            Target::Name(name) => name == "localhost" || name.ends_with(".localhost"),
            Target::Ip(ip) => ip.is_loopback(),
        }
    }
}

/// `NO_PROXY`: comma-separated entries, each `*` (every target), a host name (matching that
/// host and its subdomains; a leading `.` or `*.` changes nothing, as in curl and reqwest),
/// an IP address, or a CIDR block (`10.0.0.0/8`); a name or an address may end with `:port`
/// to match that port only. An entry that is none of these matches nothing.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Entry {
    Name { name: String, port: Option<u16> },
    Ip { ip: IpAddr, port: Option<u16> },
    Block { net: IpAddr, prefix: u8 },
}

impl NoProxy {
    fn parse(value: &str) -> NoProxy {
        let mut no_proxy = NoProxy::default();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                no_proxy.all = true;
            } else if let Some(entry) = Entry::parse(entry) {
                no_proxy.entries.push(entry);
            }
        }
        no_proxy
    }

    fn matches(&self, host: &Target, port: Option<u16>) -> bool {
        self.all || self.entries.iter().any(|e| e.matches(host, port))
    }
}

impl Entry {
    fn parse(entry: &str) -> Option<Entry> {
        if let Some((net, prefix)) = entry.split_once('/') {
            let net: IpAddr = unbracketed(net).parse().ok()?;
            let prefix: u8 = prefix.parse().ok()?;
            let bits = if net.is_ipv4() { 32 } else { 128 };
            return (prefix <= bits).then_some(Entry::Block { net, prefix });
        }
        if let Ok(ip) = unbracketed(entry).parse() {
            return Some(Entry::Ip { ip, port: None });
        }
        if let Ok(addr) = entry.parse::<std::net::SocketAddr>() {
            return Some(Entry::Ip {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        let (name, port) = match entry.rsplit_once(':') {
            Some((name, port)) => (name, Some(port.parse().ok()?)),
            None => (entry, None),
        };
        let name = name.strip_prefix('*').unwrap_or(name);
        let name = name.trim_matches('.').to_ascii_lowercase();
        (!name.is_empty() && !name.contains(['*', ':', '/'])).then_some(Entry::Name { name, port })
    }

    fn matches(&self, host: &Target, port: Option<u16>) -> bool {
        let port_matches = |wanted: &Option<u16>| wanted.is_none() || *wanted == port;
        match (self, host) {
            (Entry::Name { name, port: p }, Target::Name(host)) => {
                port_matches(p)
                    && (host == name
                        || host
                            .strip_suffix(name.as_str())
                            .is_some_and(|sub| sub.ends_with('.')))
            }
            (Entry::Ip { ip, port: p }, Target::Ip(host)) => port_matches(p) && ip == host,
            (Entry::Block { net, prefix }, Target::Ip(host)) => in_block(*host, *net, *prefix),
            _ => false,
        }
    }
}

/// An IPv6 address without the brackets a URL writes it in.
pub(crate) fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether `ip` is in the block `net/prefix` (of the same family).
fn in_block(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// `%XX` sequences as the bytes they stand for; anything else as it is (the `url` crate's
/// own decoder, which reqwest already brings).
fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// Standard base64 with padding (RFC 4648 §4), as `Basic` credentials are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63])),
                false => out.push('='),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    /// The rule `vars` give a client of a remote `wss://` relay.
    fn env(vars: &[(&str, &str)]) -> Result<ProxyRule, BuildError> {
        env_for(vars, "wss://relay.example/ws")
    }

    fn env_for(vars: &[(&str, &str)], target: &str) -> Result<ProxyRule, BuildError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProxyRule::from_vars(|name| vars.get(name).cloned(), target)
    }

    /// Where the rule sends `target`: the proxy as shown, or "direct".
    fn via(rule: &ProxyRule, target: &str) -> String {
        rule.for_url(&url(target))
            .map_or("direct".to_owned(), ProxyServer::shown)
    }

    #[test]
    fn each_scheme_uses_its_variable_and_all_proxy_is_the_fallback() {
        let rule = env(&[
            ("HTTP_PROXY", "http://plain:1"),
            ("HTTPS_PROXY", "http://secure:2"),
            ("ALL_PROXY", "http://all:3"),
        ])
        .unwrap();
        assert_eq!(via(&rule, "ws://relay.example/ws"), "http://plain:1");
        assert_eq!(via(&rule, "http://relay.example/sse"), "http://plain:1");
        assert_eq!(via(&rule, "wss://relay.example/ws"), "http://secure:2");
        assert_eq!(via(&rule, "https://relay.example/sse"), "http://secure:2");

        let rule = env(&[("all_proxy", "all:3"), ("https_proxy", "")]).unwrap();
        assert_eq!(via(&rule, "ws://relay.example/"), "http://all:3");
        assert_eq!(
            via(&rule, "wss://relay.example/"),
            "http://all:3",
            "empty is unset"
        );

        // Upper case first, as Go and reqwest read them.
        let rule = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ]);
        assert_eq!(
            via(&rule.unwrap(), "wss://relay.example/"),
            "http://upper:1"
        );

        let rule = env(&[]).unwrap();
        assert!(rule.is_direct());
        assert_eq!(via(&rule, "wss://relay.example/"), "direct");
        assert_eq!(
            rule,
            ProxyRule::new(&Proxy::Direct, "ws://x").unwrap(),
            "no proxy at all is one rule, however it was said"
        );
        let no_proxy_alone = env(&[("NO_PROXY", "example.com")]).unwrap();
        assert_eq!(
            no_proxy_alone,
            ProxyRule::new(&Proxy::Direct, "ws://x").unwrap()
        );
    }

    #[test]
    fn in_a_cgi_program_http_proxy_is_the_requests_header_and_is_ignored() {
        let vars = [
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://attacker:1"),
        ];
        assert_eq!(via(&env(&vars).unwrap(), "ws://relay.example/"), "direct");
        let vars = [
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://attacker:1"),
            ("http_proxy", "http://admin:2"),
        ];
        assert_eq!(
            via(&env(&vars).unwrap(), "ws://relay.example/"),
            "http://admin:2"
        );
    }

    #[test]
    fn loopback_targets_bypass_a_proxy_from_the_environment_but_not_an_explicit_one() {
        let rule = env(&[("ALL_PROXY", "http://proxy:3128")]).unwrap();
        for target in [
            "ws://localhost:9000/",
            "ws://LOCALHOST./",
            "wss://app.localhost/",
            "ws://127.0.0.1:9000/",
            "ws://127.1.2.3/",
            "http://[::1]:8080/sse",
            "ws://[::ffff:127.0.0.1]:9000/", // IPv4-mapped: 127.0.0.1 (Go's rule too)
        ] {
            assert_eq!(via(&rule, target), "direct", "{target}");
        }
        assert_eq!(via(&rule, "ws://localhost.example/"), "http://proxy:3128");
        assert_eq!(via(&rule, "ws://10.0.0.1/"), "http://proxy:3128");

        let explicit = ProxyRule::new(&Proxy::url("http://proxy:3128"), "ws://x").unwrap();
        assert_eq!(via(&explicit, "ws://127.0.0.1:9000/"), "http://proxy:3128");
        assert_eq!(via(&explicit, "https://localhost/sse"), "http://proxy:3128");
    }

    #[test]
    fn no_proxy_names_match_the_host_and_its_subdomains_with_or_without_a_dot() {
        let rule =
            |no_proxy: &str| env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", no_proxy)]).unwrap();
        let r = rule("example.com, .corp.internal ,*.wild.test,,other.test:8443");
        for direct in [
            "wss://example.com/",
            "wss://EXAMPLE.com./",
            "wss://a.b.example.com/",
            "wss://corp.internal/",
            "wss://x.corp.internal/",
            "wss://wild.test/",
            "wss://x.wild.test/",
            "wss://other.test:8443/",
        ] {
            assert_eq!(via(&r, direct), "direct", "{direct}");
        }
        for proxied in [
            "wss://notexample.com/",
            "wss://example.com.evil/",
            "wss://other.test/", // port 443, the entry says 8443
            "wss://internal/",
        ] {
            assert_eq!(via(&r, proxied), "http://p:1", "{proxied}");
        }
        // `no_proxy` is read when `NO_PROXY` is not set, and `*` matches everything.
        let r = env(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]).unwrap();
        assert_eq!(via(&r, "wss://anything.example/"), "direct");
    }

    #[test]
    fn no_proxy_addresses_and_blocks_match_ip_targets_only() {
        let r = env(&[
            ("HTTP_PROXY", "http://p:1"),
            ("NO_PROXY", "10.0.0.0/8, 192.168.1.7, [fd00::1], 2001:db8::/32, 172.16.0.1:8080, 10.0.0.0/99, 1.2.3"),
        ])
        .unwrap();
        for direct in [
            "ws://10.1.2.3/",
            "ws://192.168.1.7:9000/",
            "ws://[fd00::1]/",
            "ws://[2001:db8:ffff::5]/",
            "ws://172.16.0.1:8080/",
            "ws://[::ffff:10.1.2.3]/", // IPv4-mapped: an IPv4 address, as Go compares them
        ] {
            assert_eq!(via(&r, direct), "direct", "{direct}");
        }
        for proxied in [
            "ws://11.0.0.1/",
            "ws://192.168.1.8/",
            "ws://[fd00::2]/",
            "ws://[2001:db9::1]/",
            "ws://172.16.0.1/",
            "ws://4.1.2.3/", // `1.2.3` is no address, and no suffix of one
        ] {
            assert_eq!(via(&r, proxied), "http://p:1", "{proxied}");
        }
        assert!(in_block(
            "0.0.0.1".parse().unwrap(),
            "255.0.0.0".parse().unwrap(),
            0
        ));
        assert!(!in_block(
            "::1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }

    #[test]
    fn proxy_urls_are_parsed_once_and_bad_ones_are_typed_errors_that_keep_the_password() {
        let server = ProxyServer::parse("http://us%40er:p%3Ass@proxy.corp:3128/", "X").unwrap();
        assert_eq!((server.host(), server.port()), ("proxy.corp", 3128));
        // base64("us@er:p:ss")
        assert_eq!(server.authorization(), Some("Basic dXNAZXI6cDpzcw=="));
        assert_eq!(server.shown(), "http://proxy.corp:3128");
        assert_eq!(format!("{server:?}"), "http://proxy.corp:3128");

        let bare = ProxyServer::parse("proxy.corp:8080", "X").unwrap();
        assert_eq!(
            (bare.host(), bare.port(), bare.authorization()),
            ("proxy.corp", 8080, None)
        );
        let v6 = ProxyServer::parse("http://[::1]", "X").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 80));
        assert_eq!(v6.shown(), "http://[::1]:80");
        let user_only = ProxyServer::parse("http://user@p:1", "X").unwrap();
        assert_eq!(user_only.authorization(), Some("Basic dXNlcjo=")); // "user:"

        for (bad, says) in [
            ("https://user:secret@proxy:443", "https:// proxies"),
            ("socks5://user:secret@proxy:1080", "SOCKS"),
            ("ftp://user:secret@proxy", "not an http:// proxy URL"),
            ("http://user:secret@:1", "not a proxy URL"),
            ("http://user:secret@proxy:99999", "not a proxy URL"),
        ] {
            let error = ProxyServer::parse(bad, "HTTPS_PROXY").unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains(says) && text.contains("HTTPS_PROXY"),
                "{bad}: {text}"
            );
            assert!(!text.contains("secret") && !format!("{error:?}").contains("secret"));
        }
        // From the environment, the variable is named.
        let error = env(&[("HTTPS_PROXY", "https://proxy")]).unwrap_err();
        assert!(
            matches!(
                error,
                BuildError::Proxy {
                    setting: "HTTPS_PROXY",
                    ..
                }
            ),
            "{error}"
        );
        // A variable the rule never reads is not judged (`ALL_PROXY` behind both).
        let rule = env(&[
            ("HTTP_PROXY", "http://p:1"),
            ("HTTPS_PROXY", "http://p:1"),
            ("ALL_PROXY", "socks5://p:1080"),
        ]);
        assert!(rule.is_ok());
        // One this client would never go through fails nothing: a developer machine's
        // `ALL_PROXY=socks5://…` and a relay on loopback, in NO_PROXY, or of the other scheme.
        let socks = [
            ("ALL_PROXY", "socks5://user:secret@p:1080"),
            ("NO_PROXY", "corp.example"),
        ];
        for target in [
            "ws://127.0.0.1:8080/ws",
            "wss://localhost/ws",
            "wss://relay.corp.example/ws",
        ] {
            let rule = env_for(&socks, target).expect(target);
            assert_eq!(via(&rule, target), "direct", "{target}");
        }
        let rule = env_for(&[("HTTPS_PROXY", "https://p")], "ws://relay.example/ws").unwrap();
        assert_eq!(via(&rule, "ws://relay.example/ws"), "direct");
        // One it would go through still fails the build, naming the variable.
        let error = env_for(&socks, "wss://relay.example/ws").unwrap_err();
        assert!(error.to_string().contains("ALL_PROXY"), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
        // The public option's Debug shows no credential either.
        let option = Proxy::url("http://user:secret@proxy:1/?token=x");
        assert_eq!(format!("{option:?}"), "Url(\"http://…@proxy:1/?…\")");
    }

    #[test]
    fn base64_and_percent_decoding() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
        assert_eq!(percent_decode("a%20b%zz%4"), b"a b%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é".as_bytes());
    }
}

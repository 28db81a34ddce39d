//! Where Web Push may go. A subscription's endpoint is a URL the browser's push service gave it,
//! and the server posts to it: left unchecked, anyone who registers could make the server reach
//! hosts inside its own network. Only https to public addresses is accepted; a setting opens
//! loopback (and plain http to it) for development and tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

use crate::error::{Error, Result};

/// The longest endpoint accepted; push services' URLs are a few hundred characters.
const MAX_LEN: usize = 2048;

/// Which hosts push endpoints may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reach {
    /// https to public addresses only: production.
    #[default]
    Public,
    /// Also this machine, over http or https: development and tests.
    PublicAndLoopback,
}

/// An endpoint that passed [`PushEndpoint::parse`]: https (or loopback when allowed), no
/// credentials, and a host that is not a private, local or reserved address or name.
#[derive(Clone, PartialEq, Eq)]
pub struct PushEndpoint(Url);

// The path is the device's capability: whoever has it can push to the device. Never print it.
impl std::fmt::Debug for PushEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PushEndpoint({}/…)", self.origin())
    }
}

impl PushEndpoint {
    pub fn parse(raw: &str, reach: Reach) -> Result<PushEndpoint> {
        let invalid = || {
            Error::invalid(
                "invalid_endpoint",
                "the endpoint must be an https URL of a push service",
            )
        };
        if raw.is_empty() || raw.len() > MAX_LEN || raw.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let url = Url::parse(raw).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                "endpoint_has_credentials",
                "the endpoint must not carry a user name or password",
            ));
        }
        let kind = match url.host() {
            None => return Err(invalid()),
            Some(Host::Ipv4(ip)) => address_kind(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => address_kind(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => name_kind(name),
        };
        let allowed = match (kind, reach) {
            (Kind::Public, _) | (Kind::Loopback, Reach::PublicAndLoopback) => true,
            (Kind::Loopback, Reach::Public) | (Kind::Private, _) => false,
        };
        if !allowed {
            return Err(Error::invalid(
                "endpoint_not_public",
                "the endpoint must be a push service on the public internet",
            ));
        }
        if url.scheme() == "http" && kind != Kind::Loopback {
            return Err(Error::invalid(
                "endpoint_not_https",
                "the endpoint must use https",
            ));
        }
        Ok(PushEndpoint(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// `scheme://host[:port]`, the audience of a VAPID signature (RFC 8292).
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Loopback,
    Private,
}

/// Local names: `localhost` and its subdomains (RFC 6761), and single labels, which only a local
/// resolver or search domain can answer.
fn name_kind(name: &str) -> Kind {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        Kind::Loopback
    } else if name.is_empty() || !name.contains('.') {
        Kind::Private
    } else {
        Kind::Public
    }
}

/// Whether the server may connect to `ip` for a push endpoint.
pub fn address_allowed(ip: IpAddr, reach: Reach) -> bool {
    match address_kind(ip) {
        Kind::Public => true,
        Kind::Loopback => reach == Reach::PublicAndLoopback,
        Kind::Private => false,
    }
}

fn address_kind(ip: IpAddr) -> Kind {
    match ip {
        IpAddr::V4(ip) => v4_kind(ip),
        IpAddr::V6(ip) => v6_kind(ip),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn v4_kind(ip: Ipv4Addr) -> Kind {
    if ip.is_loopback() {
        return Kind::Loopback;
    }
    // IANA's special-purpose registry (RFC 6890 and successors): none of these is a push service.
    const NOT_PUBLIC: [([u8; 4], u32); 14] = [
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata services live here)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    if NOT_PUBLIC.iter().any(|(net, bits)| in_v4(ip, *net, *bits)) {
        Kind::Private
    } else {
        Kind::Public
    }
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address carried in the last 32 bits.
fn embedded_v4(ip: Ipv6Addr) -> Ipv4Addr {
    let [.., a, b, c, d] = ip.octets();
    Ipv4Addr::new(a, b, c, d)
}

fn v6_kind(ip: Ipv6Addr) -> Kind {
    if ip.is_loopback() {
        return Kind::Loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_kind(v4);
    }
    // NAT64 (RFC 6052) reaches the embedded IPv4 address.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return v4_kind(embedded_v4(ip));
    }
    // 6to4 (RFC 3056) carries an IPv4 address in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let [_, _, a, b, c, d, ..] = ip.octets();
        return v4_kind(Ipv4Addr::new(a, b, c, d));
    }
    // Only global unicast (2000::/3) is public, less its special-purpose and documentation blocks;
    // this also leaves out the unspecified address, unique-local, link-local and multicast.
    let global = in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
        && !in_v6(ip, [0x2001, 0, 0, 0, 0, 0, 0, 0], 23)
        && !in_v6(ip, [0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32)
        && !in_v6(ip, [0x3fff, 0, 0, 0, 0, 0, 0, 0], 20);
    if global { Kind::Public } else { Kind::Private }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(raw: &str, reach: Reach) -> &'static str {
        match PushEndpoint::parse(raw, reach) {
            Ok(_) => "ok",
            Err(Error::Invalid { code, .. }) => code,
            Err(_) => "other",
        }
    }

    #[test]
    fn addresses() {
        let public = [
            "8.8.8.8",
            "142.250.78.74",
            "2a00:1450:4001:82b::200a",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for ip in public {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(address_allowed(ip, Reach::Public), "{ip}");
        }
        let private = [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "169.254.169.254",
            "172.31.255.255",
            "192.0.2.1",
            "192.168.0.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "100::1",
            "3fff::1",
            "::10.0.0.1",
        ];
        for ip in private {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(!address_allowed(ip, Reach::PublicAndLoopback), "{ip}");
        }
        for ip in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert!(!address_allowed(ip, Reach::Public), "{ip}");
            assert!(address_allowed(ip, Reach::PublicAndLoopback), "{ip}");
        }
    }

    #[test]
    fn endpoints() {
        use Reach::{Public, PublicAndLoopback as Local};
        for (raw, reach, expected) in [
            ("https://fcm.googleapis.com/fcm/send/abc", Public, "ok"),
            (
                "https://updates.push.services.mozilla.com./wpush/v2/x",
                Public,
                "ok",
            ),
            ("https://8.8.8.8/x", Public, "ok"),
            ("http://push.example.com/x", Public, "endpoint_not_https"),
            ("http://push.example.com/x", Local, "endpoint_not_https"),
            ("http://127.evil.tld/x", Local, "endpoint_not_https"),
            (
                "http://localhost:@evil.tld/x",
                Local,
                "endpoint_has_credentials",
            ),
            (
                "https://user:pw@push.example.com/x",
                Public,
                "endpoint_has_credentials",
            ),
            ("https://127.0.0.1/x", Public, "endpoint_not_public"),
            ("https://2130706433/x", Public, "endpoint_not_public"),
            ("https://0x7f.1/x", Public, "endpoint_not_public"),
            ("https://[::ffff:7f00:1]/x", Public, "endpoint_not_public"),
            ("https://10.0.0.1/x", Local, "endpoint_not_public"),
            ("https://localhost/x", Public, "endpoint_not_public"),
            ("https://LOCALHOST./x", Public, "endpoint_not_public"),
            ("https://push.localhost/x", Public, "endpoint_not_public"),
            ("https://pushserver/x", Local, "endpoint_not_public"),
            ("http://127.0.0.1:4000/push/x", Local, "ok"),
            ("http://[::1]:4000/push/x", Local, "ok"),
            ("http://localhost:4000/push/x", Local, "ok"),
            (
                "http://127.0.0.1:4000/push/x",
                Public,
                "endpoint_not_public",
            ),
            ("ftp://push.example.com/x", Public, "invalid_endpoint"),
            ("mailto:x@example.com", Public, "invalid_endpoint"),
            ("https://push.example.com/a b", Public, "invalid_endpoint"),
            ("not a url", Public, "invalid_endpoint"),
        ] {
            assert_eq!(code(raw, reach), expected, "{raw} with {reach:?}");
        }
    }

    #[test]
    fn origins_and_debug() {
        let e = PushEndpoint::parse("https://fcm.googleapis.com/fcm/send/secret", Reach::Public)
            .expect("valid");
        assert_eq!(e.origin(), "https://fcm.googleapis.com");
        assert!(!format!("{e:?}").contains("secret"));
        let e = PushEndpoint::parse("http://127.0.0.1:4000/push/x?y=1", Reach::PublicAndLoopback)
            .expect("valid");
        assert_eq!(e.origin(), "http://127.0.0.1:4000");
    }
}

//! Which addresses auditrail may connect to on an org's behalf.
//!
//! An org chooses the URLs its destinations, STS endpoints and webhooks point at. Left
//! unchecked, any org admin could make the server connect to its own loopback, the
//! private network or the cloud metadata service (SSRF). The rule is decided on the
//! *resolved* address: only globally routable unicast addresses pass, unless the
//! operator's `outbound_allow` names the range. An IPv6 address that embeds an IPv4 one
//! (mapped, compatible, NAT64, 6to4) is judged as that IPv4 address, so every spelling
//! of an address lands on the same decision.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A CIDR range such as `10.20.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CIDR range such as 10.20.0.0/16 or fd00::/8")]
pub struct BadCidr(pub String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(&n.octets(), &a.octets(), self.prefix.into())
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix_eq(&n.octets(), &a.octets(), self.prefix.into())
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: usize) -> bool {
    let whole = bits / 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    let rest = bits % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

/// Why an address is refused: the rule that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Unspecified,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
    /// An IPv6 tunnel or translation form whose real endpoint cannot be judged.
    Tunnel,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Unspecified => "unspecified",
            Rule::Loopback => "loopback",
            Rule::Private => "private",
            Rule::SharedCgnat => "shared address space (CGNAT)",
            Rule::LinkLocal => "link-local (cloud metadata included)",
            Rule::UniqueLocal => "unique-local",
            Rule::Multicast => "multicast",
            Rule::Broadcast => "broadcast",
            Rule::Documentation => "documentation",
            Rule::Reserved => "reserved or not globally routable",
            Rule::Tunnel => "an IPv6 tunnel or translation form",
        }
    }
}

/// A refused address and the rule that refused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "address {addr} is {} and outbound_allow does not name it",
    rule.as_str()
)]
pub struct Refused {
    /// The address as judged (an IPv4 address embedded in IPv6 is shown as IPv4).
    pub addr: IpAddr,
    pub rule: Rule,
}

/// The operator's outbound address policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
}

impl AddressPolicy {
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// Parses `outbound_allow` entries, naming the first that is not a range.
    pub fn parse<S: AsRef<str>>(allow: &[S]) -> Result<Self, BadCidr> {
        let allow = allow
            .iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(Self { allow })
    }

    pub fn allowed_ranges(&self) -> &[Cidr] {
        &self.allow
    }

    /// May auditrail connect to `ip` for an org?
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match non_global(ip) {
            Some(rule) => Err(Refused { addr: ip, rule }),
            None => Ok(()),
        }
    }
}

/// An IPv6 address that carries an IPv4 address in a standard way, as that IPv4
/// address: `::ffff:a.b.c.d`, `::a.b.c.d`, `64:ff9b::a.b.c.d`, `2002:AABB:CCDD::/48`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    // IPv4-compatible (deprecated), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && u32::from(tail) > 1 {
        return IpAddr::V4(tail);
    }
    // NAT64 well-known prefix.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(tail);
    }
    // 6to4: the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    ip
}

/// The rule that makes `ip` not globally routable, if one does.
fn non_global(ip: IpAddr) -> Option<Rule> {
    match ip {
        IpAddr::V4(v4) => non_global_v4(v4),
        IpAddr::V6(v6) => non_global_v6(v6),
    }
}

fn non_global_v4(ip: Ipv4Addr) -> Option<Rule> {
    const RANGES: &[([u8; 4], u8, Rule)] = &[
        ([0, 0, 0, 0], 8, Rule::Unspecified),
        ([10, 0, 0, 0], 8, Rule::Private),
        ([100, 64, 0, 0], 10, Rule::SharedCgnat),
        ([127, 0, 0, 0], 8, Rule::Loopback),
        ([169, 254, 0, 0], 16, Rule::LinkLocal),
        ([172, 16, 0, 0], 12, Rule::Private),
        ([192, 0, 0, 0], 24, Rule::Reserved),
        ([192, 0, 2, 0], 24, Rule::Documentation),
        ([192, 31, 196, 0], 24, Rule::Reserved),
        ([192, 52, 193, 0], 24, Rule::Reserved),
        ([192, 88, 99, 0], 24, Rule::Reserved),
        ([192, 168, 0, 0], 16, Rule::Private),
        ([192, 175, 48, 0], 24, Rule::Reserved),
        ([198, 18, 0, 0], 15, Rule::Reserved),
        ([198, 51, 100, 0], 24, Rule::Documentation),
        ([203, 0, 113, 0], 24, Rule::Documentation),
        ([224, 0, 0, 0], 4, Rule::Multicast),
        ([255, 255, 255, 255], 32, Rule::Broadcast),
        ([240, 0, 0, 0], 4, Rule::Reserved),
    ];
    let o = ip.octets();
    RANGES
        .iter()
        .find(|(net, bits, _)| prefix_eq(net, &o, (*bits).into()))
        .map(|(_, _, rule)| *rule)
}

fn non_global_v6(ip: Ipv6Addr) -> Option<Rule> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Rule::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Rule::Loopback);
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some(Rule::Multicast);
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some(Rule::UniqueLocal);
    }
    // fe80::/10 link-local, and fec0::/10 (the deprecated site-local).
    if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
        return Some(Rule::LinkLocal);
    }
    // Only 2000::/3 is global unicast; everything outside it is special-purpose.
    if s[0] & 0xe000 != 0x2000 {
        return Some(Rule::Reserved);
    }
    // Teredo (2001::/32) hides its endpoint; the rest of 2001::/23 is IETF special use.
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(Rule::Tunnel);
    }
    if s[0] == 0x2001 && s[1] < 0x200 {
        return Some(Rule::Reserved);
    }
    if (s[0] == 0x2001 && s[1] == 0x0db8) || s[0] & 0xfff0 == 0x3ff0 {
        return Some(Rule::Documentation);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(policy: &AddressPolicy, ip: &str) -> Option<Rule> {
        let ip: IpAddr = ip.parse().expect("test addresses parse");
        policy.check(ip).err().map(|r| r.rule)
    }

    #[test]
    fn non_global_addresses_are_refused_by_default() {
        let p = AddressPolicy::default();
        let cases = [
            ("0.0.0.0", Some(Rule::Unspecified)),
            ("127.0.0.1", Some(Rule::Loopback)),
            ("127.255.255.254", Some(Rule::Loopback)),
            ("10.1.2.3", Some(Rule::Private)),
            ("172.16.0.1", Some(Rule::Private)),
            ("172.31.255.255", Some(Rule::Private)),
            ("192.168.1.1", Some(Rule::Private)),
            ("100.64.0.1", Some(Rule::SharedCgnat)),
            ("169.254.169.254", Some(Rule::LinkLocal)),
            ("224.0.0.1", Some(Rule::Multicast)),
            ("255.255.255.255", Some(Rule::Broadcast)),
            ("240.0.0.1", Some(Rule::Reserved)),
            ("198.18.0.1", Some(Rule::Reserved)),
            ("192.0.2.7", Some(Rule::Documentation)),
            ("::", Some(Rule::Unspecified)),
            ("::1", Some(Rule::Loopback)),
            ("fe80::1", Some(Rule::LinkLocal)),
            ("fec0::1", Some(Rule::LinkLocal)),
            ("fd00::1", Some(Rule::UniqueLocal)),
            ("fc00::1", Some(Rule::UniqueLocal)),
            ("ff02::1", Some(Rule::Multicast)),
            ("2001:db8::1", Some(Rule::Documentation)),
            ("2001:0:4136:e378::1", Some(Rule::Tunnel)),
            ("100::1", Some(Rule::Reserved)),
            ("64:ff9b:1::1", Some(Rule::Reserved)),
            // Embedded IPv4, judged as the IPv4 address it carries.
            ("::ffff:127.0.0.1", Some(Rule::Loopback)),
            ("::ffff:7f00:1", Some(Rule::Loopback)),
            ("::ffff:169.254.169.254", Some(Rule::LinkLocal)),
            ("::127.0.0.1", Some(Rule::Loopback)),
            ("::10.0.0.1", Some(Rule::Private)),
            ("64:ff9b::a9fe:a9fe", Some(Rule::LinkLocal)),
            ("2002:7f00:1::1", Some(Rule::Loopback)),
            ("2002:c0a8:101::", Some(Rule::Private)),
            // Global unicast passes.
            ("8.8.8.8", None),
            ("52.216.1.1", None),
            ("172.32.0.1", None),
            ("2600:1f18::1", None),
            ("::ffff:8.8.8.8", None),
            ("2002:0808:0808::1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(rule(&p, ip), want, "{ip}");
        }
    }

    #[test]
    fn outbound_allow_lets_exactly_its_ranges_through() {
        let p = AddressPolicy::parse(&["10.20.0.0/16", "127.0.0.1", "fd00:1::/32"]).unwrap();
        assert_eq!(rule(&p, "10.20.255.1"), None);
        assert_eq!(rule(&p, "10.21.0.1"), Some(Rule::Private));
        assert_eq!(rule(&p, "127.0.0.1"), None);
        assert_eq!(
            rule(&p, "::ffff:127.0.0.1"),
            None,
            "same address, other spelling"
        );
        assert_eq!(rule(&p, "127.0.0.2"), Some(Rule::Loopback));
        assert_eq!(rule(&p, "fd00:1:2::3"), None);
        assert_eq!(rule(&p, "fd00:2::3"), Some(Rule::UniqueLocal));
        assert_eq!(rule(&p, "169.254.169.254"), Some(Rule::LinkLocal));
    }

    #[test]
    fn cidr_parsing() {
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
        assert!("::/0".parse::<Cidr>().is_ok());
        assert_eq!(
            "127.0.0.1".parse::<Cidr>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "localhost",
            "10.0.0/8",
            "10.0.0.0/x",
            "",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        let odd: Cidr = "10.20.0.0/13".parse().unwrap();
        assert!(odd.contains("10.23.255.255".parse().unwrap()));
        assert!(!odd.contains("10.24.0.0".parse().unwrap()));
    }

    #[test]
    fn the_refusal_names_address_and_rule() {
        let e = AddressPolicy::default()
            .check("::ffff:169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "address 169.254.169.254 is link-local (cloud metadata included) and outbound_allow does not name it"
        );
    }
}

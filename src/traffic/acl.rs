//! Address-based access control: CIDR blocks and allow/deny lists.
//!
//! IPv4 clients may arrive as IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) on a dual-stack
//! listener. Both the client address and every rule are put in canonical form first, so an IPv4
//! rule matches such a client, and a mapped rule such as `::ffff:10.0.0.0/104` behaves as
//! `10.0.0.0/8`. Other IPv6 rules never match IPv4 clients.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length in bits of an IPv4 address.
const IPV4_BITS: u8 = 32;

/// Length in bits of an IPv6 address.
const IPV6_BITS: u8 = 128;

/// Length in bits of the `::ffff:0:0/96` prefix of IPv4-mapped IPv6 addresses.
const IPV4_MAPPED_PREFIX_BITS: u8 = 96;

/// A block of addresses, such as `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address in canonical form, with every bit after `prefix_len` zero.
    network: IpAddr,
    prefix_len: u8,
}

/// The reason a CIDR block failed to parse. `Display` names the text and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    InvalidAddress { text: String },
    /// The part after `/` is not a decimal number.
    InvalidPrefixLength { text: String },
    /// The prefix length exceeds the address length.
    PrefixTooLong { text: String, max: u8 },
    /// Bits after the prefix are set, so the block is ambiguous.
    HostBitsSet { text: String, network: String },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::InvalidAddress { text } => write!(
                f,
                "invalid address in \"{text}\": expected an IPv4 or IPv6 address such as \
                 \"10.0.0.0/8\", \"::1\" or \"2001:db8::/32\", without brackets or zone"
            ),
            CidrError::InvalidPrefixLength { text } => write!(
                f,
                "invalid prefix length in \"{text}\": write a decimal number of bits after '/'"
            ),
            CidrError::PrefixTooLong { text, max } => write!(
                f,
                "prefix length in \"{text}\" is too long: the maximum for this address family \
                 is {max}"
            ),
            CidrError::HostBitsSet { text, network } => write!(
                f,
                "\"{text}\" has bits set after the prefix: write \"{network}\" for the block, or \
                 the address alone for one host"
            ),
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Parses `address/prefix-length` or a single address, which is a block of one address.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (address_text, prefix_text) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address_text
            .parse()
            .map_err(|_| CidrError::InvalidAddress {
                text: text.to_string(),
            })?;
        let max = match address {
            IpAddr::V4(_) => IPV4_BITS,
            IpAddr::V6(_) => IPV6_BITS,
        };
        let prefix_len = match prefix_text {
            None => max,
            Some(digits) => {
                parse_prefix_len(digits).ok_or_else(|| CidrError::InvalidPrefixLength {
                    text: text.to_string(),
                })?
            }
        };
        if prefix_len > max {
            return Err(CidrError::PrefixTooLong {
                text: text.to_string(),
                max,
            });
        }

        let network = mask(address, prefix_len);
        if network != address {
            return Err(CidrError::HostBitsSet {
                text: text.to_string(),
                network: format!("{network}/{prefix_len}"),
            });
        }
        Ok(canonical_block(network, prefix_len))
    }

    /// Returns true when `address` lies in this block, comparing IPv4-mapped IPv6 addresses as
    /// IPv4.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(address, self.prefix_len) == self.network
            }
            _ => false,
        }
    }

    /// Returns the network address of the block in canonical form.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// Returns the number of leading bits that addresses in the block share.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Parses a prefix length of one to three ASCII digits, rejecting signs and spaces that
/// `str::parse` would accept or that would hide a typing mistake.
fn parse_prefix_len(digits: &str) -> Option<u8> {
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Clears every bit of `address` after the first `prefix_len` bits.
fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = bits
                .checked_shr(u32::from(IPV4_BITS - prefix_len))
                .unwrap_or(0);
            let masked = kept
                .checked_shl(u32::from(IPV4_BITS - prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(masked))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = bits
                .checked_shr(u32::from(IPV6_BITS - prefix_len))
                .unwrap_or(0);
            let masked = kept
                .checked_shl(u32::from(IPV6_BITS - prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(masked))
        }
    }
}

/// Turns a block inside `::ffff:0:0/96` into the equivalent IPv4 block.
fn canonical_block(network: IpAddr, prefix_len: u8) -> Cidr {
    if let IpAddr::V6(v6) = network
        && prefix_len >= IPV4_MAPPED_PREFIX_BITS
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Cidr {
            network: IpAddr::V4(v4),
            prefix_len: prefix_len - IPV4_MAPPED_PREFIX_BITS,
        };
    }
    Cidr {
        network,
        prefix_len,
    }
}

/// Turns an IPv4-mapped IPv6 address into the IPv4 address it carries.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

/// Allow and deny lists of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl Acl {
    /// Parses the allow and deny lists, returning the first invalid entry's error.
    pub fn parse<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<Acl, CidrError> {
        let parse_all = |list: &[S]| {
            list.iter()
                .map(|text| Cidr::parse(text.as_ref()))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Acl {
            allow: parse_all(allow)?,
            deny: parse_all(deny)?,
        })
    }

    /// Returns whether a client at `address` may proceed. A deny match always rejects. A
    /// non-empty allow list rejects every address it does not contain. Empty lists permit all.
    pub fn permits(&self, address: IpAddr) -> bool {
        if self.deny.iter().any(|block| block.contains(address)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|block| block.contains(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_parses_valid_blocks() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("10.1.2.3/32", "10.1.2.3/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1/128", "2001:db8::1/128"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:192.168.1.1", "192.168.1.1/32"),
            ("::ffff:0.0.0.0/96", "0.0.0.0/0"),
            ("10.0.0.0/08", "10.0.0.0/8"),
        ];
        for (text, shown) in cases {
            let cidr = Cidr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(cidr.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn cidr_rejects_invalid_text() {
        use CidrKind::*;
        let cases = [
            ("", Address),
            ("10.0.0", Address),
            ("10.0.0.256", Address),
            ("010.0.0.1", Address),
            ("[::1]", Address),
            ("fe80::1%eth0", Address),
            (" 10.0.0.1", Address),
            ("example.com/8", Address),
            ("10.0.0.0/", Prefix),
            ("10.0.0.0/+8", Prefix),
            ("10.0.0.0/8 ", Prefix),
            ("10.0.0.0/8/8", Prefix),
            ("10.0.0.0/1000", Prefix),
            ("10.0.0.0/33", TooLong(32)),
            ("::/129", TooLong(128)),
            ("10.0.0.1/8", HostBits),
        ];
        for (text, expected) in cases {
            let error = Cidr::parse(text).expect_err(text);
            let kind = match error {
                CidrError::InvalidAddress { .. } => Address,
                CidrError::InvalidPrefixLength { .. } => Prefix,
                CidrError::PrefixTooLong { max, .. } => TooLong(max),
                CidrError::HostBitsSet { .. } => HostBits,
            };
            assert_eq!(kind, expected, "{text}");
        }
    }

    #[derive(Debug, PartialEq)]
    enum CidrKind {
        Address,
        Prefix,
        TooLong(u8),
        HostBits,
    }

    #[test]
    fn host_bits_error_names_network() {
        let error = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert_eq!(
            error.to_string(),
            "\"10.1.2.3/8\" has bits set after the prefix: write \"10.0.0.0/8\" for the block, \
             or the address alone for one host"
        );
        let error = Cidr::parse("2001:db8::1/32").unwrap_err();
        assert!(error.to_string().contains("\"2001:db8::/32\""), "{error}");
    }

    #[test]
    fn cidr_contains_edges() {
        let cases = [
            ("10.0.0.0/8", "10.0.0.0", true),
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "9.255.255.255", false),
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            ("10.0.0.0/8", "::ffff:11.0.0.1", false),
            ("10.0.0.0/8", "::a00:1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("::/0", "::1", true),
            ("::/0", "10.0.0.1", false),
            ("::/0", "::ffff:10.0.0.1", false),
            ("::ffff:10.0.0.0/104", "10.2.3.4", true),
            ("::1", "::1", true),
            ("::1", "::2", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("192.168.1.128/25", "192.168.1.127", false),
            ("192.168.1.128/25", "192.168.1.128", true),
            ("192.168.1.7/32", "192.168.1.7", true),
            ("192.168.1.7/32", "192.168.1.8", false),
        ];
        for (block, address, expected) in cases {
            let cidr = Cidr::parse(block).unwrap();
            assert_eq!(
                cidr.contains(ip(address)),
                expected,
                "{block} contains {address}"
            );
        }
    }

    #[test]
    fn acl_deny_wins_over_allow() {
        let acl = Acl::parse(&["10.0.0.0/8", "::1"], &["10.1.0.0/16"]).unwrap();
        let cases = [
            ("10.2.3.4", true),
            ("::ffff:10.2.3.4", true),
            ("10.1.3.4", false),
            ("::ffff:10.1.3.4", false),
            ("::1", true),
            ("192.168.0.1", false),
            ("2001:db8::1", false),
        ];
        for (address, expected) in cases {
            assert_eq!(acl.permits(ip(address)), expected, "{address}");
        }
    }

    #[test]
    fn acl_empty_allow_permits_rest() {
        let acl = Acl::parse(&[] as &[&str], &["192.0.2.0/24"]).unwrap();
        assert!(acl.permits(ip("198.51.100.1")));
        assert!(acl.permits(ip("::1")));
        assert!(!acl.permits(ip("192.0.2.200")));
        assert!(Acl::default().permits(ip("203.0.113.1")));
    }

    #[test]
    fn acl_reports_bad_entry() {
        let error = Acl::parse(&["10.0.0.0/8"], &["10.0.0.1/8"]).unwrap_err();
        assert!(matches!(error, CidrError::HostBitsSet { .. }), "{error:?}");
    }
}

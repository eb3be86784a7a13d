//! Who the client is: the TCP peer, or, when the peer is a proxy the operator trusts
//! (`trusted_proxies`), the address that proxy saw, from `X-Forwarded-For`.
//!
//! The address counts failed attempts (`limits.failures_per_client`), is stamped as a
//! credential's last-used client and goes into denied-request audit entries. Behind a load
//! balancer or a forward-auth caller every peer is the proxy, so without this one client's
//! failures would count against everyone behind it.
//!
//! The rule is the usual one: walk `X-Forwarded-For` from the right (the entry the nearest
//! proxy appended) past every trusted address, and take the first untrusted one. Entries to
//! its left were written by the client or by proxies nobody vouches for, so they are never
//! read. A peer that is not trusted is the client, whatever headers it sends.
//!
//! Pure code.

use http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// One trusted network: an address and a prefix length (`10.0.0.0/8`, `::1/128`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX_LEN`.
    ///
    /// # Errors
    /// A message naming what is wrong, for the conf error.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix_len) = match text.split_once('/') {
            Some((address, len)) => (address, Some(len)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (e.g. 10.0.0.0/8)"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_len {
            None => max,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..={max}"))?,
        };
        // Peers are compared as IPv4 when IPv4-mapped, so such a network is made IPv4 too.
        let mapped = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            IpAddr::V4(_) => None,
        };
        match mapped {
            Some(v4) if prefix_len >= 96 => Ok(Network {
                address: IpAddr::V4(v4),
                prefix_len: prefix_len - 96,
            }),
            Some(_) => Err(format!(
                "{text:?}: an IPv4-mapped network needs a prefix length of 96 or more"
            )),
            None => Ok(Network {
                address,
                prefix_len,
            }),
        }
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: a bare address, or one with a port (`192.0.2.1:5678`,
/// `[2001:db8::1]:443`), as some proxies write it.
fn entry(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's address for a request from `peer` with `headers`, given the `trusted`
/// proxies (see the module doc). `None` only when the peer is unknown (a Unix socket).
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Network],
) -> Option<IpAddr> {
    let mut client = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(client) {
        return Some(client);
    }
    // Several X-Forwarded-For headers are one list, in order. Split the raw bytes: a proxy
    // appends its entry to the client's line, so one bad byte the client sent must spoil
    // only the client's own entries, not the trusted ones to their right.
    let entries: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .collect();
    for bytes in entries.into_iter().rev() {
        // An entry that is not an address ends the walk: the hop before it is the last one
        // anybody vouches for, so the failures count against that hop.
        let Some(hop) = std::str::from_utf8(bytes).ok().and_then(entry) else {
            break;
        };
        client = hop;
        if !is_trusted(hop) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Network> {
        list.iter()
            .map(|n| Network::parse(n).expect("valid"))
            .collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().expect("value"));
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("ip"))
    }

    #[test]
    fn networks_parse_and_contain() {
        let lan = Network::parse("10.0.0.0/8").expect("valid");
        assert!(lan.contains("10.1.2.3".parse().expect("ip")));
        assert!(lan.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!lan.contains("11.0.0.1".parse().expect("ip")));
        let one = Network::parse("::1").expect("valid");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
        assert!(Network::parse("0.0.0.0/0")
            .expect("valid")
            .contains("8.8.8.8".parse().expect("ip")));
        let mapped = Network::parse("::ffff:10.0.0.0/104").expect("valid");
        assert!(mapped.contains("10.9.9.9".parse().expect("ip")));
        assert!(mapped.contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(Network::parse("::ffff:10.0.0.0/64").is_err());
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0",
            "localhost",
            "10.0.0.0/x",
            "",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            client_address(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1"]);
        // The client forged the leftmost entry; the proxies appended the others.
        let headers = forwarded(&["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
        // With ports, and IPv6.
        let headers = forwarded(&["[2001:db8::7]:443, 10.0.0.5:8080"]);
        assert_eq!(
            client_address(ip("10.0.0.9"), &headers, &trusted),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn a_bad_byte_in_the_clients_part_spoils_only_its_own_entries() {
        let trusted = nets(&["127.0.0.1"]);
        let mut headers = HeaderMap::new();
        let line = http::HeaderValue::from_bytes(b"\xff, 203.0.113.9").expect("obs-text");
        headers.append("x-forwarded-for", line);
        assert_eq!(
            client_address(ip("127.0.0.1"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn garbage_or_no_header_counts_against_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let headers = forwarded(&["203.0.113.9, nonsense, 10.0.0.5"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        let all_trusted = forwarded(&["10.0.0.3, 10.0.0.4"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &all_trusted, &trusted),
            ip("10.0.0.3")
        );
    }
}

//! VRRP advertisements on the wire: encoding, decoding and checksums.
//! Pure functions; short or inconsistent input is a [`DecodeError`].
//!
//! VRRPv3, RFC 5798 §5.1:
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IPvX Address(es)                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! The v3 checksum covers an IPv4 or IPv6 pseudo-header (§5.2.8).
//!
//! VRRPv2, RFC 3768 §5.1: the second word is `Auth Type | Adver Int
//! (seconds) | Checksum`, the addresses are IPv4 and are followed by eight
//! bytes of authentication data; the checksum covers the message only.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The only message type (§5.2.2).
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
const V2_AUTH_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in whole seconds.
    V2,
    /// RFC 5798: IPv4 or IPv6, interval in centiseconds.
    V3,
}

/// One advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// Advertisement interval in centiseconds (v2: seconds × 100).
    pub interval_cs: u16,
    pub addresses: Vec<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("advert of {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("unsupported VRRP version {0}")]
    Version(u8),
    #[error("unknown VRRP message type {0}")]
    Type(u8),
    #[error("advert claims {count} addresses but is {len} bytes long")]
    Length { count: u8, len: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("VRRPv2 over IPv6")]
    V2OverIpv6,
    #[error("advertisement interval of zero")]
    ZeroInterval,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} addresses do not fit the count field")]
    TooManyAddresses(usize),
    #[error("address {0} is not of the advert's family")]
    Family(IpAddr),
    #[error("interval {0} cs does not fit the {1:?} interval field")]
    Interval(u16, Version),
}

/// Encodes `advert` as sent from `src` to `dst` (the addresses of the IP
/// header, which the v3 checksum covers).
pub fn encode(advert: &Advert, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, EncodeError> {
    let count = u8::try_from(advert.addresses.len())
        .map_err(|_| EncodeError::TooManyAddresses(advert.addresses.len()))?;
    let v4 = src.is_ipv4();
    if let Some(a) = advert.addresses.iter().find(|a| a.is_ipv4() != v4) {
        return Err(EncodeError::Family(*a));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 16 * advert.addresses.len() + V2_AUTH_LEN);
    let (version, second): (u8, [u8; 2]) = match advert.version {
        Version::V3 => {
            if advert.interval_cs > 0x0fff {
                return Err(EncodeError::Interval(advert.interval_cs, Version::V3));
            }
            (3, advert.interval_cs.to_be_bytes())
        }
        Version::V2 => {
            let seconds = advert.interval_cs / 100;
            if !advert.interval_cs.is_multiple_of(100) || seconds == 0 || seconds > 255 || !v4 {
                return Err(EncodeError::Interval(advert.interval_cs, Version::V2));
            }
            // Auth Type 0 (none), Adver Int in seconds.
            (2, [0, seconds as u8])
        }
    };
    out.extend_from_slice(&[
        version << 4 | TYPE_ADVERTISEMENT,
        advert.vrid,
        advert.priority,
        count,
    ]);
    out.extend_from_slice(&second);
    out.extend_from_slice(&[0, 0]);
    for address in &advert.addresses {
        match address {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    if advert.version == Version::V2 {
        out.extend_from_slice(&[0; V2_AUTH_LEN]);
    }
    let checksum = checksum(&out, advert.version, src, dst);
    out[6..8].copy_from_slice(&checksum.to_be_bytes());
    Ok(out)
}

/// Decodes an advert received from `src` for `dst` and checks its
/// checksum, version, type and length (RFC 5798 §7.1, the checks that
/// need no configuration).
pub fn decode(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    let version = match bytes[0] >> 4 {
        2 if src.is_ipv4() => Version::V2,
        2 => return Err(DecodeError::V2OverIpv6),
        3 => Version::V3,
        other => return Err(DecodeError::Version(other)),
    };
    if bytes[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DecodeError::Type(bytes[0] & 0x0f));
    }
    let count = bytes[3];
    let address_len = if src.is_ipv4() { 4 } else { 16 };
    let auth_len = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    let expected = HEADER_LEN + usize::from(count) * address_len + auth_len;
    // v2 senders may omit the authentication data; a v3 advert is exact.
    let fits = match version {
        Version::V3 => bytes.len() == expected,
        Version::V2 => bytes.len() == expected || bytes.len() == expected - auth_len,
    };
    if !fits {
        return Err(DecodeError::Length {
            count,
            len: bytes.len(),
        });
    }
    if checksum(bytes, version, src, dst) != 0 {
        return Err(DecodeError::Checksum);
    }
    let interval_cs = match version {
        Version::V3 => u16::from_be_bytes([bytes[4] & 0x0f, bytes[5]]),
        Version::V2 => u16::from(bytes[5]) * 100,
    };
    if interval_cs == 0 {
        return Err(DecodeError::ZeroInterval);
    }
    let addresses = bytes[HEADER_LEN..HEADER_LEN + usize::from(count) * address_len]
        .chunks_exact(address_len)
        .map(|chunk| match <[u8; 16]>::try_from(chunk) {
            Ok(v6) => IpAddr::V6(Ipv6Addr::from(v6)),
            Err(_) => IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3])),
        })
        .collect();
    Ok(Advert {
        version,
        vrid: bytes[1],
        priority: bytes[2],
        interval_cs,
        addresses,
    })
}

/// The Internet checksum (RFC 1071) of `message`, with the v3
/// pseudo-header (RFC 5798 §5.2.8; RFC 8200 §8.1 for IPv6) in front.
/// Over a message whose checksum field is filled in, a correct checksum
/// gives 0.
fn checksum(message: &[u8], version: Version, src: IpAddr, dst: IpAddr) -> u16 {
    match version {
        Version::V3 => pseudo_header_checksum(PROTOCOL, message, src, dst),
        Version::V2 => fold(add_words(message)),
    }
}

/// The Internet checksum of `message` of IP protocol `protocol` with the
/// IPv4 or IPv6 pseudo-header in front (also used for ICMPv6 neighbour
/// advertisements). Mixed families: the message alone.
pub(crate) fn pseudo_header_checksum(
    protocol: u8,
    message: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> u16 {
    let len = message.len() as u32;
    let mut sum = add_words(message);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum += add_words(&s.octets()) + add_words(&d.octets());
            sum += u32::from(protocol) + len;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum += add_words(&s.octets()) + add_words(&d.octets());
            sum += (len >> 16) + (len & 0xffff) + u32::from(protocol);
        }
        _ => {}
    }
    fold(sum)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn add_words(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Golden bytes: VRID 51, priority 150, 1 s, one address; checksums
    /// computed independently of this code.
    fn golden() -> Vec<(Vec<u8>, Advert, IpAddr, IpAddr)> {
        vec![
            (
                hex("313396010064d3cac000020a"),
                Advert {
                    version: Version::V3,
                    vrid: 51,
                    priority: 150,
                    interval_cs: 100,
                    addresses: vec![ip("192.0.2.10")],
                },
                ip("192.0.2.2"),
                ip("224.0.0.18"),
            ),
            (
                hex("21339601000186bfc000020a0000000000000000"),
                Advert {
                    version: Version::V2,
                    vrid: 51,
                    priority: 150,
                    interval_cs: 100,
                    addresses: vec![ip("192.0.2.10")],
                },
                ip("192.0.2.2"),
                ip("224.0.0.18"),
            ),
            (
                hex("3133960100640c7e20010db8000000000000000000000010"),
                Advert {
                    version: Version::V3,
                    vrid: 51,
                    priority: 150,
                    interval_cs: 100,
                    addresses: vec![ip("2001:db8::10")],
                },
                ip("fe80::2"),
                ip("ff02::12"),
            ),
        ]
    }

    /// Adverts captured from keepalived v2.2.7 on this kind of machine
    /// (`vrrp_version 3` / `2`, IPv4 and IPv6, running and at shutdown
    /// with priority 0), with the addresses of the IP header they came in.
    pub(crate) fn keepalived() -> Vec<(Vec<u8>, Advert, IpAddr, IpAddr)> {
        let v4 = |version, vrid, priority, interval_cs| Advert {
            version,
            vrid,
            priority,
            interval_cs,
            addresses: vec![ip("192.0.2.100")],
        };
        let v6 = |priority| Advert {
            version: Version::V3,
            vrid: 53,
            priority,
            interval_cs: 100,
            addresses: vec![ip("2001:db8::100")],
        };
        let (src4, dst4) = (ip("192.0.2.3"), ip("224.0.0.18"));
        let (src6, dst6) = (ip("fe80::7d:c4ff:fe9e:26f1"), ip("ff02::12"));
        vec![
            (
                hex("3133640100640570c0000264"),
                v4(Version::V3, 51, 100, 100),
                src4,
                dst4,
            ),
            (
                hex("3133000100646970c0000264"),
                v4(Version::V3, 51, 0, 100),
                src4,
                dst4,
            ),
            (
                hex("213478010001a464c00002640000000000000000"),
                v4(Version::V2, 52, 120, 100),
                src4,
                dst4,
            ),
            (
                hex("2134000100011c65c00002640000000000000000"),
                v4(Version::V2, 52, 0, 100),
                src4,
                dst4,
            ),
            (
                hex("313582010064348120010db8000000000000000000000100"),
                v6(130),
                src6,
                dst6,
            ),
            (
                hex("313500010064b68120010db8000000000000000000000100"),
                v6(0),
                src6,
                dst6,
            ),
        ]
    }

    #[test]
    fn keepalived_adverts_both_directions() {
        for (bytes, advert, src, dst) in keepalived() {
            assert_eq!(decode(&bytes, src, dst).unwrap(), advert, "{advert:?}");
            assert_eq!(encode(&advert, src, dst).unwrap(), bytes, "{advert:?}");
        }
    }

    #[test]
    fn golden_both_directions() {
        for (bytes, advert, src, dst) in golden() {
            assert_eq!(encode(&advert, src, dst).unwrap(), bytes, "{advert:?}");
            assert_eq!(decode(&bytes, src, dst).unwrap(), advert);
        }
    }

    #[test]
    fn corrupt_input_is_an_error_never_a_panic() {
        for (bytes, _, src, dst) in golden() {
            for len in 0..bytes.len() {
                assert!(decode(&bytes[..len], src, dst).is_err() || len + 8 == bytes.len());
            }
            for i in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[i] ^= 0x01;
                assert!(
                    decode(&flipped, src, dst).is_err(),
                    "bit flip at {i} accepted"
                );
            }
        }
        let (bytes, ..) = &golden()[0];
        assert_eq!(
            decode(bytes, ip("192.0.2.3"), ip("224.0.0.18")),
            Err(DecodeError::Checksum)
        );
    }

    #[test]
    fn intervals() {
        let mut advert = golden()[0].1.clone();
        advert.interval_cs = 10; // 100 ms, v3 only
        let bytes = encode(&advert, ip("192.0.2.2"), ip("224.0.0.18")).unwrap();
        assert_eq!(
            decode(&bytes, ip("192.0.2.2"), ip("224.0.0.18"))
                .unwrap()
                .interval_cs,
            10
        );
        advert.version = Version::V2;
        assert!(encode(&advert, ip("192.0.2.2"), ip("224.0.0.18")).is_err());
        advert.version = Version::V3;
        advert.interval_cs = 0x1000;
        assert!(encode(&advert, ip("192.0.2.2"), ip("224.0.0.18")).is_err());
    }
}

//! Receive validation (RFC 5798 §7.1, RFC 3768 §7.1): every advert that
//! reaches an instance's socket passes [`validate`] or is dropped for one
//! [`Discard`] reason, each with its own counter.
use std::net::IpAddr;

use super::packet::{self, Advert, DecodeError, Version};

/// What an advert is checked against: the instance's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub version: Version,
    pub vrid: u8,
    /// The configured interface.
    pub ifindex: u32,
    /// The virtual addresses, in the configured order.
    pub addresses: Vec<IpAddr>,
    /// Advertisement_Interval in centiseconds (v2 requires it to match).
    pub advert_interval_cs: u16,
    /// When non-empty, adverts are accepted only from these.
    pub unicast_peers: Vec<IpAddr>,
    /// This router is the address owner (priority 255).
    pub owner: bool,
}

/// An advert as received: the VRRP message and what the IP layer said.
#[derive(Clone, Copy, Debug)]
pub struct Received<'a> {
    pub message: &'a [u8],
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 Hop Limit.
    pub ttl: u8,
    /// The interface it arrived on.
    pub ifindex: u32,
}

/// Why an advert was discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Discard {
    /// It arrived on another interface than the configured one.
    Interface,
    /// TTL / Hop Limit not 255 (§7.1: it may have been routed).
    Ttl,
    /// Shorter than the VRRP header.
    Truncated,
    /// The length does not match the address count.
    Length,
    /// Another VRRP version than the configured one.
    Version,
    /// Not an advertisement.
    Type,
    Checksum,
    /// Another virtual router (VRID); normal on a shared segment.
    Vrid,
    /// From a source not among the configured unicast peers.
    Peer,
    /// The address count differs from the configured one.
    AddressCount,
    /// The addresses differ from the configured ones (§7.1: v2 discards
    /// unless the sender is the owner; v3 adverts are discarded too, as
    /// keepalived does, rather than let a misconfigured peer win).
    AddressList,
    /// v2: Adver Int differs from the configured one (RFC 3768 §7.1);
    /// v2 and v3: an interval of zero.
    Interval,
    /// v2: an authentication type other than 0 (none).
    Auth,
    /// Priority 255 (address owner) from a router that cannot own the
    /// addresses: this router is the owner, or (IPv4) the source is not
    /// one of the virtual addresses.
    OwnerClaim,
}

impl Discard {
    pub const ALL: [Discard; 14] = [
        Discard::Interface,
        Discard::Ttl,
        Discard::Truncated,
        Discard::Length,
        Discard::Version,
        Discard::Type,
        Discard::Checksum,
        Discard::Vrid,
        Discard::Peer,
        Discard::AddressCount,
        Discard::AddressList,
        Discard::Interval,
        Discard::Auth,
        Discard::OwnerClaim,
    ];

    /// Name used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::Interface => "interface",
            Discard::Ttl => "ttl",
            Discard::Truncated => "truncated",
            Discard::Length => "length",
            Discard::Version => "version",
            Discard::Type => "type",
            Discard::Checksum => "checksum",
            Discard::Vrid => "vrid",
            Discard::Peer => "peer",
            Discard::AddressCount => "address_count",
            Discard::AddressList => "address_list",
            Discard::Interval => "interval",
            Discard::Auth => "auth",
            Discard::OwnerClaim => "owner_claim",
        }
    }

    /// Position in [`Discard::ALL`] (for counter arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<DecodeError> for Discard {
    fn from(error: DecodeError) -> Discard {
        match error {
            DecodeError::Truncated(_) => Discard::Truncated,
            DecodeError::Version(_) | DecodeError::V2OverIpv6 => Discard::Version,
            DecodeError::Type(_) => Discard::Type,
            DecodeError::Length { .. } => Discard::Length,
            DecodeError::Checksum => Discard::Checksum,
            DecodeError::ZeroInterval => Discard::Interval,
        }
    }
}

/// §7.1: the advert if it is for this virtual router and well formed.
pub fn validate(received: &Received<'_>, expect: &Expect) -> Result<Advert, Discard> {
    if received.ifindex != expect.ifindex {
        return Err(Discard::Interface);
    }
    if received.ttl != 255 {
        return Err(Discard::Ttl);
    }
    let advert = packet::decode(received.message, received.src, received.dst)?;
    if advert.version != expect.version {
        return Err(Discard::Version);
    }
    if advert.vrid != expect.vrid {
        return Err(Discard::Vrid);
    }
    if !expect.unicast_peers.is_empty() && !expect.unicast_peers.contains(&received.src) {
        return Err(Discard::Peer);
    }
    if advert.version == Version::V2 {
        // Auth Type, RFC 3768 §5.3.6; the decoder checked the length.
        if received.message[4] != 0 {
            return Err(Discard::Auth);
        }
        if advert.interval_cs != expect.advert_interval_cs {
            return Err(Discard::Interval);
        }
    }
    if advert.priority == 255 {
        let source_owns = match received.src {
            IpAddr::V4(_) => expect.addresses.contains(&received.src),
            // The source is link-local: nothing to compare it with.
            IpAddr::V6(_) => true,
        };
        if expect.owner || !source_owns {
            return Err(Discard::OwnerClaim);
        }
    }
    if advert.addresses.len() != expect.addresses.len() {
        return Err(Discard::AddressCount);
    }
    // Same length and each list within the other: the same addresses
    // (ours are distinct, validated so), with no allocation per advert.
    let within = |a: &[IpAddr], b: &[IpAddr]| a.iter().all(|x| b.contains(x));
    if !within(&advert.addresses, &expect.addresses)
        || !within(&expect.addresses, &advert.addresses)
    {
        return Err(Discard::AddressList);
    }
    Ok(advert)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn expect() -> Expect {
        Expect {
            version: Version::V3,
            vrid: 51,
            ifindex: 2,
            addresses: vec![ip("192.0.2.10"), ip("192.0.2.20")],
            advert_interval_cs: 100,
            unicast_peers: Vec::new(),
            owner: false,
        }
    }

    fn advert() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            addresses: vec![ip("192.0.2.20"), ip("192.0.2.10")],
        }
    }

    const SRC: &str = "192.0.2.3";
    const DST: &str = "224.0.0.18";

    fn check(advert: &Advert, expect: &Expect) -> Result<Advert, Discard> {
        let bytes = packet::encode(advert, ip(SRC), ip(DST)).unwrap();
        check_bytes(&bytes, 255, expect)
    }

    fn check_bytes(bytes: &[u8], ttl: u8, expect: &Expect) -> Result<Advert, Discard> {
        let received = Received {
            message: bytes,
            src: ip(SRC),
            dst: ip(DST),
            ttl,
            ifindex: 2,
        };
        validate(&received, expect)
    }

    #[test]
    fn a_good_advert_passes_in_any_address_order() {
        assert_eq!(check(&advert(), &expect()), Ok(advert()));
    }

    #[test]
    fn each_failure_has_its_reason() {
        let good = packet::encode(&advert(), ip(SRC), ip(DST)).unwrap();
        assert_eq!(check_bytes(&good, 254, &expect()), Err(Discard::Ttl));
        assert_eq!(check_bytes(&good, 1, &expect()), Err(Discard::Ttl));
        let mut elsewhere = expect();
        elsewhere.ifindex = 3;
        assert_eq!(check_bytes(&good, 255, &elsewhere), Err(Discard::Interface));
        assert_eq!(
            check_bytes(&good[..7], 255, &expect()),
            Err(Discard::Truncated)
        );
        assert_eq!(
            check_bytes(&good[..12], 255, &expect()),
            Err(Discard::Length)
        );
        let mut bad_sum = good.clone();
        bad_sum[7] ^= 0xff;
        assert_eq!(
            check_bytes(&bad_sum, 255, &expect()),
            Err(Discard::Checksum)
        );
        let mut bad_type = good.clone();
        bad_type[0] = 0x32;
        assert_eq!(check_bytes(&bad_type, 255, &expect()), Err(Discard::Type));
        let mut bad_version = good.clone();
        bad_version[0] = 0x41;
        assert_eq!(
            check_bytes(&bad_version, 255, &expect()),
            Err(Discard::Version)
        );

        let mut v2 = advert();
        v2.version = Version::V2;
        assert_eq!(check(&v2, &expect()), Err(Discard::Version));
        let mut other = advert();
        other.vrid = 52;
        assert_eq!(check(&other, &expect()), Err(Discard::Vrid));
        let mut fewer = advert();
        fewer.addresses.pop();
        assert_eq!(check(&fewer, &expect()), Err(Discard::AddressCount));
        let mut different = advert();
        different.addresses[0] = ip("192.0.2.30");
        assert_eq!(check(&different, &expect()), Err(Discard::AddressList));
        let mut peers = expect();
        peers.unicast_peers = vec![ip("192.0.2.4")];
        assert_eq!(check(&advert(), &peers), Err(Discard::Peer));
        peers.unicast_peers.push(ip(SRC));
        assert!(check(&advert(), &peers).is_ok());
    }

    #[test]
    fn v2_checks_interval_and_authentication() {
        let mut expect = expect();
        expect.version = Version::V2;
        let mut v2 = advert();
        v2.version = Version::V2;
        assert!(check(&v2, &expect).is_ok());
        v2.interval_cs = 200;
        assert_eq!(check(&v2, &expect), Err(Discard::Interval));
        v2.interval_cs = 100;
        // Auth Type 1 (simple text), checksum fixed up by hand.
        let mut bytes = packet::encode(&v2, ip(SRC), ip(DST)).unwrap();
        bytes[4] = 1;
        let sum = u16::from_be_bytes([bytes[6], bytes[7]]);
        let fixed = ones_complement_sub(sum, 0x0100);
        bytes[6..8].copy_from_slice(&fixed.to_be_bytes());
        assert_eq!(check_bytes(&bytes, 255, &expect), Err(Discard::Auth));
    }

    /// The checksum after a 16-bit word of the message grew by `delta`.
    fn ones_complement_sub(sum: u16, delta: u16) -> u16 {
        let folded = u32::from(!sum) + u32::from(delta);
        !(((folded & 0xffff) + (folded >> 16)) as u16)
    }

    #[test]
    fn priority_255_only_from_an_owner() {
        let mut claim = advert();
        claim.priority = 255;
        // 192.0.2.3 is not a virtual address: it cannot own them.
        assert_eq!(check(&claim, &expect()), Err(Discard::OwnerClaim));
        let mut owned = expect();
        owned.addresses = vec![ip(SRC), ip("192.0.2.10")];
        claim.addresses = owned.addresses.clone();
        assert!(check(&claim, &owned).is_ok());
        // Two owners cannot both be right.
        owned.owner = true;
        assert_eq!(check(&claim, &owned), Err(Discard::OwnerClaim));
    }

    /// A fuzz loop without a fuzzer: random and mutated adverts through
    /// validation never panic, and only well-formed ones pass.
    #[test]
    fn random_input_is_discarded_never_a_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<Vec<u8>> = crate::vrrp::packet::tests::keepalived()
            .into_iter()
            .map(|(bytes, ..)| bytes)
            .collect();
        let mut passed = 0;
        for round in 0..100_000 {
            let mut bytes = if round % 2 == 0 {
                let len = (next() % 64) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut seed = seeds[(next() % seeds.len() as u64) as usize].clone();
                for _ in 0..=next() % 3 {
                    let at = (next() % seed.len() as u64) as usize;
                    seed[at] = next() as u8;
                }
                seed
            };
            if round % 7 == 0 {
                bytes.truncate((next() % 40) as usize);
            }
            let (src, dst) = if next() % 2 == 0 {
                (ip("192.0.2.3"), ip("224.0.0.18"))
            } else {
                (ip("fe80::7d:c4ff:fe9e:26f1"), ip("ff02::12"))
            };
            let received = Received {
                message: &bytes,
                src,
                dst,
                ttl: if next() % 4 == 0 { next() as u8 } else { 255 },
                ifindex: 2,
            };
            if let Ok(advert) = validate(&received, &expect()) {
                // Whatever passes is a consistent advert for this router.
                assert_eq!(advert.vrid, 51);
                assert_eq!(advert.addresses.len(), 2);
                passed += 1;
            }
        }
        // Random bytes virtually never carry a valid checksum for VRID 51
        // with the two configured addresses.
        assert!(passed < 10, "{passed} random adverts passed");
    }

    #[test]
    fn discard_names_are_distinct_and_indexed() {
        for (i, discard) in Discard::ALL.iter().enumerate() {
            assert_eq!(discard.index(), i);
        }
        let mut names: Vec<_> = Discard::ALL.iter().map(|d| d.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Discard::ALL.len());
    }
}

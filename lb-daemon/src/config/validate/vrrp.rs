//! One `[[vrrp.instance]]` on its own (rules across instances and
//! virtual servers are in [`super::cross`]).
use std::{collections::HashMap, net::IpAddr, time::Duration};

use ipnet::IpNet;

use super::Ctx;
use crate::config::{
    model::{Track, VrrpInstance, VrrpVersion, defaults},
    raw::{RawTrack, RawVrrpInstance, S},
};

/// Longest `preempt_delay`.
const PREEMPT_DELAY_MAX: Duration = Duration::from_secs(3600);

pub(super) fn instance(
    ctx: &mut Ctx<'_>,
    index: usize,
    raw: &S<RawVrrpInstance>,
) -> Option<VrrpInstance> {
    let span = raw.span();
    let raw = raw.get_ref();
    let base = format!("vrrp.instance[{index}]");
    let field = |name: &str| format!("{base}.{name}");

    let name = ctx
        .required(&raw.name, &span, field("name"))
        .and_then(|n| ctx.name(n, field("name")));
    let interface = ctx
        .required(&raw.interface, &span, field("interface"))
        .and_then(|i| ctx.interface(i, field("interface")));
    let vrid = ctx
        .required(&raw.vrid, &span, field("vrid"))
        .and_then(|v| ctx.int(v, 1u8, 255, field("vrid")));
    let version = match &raw.version {
        None => VrrpVersion::V3,
        Some(v) => match v.get_ref() {
            2 => VrrpVersion::V2,
            3 => VrrpVersion::V3,
            other => {
                ctx.error(
                    &v.span(),
                    field("version"),
                    format!("{other} is not 2 or 3"),
                );
                VrrpVersion::V3
            }
        },
    };
    let priority = ctx.int_or(
        &raw.priority,
        defaults::VRRP_PRIORITY,
        1,
        255,
        field("priority"),
    );
    let advert_interval = advert_interval(
        ctx,
        raw.advert_interval.as_ref(),
        version,
        &field("advert_interval"),
    );
    let preempt = raw
        .preempt
        .as_ref()
        .map_or(defaults::PREEMPT, |p| *p.get_ref());
    let preempt_delay = match &raw.preempt_delay {
        None => defaults::PREEMPT_DELAY,
        Some(value) => match ctx.duration(value, field("preempt_delay")) {
            Some(delay) if delay > PREEMPT_DELAY_MAX => {
                ctx.error(&value.span(), field("preempt_delay"), "must be at most 1h");
                defaults::PREEMPT_DELAY
            }
            delay => delay.unwrap_or(defaults::PREEMPT_DELAY),
        },
    };

    let virtual_addresses = virtual_addresses(ctx, raw, &span, version, &base);
    let family_v6 = virtual_addresses
        .first()
        .map(|net| matches!(net, IpNet::V6(_)));
    let unicast_peers = unicast_peers(ctx, raw, family_v6, &base);
    let notify = raw
        .notify
        .as_ref()
        .and_then(|path| ctx.absolute_path(path, field("notify")));
    let track = raw.track.as_ref().map_or_else(Vec::new, |list| {
        list.get_ref()
            .iter()
            .enumerate()
            .filter_map(|(i, t)| track(ctx, t, &format!("{base}.track[{i}]")))
            .collect()
    });

    Some(VrrpInstance {
        name: name?,
        interface: interface?,
        vrid: vrid?,
        version,
        priority,
        advert_interval,
        preempt,
        preempt_delay,
        virtual_addresses,
        unicast_peers,
        notify,
        track,
    })
}

/// RFC 3768 5.3.7: whole seconds in 8 bits. RFC 5798 5.2.7: centiseconds
/// in 12 bits (10 ms to 40.95 s).
fn advert_interval(
    ctx: &mut Ctx<'_>,
    value: Option<&S<String>>,
    version: VrrpVersion,
    field: &str,
) -> Duration {
    let Some(value) = value else {
        return defaults::ADVERT_INTERVAL;
    };
    let Some(interval) = ctx.duration(value, field) else {
        return defaults::ADVERT_INTERVAL;
    };
    let problem = match version {
        VrrpVersion::V2 if interval.subsec_nanos() != 0 || interval.is_zero() => {
            Some("VRRP version 2 needs whole seconds, from 1s")
        }
        VrrpVersion::V2 if interval > defaults::ADVERT_INTERVAL_V2_MAX => {
            Some("VRRP version 2 allows at most 255s")
        }
        VrrpVersion::V3 if interval.as_nanos() % 10_000_000 != 0 || interval.is_zero() => {
            Some("VRRP version 3 needs a multiple of 10ms, from 10ms")
        }
        VrrpVersion::V3 if interval > defaults::ADVERT_INTERVAL_V3_MAX => {
            Some("VRRP version 3 allows at most 40.95s (40s 950ms)")
        }
        _ => None,
    };
    match problem {
        Some(problem) => {
            ctx.error(
                &value.span(),
                field,
                format!("{:?}: {problem}", value.get_ref()),
            );
            defaults::ADVERT_INTERVAL
        }
        None => interval,
    }
}

/// `"192.0.2.10/24"` or `"192.0.2.10"` (a /32 or /128), all of one family
/// (RFC 5798 6.1: an instance is IPv4 or IPv6), IPv4 for version 2.
fn virtual_addresses(
    ctx: &mut Ctx<'_>,
    raw: &RawVrrpInstance,
    table: &std::ops::Range<usize>,
    version: VrrpVersion,
    base: &str,
) -> Vec<IpNet> {
    let field = format!("{base}.virtual_addresses");
    let Some(list) = ctx.required(&raw.virtual_addresses, table, &field) else {
        return Vec::new();
    };
    if list.get_ref().is_empty() {
        ctx.error(&list.span(), &field, "needs at least one address");
    }
    let mut addresses: Vec<IpNet> = Vec::new();
    let mut seen = HashMap::new();
    for (i, value) in list.get_ref().iter().enumerate() {
        let path = format!("{field}[{i}]");
        let text = value.get_ref();
        let parsed = match text.parse::<IpNet>() {
            Ok(net) => Some(net),
            Err(_) => text.parse::<IpAddr>().ok().map(IpNet::from),
        };
        let Some(net) = parsed else {
            ctx.error(
                &value.span(),
                &path,
                format!("{text:?} is not an address with an optional prefix length, like \"192.0.2.10/24\""),
            );
            continue;
        };
        let address = net.addr();
        if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
            ctx.error(
                &value.span(),
                &path,
                format!("{address} is not a unicast address"),
            );
            continue;
        }
        if version == VrrpVersion::V2 && address.is_ipv6() {
            ctx.error(
                &value.span(),
                &path,
                "VRRP version 2 is IPv4 only; use version 3 for IPv6",
            );
            continue;
        }
        if let Some(first) = addresses.first()
            && first.addr().is_ipv6() != address.is_ipv6()
        {
            ctx.error(
                &value.span(),
                &path,
                "mixes IPv4 and IPv6: an instance is of one family; use one instance per family",
            );
            continue;
        }
        if let Some(first) = seen.insert(address, value.span()) {
            let line = ctx.line(&first);
            ctx.error(
                &value.span(),
                &path,
                format!("{address} is listed twice (also on line {line})"),
            );
            continue;
        }
        addresses.push(net);
    }
    addresses
}

fn unicast_peers(
    ctx: &mut Ctx<'_>,
    raw: &RawVrrpInstance,
    family_v6: Option<bool>,
    base: &str,
) -> Vec<IpAddr> {
    let Some(list) = &raw.unicast_peers else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for (i, value) in list.get_ref().iter().enumerate() {
        let path = format!("{base}.unicast_peers[{i}]");
        let Some(peer) = ctx.unicast_ip(value, &path) else {
            continue;
        };
        if family_v6.is_some_and(|v6| v6 != peer.is_ipv6()) {
            ctx.error(
                &value.span(),
                &path,
                "is not of the family of the virtual addresses",
            );
            continue;
        }
        if peers.contains(&peer) {
            ctx.error(&value.span(), &path, format!("{peer} is listed twice"));
            continue;
        }
        peers.push(peer);
    }
    peers
}

fn track(ctx: &mut Ctx<'_>, raw: &S<RawTrack>, base: &str) -> Option<Track> {
    let span = raw.span();
    let raw = raw.get_ref();
    let field = |name: &str| format!("{base}.{name}");
    let weight = ctx.int_or(
        &raw.weight,
        defaults::TRACK_WEIGHT,
        -defaults::TRACK_WEIGHT_MAX,
        defaults::TRACK_WEIGHT_MAX,
        field("weight"),
    );
    let targets = [&raw.virtual_server, &raw.interface, &raw.script]
        .iter()
        .filter(|t| t.is_some())
        .count();
    if targets != 1 {
        ctx.error(
            &span,
            base,
            "needs exactly one of virtual_server, interface or script",
        );
        return None;
    }
    if let (None, Some(interval)) = (&raw.script, &raw.interval) {
        ctx.error(
            &interval.span(),
            field("interval"),
            "only a script is run at an interval",
        );
    }
    if let Some(vs) = &raw.virtual_server {
        // Whether it names a virtual server is checked in `cross`.
        let name = ctx.name(vs, field("virtual_server"))?;
        return Some(Track::VirtualServer { name, weight });
    }
    if let Some(interface) = &raw.interface {
        let name = ctx.interface(interface, field("interface"))?;
        return Some(Track::Interface { name, weight });
    }
    let script = raw.script.as_ref()?;
    let path = ctx.absolute_path(script, field("script"));
    let interval = match &raw.interval {
        None => defaults::TRACK_SCRIPT_INTERVAL,
        Some(value) => match ctx.duration(value, field("interval")) {
            Some(interval) if interval.is_zero() => {
                ctx.error(&value.span(), field("interval"), "must be more than 0s");
                defaults::TRACK_SCRIPT_INTERVAL
            }
            interval => interval.unwrap_or(defaults::TRACK_SCRIPT_INTERVAL),
        },
    };
    Some(Track::Script {
        path: path?,
        weight,
        interval,
    })
}

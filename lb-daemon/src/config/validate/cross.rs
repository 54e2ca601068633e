//! Rules across entries: unique names and listeners, references between
//! sections, the capacity of the maps. Entries that failed their own
//! validation (`None`) are left out, so one mistake is reported once.
use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    ops::Range,
};

use super::Ctx;
use crate::config::{
    model::{Admin, Dataplane, Metrics, Protocol, VirtualServer, VrrpInstance},
    raw::{RawConfig, S},
};

/// Backends across all virtual servers. The daemon sizes the data plane's
/// backend slots from the config (twice the count, so that a reload can
/// replace every backend); this bounds that map at a few tens of MiB.
const MAX_BACKENDS: usize = (1 << 20) - 1;

pub(super) fn check(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    dataplane: Option<&Dataplane>,
    (metrics, admin): (&Metrics, &Admin),
    vrrp: &[Option<VrrpInstance>],
    virtual_servers: &[Option<VirtualServer>],
) {
    if raw.dataplane.is_none() && raw.virtual_server.is_empty() && vrrp.is_empty() {
        ctx.error(
            &(0..0),
            "(config)",
            "configures nothing: add [[virtual_server]] (with [dataplane]) or [[vrrp.instance]]",
        );
    }
    listeners(ctx, raw, metrics, admin);
    capacity(ctx, raw, dataplane);
    virtual_server_identity(ctx, raw, virtual_servers);
    vrrp_identity(ctx, raw, vrrp);
    tracked_virtual_servers(ctx, raw);
    vips_without_vrrp(ctx, raw, vrrp, virtual_servers);
}

fn listeners(ctx: &mut Ctx<'_>, raw: &RawConfig, metrics: &Metrics, admin: &Admin) {
    if metrics.listen != admin.listen {
        return;
    }
    let span = raw
        .admin
        .as_ref()
        .and_then(|a| a.get_ref().listen.as_ref())
        .map(S::span)
        .unwrap_or_default();
    ctx.error(
        &span,
        "admin.listen",
        format!("{} is also metrics.listen", admin.listen),
    );
}

fn capacity(ctx: &mut Ctx<'_>, raw: &RawConfig, dataplane: Option<&Dataplane>) {
    let Some(first) = raw.virtual_server.first() else {
        return;
    };
    let Some(dataplane) = dataplane else {
        ctx.error(
            &first.span(),
            "dataplane",
            "virtual servers need a [dataplane] section (at least interfaces = [\"eth0\"])",
        );
        return;
    };
    let max = dataplane.max_virtual_servers as usize;
    if let Some(extra) = raw.virtual_server.get(max) {
        ctx.error(
            &extra.span(),
            format!("virtual_server[{max}]"),
            format!(
                "{} virtual servers exceed dataplane.max_virtual_servers = {max}",
                raw.virtual_server.len()
            ),
        );
    }
    let mut total = 0;
    for (i, vs) in raw.virtual_server.iter().enumerate() {
        let backends = &vs.get_ref().backend;
        if total + backends.len() > MAX_BACKENDS {
            let j = MAX_BACKENDS - total;
            let span = backends.get(j).map_or(vs.span(), S::span);
            ctx.error(
                &span,
                format!("virtual_server[{i}].backend[{j}]"),
                format!("more than {MAX_BACKENDS} backends in all virtual servers"),
            );
            return;
        }
        total += backends.len();
    }
}

/// The span of a virtual server's `name` (else of its table).
fn name_span(raw: &RawConfig, i: usize) -> Range<usize> {
    raw.virtual_server.get(i).map_or(0..0, |vs| {
        vs.get_ref().name.as_ref().map_or(vs.span(), S::span)
    })
}

fn virtual_server_identity(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    virtual_servers: &[Option<VirtualServer>],
) {
    let mut names: HashMap<&str, Range<usize>> = HashMap::new();
    let mut listeners: HashMap<(IpAddr, u16, Protocol), Range<usize>> = HashMap::new();
    for (i, vs) in virtual_servers.iter().enumerate() {
        let Some(vs) = vs else { continue };
        let span = name_span(raw, i);
        if let Some(first) = names.insert(&vs.name, span.clone()) {
            let line = ctx.line(&first);
            ctx.error(
                &span,
                format!("virtual_server[{i}].name"),
                format!(
                    "{:?} is already the name of the virtual server on line {line}",
                    vs.name
                ),
            );
        }
        let address_span = raw.virtual_server.get(i).map_or(span, |r| {
            r.get_ref().address.as_ref().map_or(r.span(), S::span)
        });
        let key = (vs.address, vs.port, vs.protocol);
        if let Some(first) = listeners.insert(key, address_span.clone()) {
            let line = ctx.line(&first);
            let protocol = vs.protocol.as_str();
            ctx.error(
                &address_span,
                format!("virtual_server[{i}].address"),
                format!(
                    "{} port {} {protocol} is already the virtual server on line {line}",
                    vs.address, vs.port
                ),
            );
        }
    }
}

fn vrrp_identity(ctx: &mut Ctx<'_>, raw: &RawConfig, vrrp: &[Option<VrrpInstance>]) {
    let raw_instances = raw
        .vrrp
        .as_ref()
        .map_or(&[][..], |v| &v.get_ref().instance[..]);
    let span_of =
        |i: usize, pick: fn(&crate::config::raw::RawVrrpInstance) -> Option<Range<usize>>| {
            raw_instances
                .get(i)
                .map_or(0..0, |r| pick(r.get_ref()).unwrap_or(r.span()))
        };
    let mut names: HashMap<&str, Range<usize>> = HashMap::new();
    let mut routers: HashMap<(&str, u8, bool), Range<usize>> = HashMap::new();
    let mut addresses: HashMap<IpAddr, (usize, Range<usize>)> = HashMap::new();
    for (i, instance) in vrrp.iter().enumerate() {
        let Some(instance) = instance else { continue };
        let span = span_of(i, |r| r.name.as_ref().map(S::span));
        if let Some(first) = names.insert(&instance.name, span.clone()) {
            let line = ctx.line(&first);
            ctx.error(
                &span,
                format!("vrrp.instance[{i}].name"),
                format!(
                    "{:?} is already the name of the instance on line {line}",
                    instance.name
                ),
            );
        }
        // IPv4 and IPv6 routers of one VRID are distinct (RFC 5798 7.3:
        // different virtual MAC addresses).
        let family = instance.is_ipv6();
        let span = span_of(i, |r| r.vrid.as_ref().map(S::span));
        if let Some(first) =
            routers.insert((&instance.interface, instance.vrid, family), span.clone())
        {
            let line = ctx.line(&first);
            ctx.error(
                &span,
                format!("vrrp.instance[{i}].vrid"),
                format!(
                    "vrid {} on {} ({}) is already used by the instance on line {line}",
                    instance.vrid,
                    instance.interface,
                    if family { "IPv6" } else { "IPv4" }
                ),
            );
        }
        let raw_addresses = raw_instances
            .get(i)
            .and_then(|r| r.get_ref().virtual_addresses.as_ref())
            .map_or(&[][..], |list| &list.get_ref()[..]);
        for net in &instance.virtual_addresses {
            // The entry as written: "a.b.c.d/len" or a bare address.
            let written = raw_addresses.iter().enumerate().find(|(_, text)| {
                let text = text.get_ref();
                text.split('/')
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    == Some(net.addr())
            });
            let (j, span) = written.map_or((0, 0..0), |(j, text)| (j, text.span()));
            match addresses.get(&net.addr()) {
                Some((other, first)) if *other != i => {
                    let line = ctx.line(first);
                    ctx.error(
                        &span,
                        format!("vrrp.instance[{i}].virtual_addresses[{j}]"),
                        format!(
                            "{} is also in vrrp.instance[{other}] (line {line})",
                            net.addr()
                        ),
                    );
                }
                _ => {
                    addresses.insert(net.addr(), (i, span));
                }
            }
        }
    }
}

fn tracked_virtual_servers(ctx: &mut Ctx<'_>, raw: &RawConfig) {
    let names: HashSet<&str> = raw
        .virtual_server
        .iter()
        .filter_map(|vs| vs.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
        .collect();
    let raw_instances = raw
        .vrrp
        .as_ref()
        .map_or(&[][..], |v| &v.get_ref().instance[..]);
    for (i, instance) in raw_instances.iter().enumerate() {
        let Some(track) = &instance.get_ref().track else {
            continue;
        };
        for (j, entry) in track.get_ref().iter().enumerate() {
            let Some(name) = &entry.get_ref().virtual_server else {
                continue;
            };
            if !names.contains(name.get_ref().as_str()) {
                ctx.error(
                    &name.span(),
                    format!("vrrp.instance[{i}].track[{j}].virtual_server"),
                    format!("there is no virtual server named {:?}", name.get_ref()),
                );
            }
        }
    }
}

fn vips_without_vrrp(
    ctx: &mut Ctx<'_>,
    raw: &RawConfig,
    vrrp: &[Option<VrrpInstance>],
    virtual_servers: &[Option<VirtualServer>],
) {
    let held: HashSet<IpAddr> = vrrp
        .iter()
        .flatten()
        .flat_map(|instance| instance.virtual_addresses.iter().map(|net| net.addr()))
        .collect();
    let mut warned = HashSet::new();
    for (i, vs) in virtual_servers.iter().enumerate() {
        let Some(vs) = vs else { continue };
        if held.contains(&vs.address) || !warned.insert(vs.address) {
            continue;
        }
        let span = raw.virtual_server.get(i).map_or(0..0, |r| {
            r.get_ref().address.as_ref().map_or(r.span(), S::span)
        });
        ctx.warn(
            &span,
            format!("virtual_server[{i}].address"),
            format!(
                "{} is in no vrrp instance's virtual_addresses: this node will not \
                 take it over on failover, so it must reach the node some other way",
                vs.address
            ),
        );
    }
}

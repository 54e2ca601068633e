//! `[dataplane]`, `[metrics]` and `[admin]`.
use std::{collections::HashMap, net::SocketAddr, path::PathBuf, str::FromStr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::Ctx;
use crate::config::{
    model::{Dataplane, XdpMode, defaults},
    raw::{RawDataplane, RawListen, S},
};
use crate::maglev::is_prime;

/// Largest `max_virtual_servers`.
const MAX_VIRTUAL_SERVERS_LIMIT: u32 = 65_536;
/// Largest flow table: 2^28 flows take 4 GiB (IPv4) and 8 GiB (IPv6).
const MAX_FLOW_TABLE_SIZE: u32 = 1 << 28;

pub(super) fn dataplane(ctx: &mut Ctx<'_>, raw: &S<RawDataplane>) -> Dataplane {
    let span = raw.span();
    let raw = raw.get_ref();
    let field = |name: &str| format!("dataplane.{name}");

    let mut interfaces = Vec::new();
    if let Some(list) = ctx.required(&raw.interfaces, &span, field("interfaces")) {
        if list.get_ref().is_empty() {
            ctx.error(
                &list.span(),
                field("interfaces"),
                "needs at least one interface",
            );
        }
        let mut seen = HashMap::new();
        for (i, name) in list.get_ref().iter().enumerate() {
            let path = format!("dataplane.interfaces[{i}]");
            let Some(valid) = ctx.interface(name, &path) else {
                continue;
            };
            if let Some(first) = seen.insert(valid.clone(), name.span()) {
                let line = ctx.line(&first);
                ctx.error(
                    &name.span(),
                    &path,
                    format!("{valid:?} is listed twice (also on line {line})"),
                );
            }
            interfaces.push(valid);
        }
    }

    let xdp_mode = ctx.choice(
        &raw.xdp_mode,
        XdpMode::Auto,
        &[
            ("auto", XdpMode::Auto),
            ("driver", XdpMode::Driver),
            ("generic", XdpMode::Generic),
        ],
        field("xdp_mode"),
    );
    let flow_table_size = ctx.int_or(
        &raw.flow_table_size,
        defaults::FLOW_TABLE_SIZE,
        1,
        MAX_FLOW_TABLE_SIZE,
        field("flow_table_size"),
    );
    let max_virtual_servers = ctx.int_or(
        &raw.max_virtual_servers,
        defaults::MAX_VIRTUAL_SERVERS,
        1,
        MAX_VIRTUAL_SERVERS_LIMIT,
        field("max_virtual_servers"),
    );
    let maglev_table_size = maglev_table_size(ctx, raw, max_virtual_servers);

    let pin_path = match &raw.pin_path {
        Some(path) => ctx
            .absolute_path(path, field("pin_path"))
            .unwrap_or_else(|| PathBuf::from(defaults::PIN_PATH)),
        None => PathBuf::from(defaults::PIN_PATH),
    };
    let tunnel_source_v4 = prefix::<Ipv4Net>(
        ctx,
        &raw.tunnel_source_v4,
        defaults::TUNNEL_SOURCE_V4,
        defaults::TUNNEL_SOURCE_V4_PREFIX,
        &field("tunnel_source_v4"),
    );
    let tunnel_source_v6 = prefix::<Ipv6Net>(
        ctx,
        &raw.tunnel_source_v6,
        defaults::TUNNEL_SOURCE_V6,
        defaults::TUNNEL_SOURCE_V6_PREFIX,
        &field("tunnel_source_v6"),
    );

    Dataplane {
        interfaces,
        xdp_mode,
        flow_table_size,
        maglev_table_size,
        pin_path,
        max_virtual_servers,
        tunnel_source_v4,
        tunnel_source_v6,
    }
}

/// A prime whose rings (two per virtual server) fit one BPF array.
fn maglev_table_size(ctx: &mut Ctx<'_>, raw: &RawDataplane, max_virtual_servers: u32) -> u32 {
    let field = "dataplane.maglev_table_size";
    let Some(value) = &raw.maglev_table_size else {
        return defaults::MAGLEV_TABLE_SIZE;
    };
    let Some(size) = ctx.int(value, 3u32, u32::MAX, field) else {
        return defaults::MAGLEV_TABLE_SIZE;
    };
    if !is_prime(size) {
        let next = (size..=u32::MAX).find(|&n| is_prime(n));
        let hint = next.map_or(String::new(), |n| format!(" (the next prime is {n})"));
        ctx.error(&value.span(), field, format!("{size} is not a prime{hint}"));
        return defaults::MAGLEV_TABLE_SIZE;
    }
    let ring_slots = 2 * u64::from(max_virtual_servers) * u64::from(size);
    if ring_slots > u64::from(u32::MAX) {
        ctx.error(
            &value.span(),
            field,
            format!(
                "2 rings x {max_virtual_servers} max_virtual_servers x {size} slots = \
                 {ring_slots} exceeds the 2^32 entries of one BPF array"
            ),
        );
        return defaults::MAGLEV_TABLE_SIZE;
    }
    size
}

/// A network prefix of exactly `len` bits with no host bits set.
fn prefix<N>(ctx: &mut Ctx<'_>, value: &Option<S<String>>, default: N, len: u8, field: &str) -> N
where
    N: FromStr + Copy + PartialEq + std::fmt::Display + NetPrefix,
{
    let Some(value) = value else {
        return default;
    };
    let Ok(net) = value.get_ref().parse::<N>() else {
        ctx.error(
            &value.span(),
            field,
            format!("{:?} is not a prefix like \"{default}\"", value.get_ref()),
        );
        return default;
    };
    if net.len() != len {
        ctx.error(
            &value.span(),
            field,
            format!("must be a /{len}: the data plane fills the remaining bits with the flow hash"),
        );
        return default;
    }
    if net.trunc() != net {
        ctx.error(
            &value.span(),
            field,
            format!("{net} has host bits set; did you mean {}?", net.trunc()),
        );
        return default;
    }
    net
}

/// What [`prefix`] needs of [`Ipv4Net`] and [`Ipv6Net`].
trait NetPrefix: Sized {
    fn len(&self) -> u8;
    fn trunc(&self) -> Self;
}

impl NetPrefix for Ipv4Net {
    fn len(&self) -> u8 {
        self.prefix_len()
    }
    fn trunc(&self) -> Self {
        Ipv4Net::trunc(self)
    }
}

impl NetPrefix for Ipv6Net {
    fn len(&self) -> u8 {
        self.prefix_len()
    }
    fn trunc(&self) -> Self {
        Ipv6Net::trunc(self)
    }
}

/// `[metrics]` or `[admin]`: `listen`, an address and port.
pub(super) fn listen(
    ctx: &mut Ctx<'_>,
    raw: Option<&S<RawListen>>,
    section: &str,
    default: SocketAddr,
) -> SocketAddr {
    let Some(listen) = raw.and_then(|r| r.get_ref().listen.as_ref()) else {
        return default;
    };
    match listen.get_ref().parse() {
        Ok(address) => address,
        Err(_) => {
            ctx.error(
                &listen.span(),
                format!("{section}.listen"),
                format!(
                    "{:?} is not an address and port like \"{default}\" or \"[::1]:{}\"",
                    listen.get_ref(),
                    default.port()
                ),
            );
            default
        }
    }
}

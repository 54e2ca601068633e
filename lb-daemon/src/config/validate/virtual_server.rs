//! One `[[virtual_server]]` with its health check and backends.
use std::{collections::HashMap, fmt::Display, ops::Range, time::Duration};

use super::{Ctx, Element, Field};
use crate::config::{
    model::{
        Backend, Forwarding, HealthCheck, HealthCheckKind, HttpCheck, Protocol, Scheduler,
        VirtualServer, defaults,
    },
    raw::{RawBackend, RawHealthCheck, RawVirtualServer, S},
};
use crate::health::http::request_target;

pub(super) fn virtual_server(
    ctx: &mut Ctx<'_>,
    index: usize,
    raw: &S<RawVirtualServer>,
    maglev_table_size: u32,
) -> Option<VirtualServer> {
    let span = raw.span();
    let raw = raw.get_ref();
    let base = Element("virtual_server", index);
    let field = |name| Field(base, name);

    let name = ctx
        .required(&raw.name, &span, field("name"))
        .and_then(|n| ctx.name(n, field("name")));
    let address = ctx
        .required(&raw.address, &span, field("address"))
        .and_then(|a| ctx.unicast_ip(a, field("address")));
    let port = ctx.int_or(&raw.port, defaults::PORT, 0, u16::MAX, field("port"));
    let protocol = ctx.choice(
        &raw.protocol,
        Protocol::Tcp,
        &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
        field("protocol"),
    );
    let forwarding = ctx.choice(
        &raw.forwarding,
        Forwarding::Tunnel,
        &[("tunnel", Forwarding::Tunnel), ("dsr", Forwarding::Dsr)],
        field("forwarding"),
    );
    let scheduler = ctx.choice(
        &raw.scheduler,
        Scheduler::Maglev,
        &[("maglev", Scheduler::Maglev)],
        field("scheduler"),
    );
    let health_check = raw
        .health_check
        .as_ref()
        .map_or_else(HealthCheck::default, |hc| {
            health_check(ctx, hc, &field("health_check").to_string())
        });

    let mut backends: Vec<Backend> = Vec::new();
    let mut seen: HashMap<_, Range<usize>> = HashMap::new();
    for (i, raw_backend) in raw.backend.iter().enumerate() {
        let path = Element(field("backend"), i);
        let Some(backend) = backend(ctx, raw_backend, path) else {
            continue;
        };
        let address_span = raw_backend
            .get_ref()
            .address
            .as_ref()
            .map_or(raw_backend.span(), S::span);
        if let Some(vip) = address {
            if backend.address == vip {
                ctx.error(
                    &address_span,
                    Field(path, "address"),
                    "is the virtual server's own address",
                );
            }
            if forwarding == Forwarding::Dsr && backend.address.is_ipv4() != vip.is_ipv4() {
                ctx.error(
                    &address_span,
                    Field(path, "address"),
                    format!(
                        "forwarding = \"dsr\" needs backends of the VIP's family ({}); \
                         use forwarding = \"tunnel\" to mix families",
                        if vip.is_ipv4() { "IPv4" } else { "IPv6" }
                    ),
                );
            }
        }
        if let Some(first) = seen.insert(backend.address, address_span.clone()) {
            let line = ctx.line(&first);
            ctx.error(
                &address_span,
                Field(path, "address"),
                format!(
                    "backend {} is listed twice in this virtual server (also on line {line})",
                    backend.address
                ),
            );
        }
        let port_written = raw_backend.get_ref().port.is_some();
        if port == 0 && !port_written && health_check.kind.needs_port() {
            ctx.error(
                &raw_backend.span(),
                Field(path, "port"),
                "the virtual server has port 0 (all ports) and its health check needs a port: \
                 set port on this backend, or use health_check kind \"exec\" or \"none\"",
            );
        }
        backends.push(backend);
    }
    if raw.backend.len() >= maglev_table_size as usize {
        ctx.error(
            &span,
            field("backend"),
            format!(
                "{} backends need a maglev_table_size larger than {maglev_table_size}",
                raw.backend.len()
            ),
        );
    }
    if raw.backend.is_empty() {
        ctx.warn(
            &span,
            field("backend"),
            "no backends: new flows to this virtual server are dropped",
        );
    }

    Some(VirtualServer {
        name: name?,
        address: address?,
        port,
        protocol,
        forwarding,
        scheduler,
        health_check,
        backends,
    })
}

fn backend(ctx: &mut Ctx<'_>, raw: &S<RawBackend>, base: impl Display + Copy) -> Option<Backend> {
    let span = raw.span();
    let raw = raw.get_ref();
    let field = |name| Field(base, name);
    let address = ctx
        .required(&raw.address, &span, field("address"))
        .and_then(|a| ctx.unicast_ip(a, field("address")));
    let port = raw
        .port
        .as_ref()
        .and_then(|p| ctx.int(p, 1u16, u16::MAX, field("port")));
    let weight = ctx.int_or(
        &raw.weight,
        defaults::WEIGHT,
        0,
        defaults::WEIGHT_MAX,
        field("weight"),
    );
    Some(Backend {
        address: address?,
        port,
        weight,
    })
}

/// The kinds, and which of the kind-specific fields each accepts.
const KINDS: &[(&str, &[&str])] = &[
    ("tcp", &[]),
    ("http", &["path", "expect_status", "body_contains"]),
    (
        "https",
        &["path", "expect_status", "body_contains", "verify"],
    ),
    ("udp", &["payload", "expect"]),
    ("exec", &["command"]),
    ("none", &[]),
];

fn health_check(ctx: &mut Ctx<'_>, raw: &S<RawHealthCheck>, base: &str) -> HealthCheck {
    let span = raw.span();
    let raw = raw.get_ref();
    let field = |name: &str| format!("{base}.{name}");
    let kind_name = match &raw.kind {
        None => "tcp",
        Some(kind) => match KINDS.iter().find(|(name, _)| name == kind.get_ref()) {
            Some((name, _)) => name,
            None => {
                let names: Vec<_> = KINDS.iter().map(|(name, _)| format!("{name:?}")).collect();
                ctx.error(
                    &kind.span(),
                    field("kind"),
                    format!("{:?} is not one of {}", kind.get_ref(), names.join(", ")),
                );
                // The kind-specific fields cannot be judged without a kind.
                "none"
            }
        },
    };
    let kind_known = raw.kind.as_ref().is_none_or(|k| k.get_ref() == kind_name);
    if kind_known {
        reject_foreign_fields(ctx, raw, kind_name, base);
    }

    let kind = match kind_name {
        "http" => HealthCheckKind::Http(http(ctx, raw, base)),
        "https" => HealthCheckKind::Https {
            http: http(ctx, raw, base),
            verify: raw
                .verify
                .as_ref()
                .map_or(defaults::HTTPS_VERIFY, |v| *v.get_ref()),
        },
        "udp" => HealthCheckKind::Udp {
            payload: raw
                .payload
                .as_ref()
                .map_or_else(Vec::new, |p| p.get_ref().as_bytes().to_vec()),
            expect: raw.expect.as_ref().map(|e| e.get_ref().as_bytes().to_vec()),
        },
        "exec" => HealthCheckKind::Exec {
            command: command(ctx, raw, &span, base),
        },
        "none" => HealthCheckKind::None,
        _ => HealthCheckKind::Tcp,
    };

    let interval = positive_duration(
        ctx,
        &raw.interval,
        defaults::HEALTH_INTERVAL,
        &field("interval"),
    );
    let timeout = positive_duration(
        ctx,
        &raw.timeout,
        defaults::HEALTH_TIMEOUT,
        &field("timeout"),
    );
    if timeout > interval {
        let span = raw.timeout.as_ref().or(raw.interval.as_ref()).map(S::span);
        if let Some(span) = span {
            ctx.error(
                &span,
                field("timeout"),
                format!(
                    "timeout ({}) must not exceed interval ({})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
    }
    let count = defaults::HEALTH_COUNT_MAX;
    HealthCheck {
        kind,
        interval,
        timeout,
        rise: ctx.int_or(&raw.rise, defaults::HEALTH_RISE, 1, count, field("rise")),
        fall: ctx.int_or(&raw.fall, defaults::HEALTH_FALL, 1, count, field("fall")),
    }
}

/// Errors for the kind-specific fields that `kind` does not take.
fn reject_foreign_fields(ctx: &mut Ctx<'_>, raw: &RawHealthCheck, kind: &str, base: &str) {
    let present: [(&str, Option<Range<usize>>); 7] = [
        ("path", raw.path.as_ref().map(S::span)),
        ("expect_status", raw.expect_status.as_ref().map(S::span)),
        ("body_contains", raw.body_contains.as_ref().map(S::span)),
        ("verify", raw.verify.as_ref().map(S::span)),
        ("payload", raw.payload.as_ref().map(S::span)),
        ("expect", raw.expect.as_ref().map(S::span)),
        ("command", raw.command.as_ref().map(S::span)),
    ];
    let allowed = KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .map_or(&[][..], |(_, fields)| fields);
    for (name, span) in present {
        if let Some(span) = span
            && !allowed.contains(&name)
        {
            let owners: Vec<_> = KINDS
                .iter()
                .filter(|(_, fields)| fields.contains(&name))
                .map(|(kind, _)| *kind)
                .collect();
            ctx.error(
                &span,
                format!("{base}.{name}"),
                format!(
                    "belongs to kind {}, not to kind {kind:?}",
                    owners.join(" or ")
                ),
            );
        }
    }
}

fn http(ctx: &mut Ctx<'_>, raw: &RawHealthCheck, base: &str) -> HttpCheck {
    let path = match &raw.path {
        Some(path) => http_path(ctx, path, base),
        None => defaults::HTTP_PATH.to_owned(),
    };
    let mut expect_status = Vec::new();
    match &raw.expect_status {
        None => expect_status.push(defaults::HTTP_EXPECT_STATUS),
        Some(list) => {
            if list.get_ref().is_empty() {
                ctx.error(
                    &list.span(),
                    format!("{base}.expect_status"),
                    "needs at least one status",
                );
            }
            for (i, status) in list.get_ref().iter().enumerate() {
                let path = format!("{base}.expect_status[{i}]");
                if let Some(status) = ctx.int(status, 100u16, 599, &path) {
                    expect_status.push(status);
                }
            }
        }
    }
    HttpCheck {
        path,
        expect_status,
        body_contains: raw.body_contains.as_ref().map(|b| b.get_ref().clone()),
    }
}

/// The path an http or https check asks for: it starts with '/' and
/// makes a request target (see [`request_target`]: every byte that a
/// target may not hold is percent-encoded, so only its length can be
/// wrong). The default in its place if it is invalid.
fn http_path(ctx: &mut Ctx<'_>, path: &S<String>, base: &str) -> String {
    let text = path.get_ref();
    let problem = if !text.starts_with('/') {
        Some(format!("{text:?} must start with '/'"))
    } else {
        request_target(text)
            .err()
            .map(|error| format!("makes no valid request target once percent-encoded: {error}"))
    };
    match problem {
        Some(problem) => {
            ctx.error(&path.span(), format!("{base}.path"), problem);
            defaults::HTTP_PATH.to_owned()
        }
        None => text.clone(),
    }
}

/// `command = ["/path/to/program", "arg", ...]`: run without a shell.
fn command(
    ctx: &mut Ctx<'_>,
    raw: &RawHealthCheck,
    table: &Range<usize>,
    base: &str,
) -> Vec<String> {
    let field = format!("{base}.command");
    let Some(list) = &raw.command else {
        ctx.error(
            table,
            &field,
            "kind \"exec\" needs command = [\"/path/to/program\", ...]",
        );
        return Vec::new();
    };
    match list.get_ref().first() {
        None => ctx.error(&list.span(), &field, "needs at least the program"),
        Some(program) => {
            ctx.absolute_path(program, format!("{field}[0]"));
        }
    }
    list.get_ref()
        .iter()
        .map(|arg| arg.get_ref().clone())
        .collect()
}

fn positive_duration(
    ctx: &mut Ctx<'_>,
    value: &Option<S<String>>,
    default: Duration,
    field: &str,
) -> Duration {
    let duration = ctx.duration_or(value, default, field);
    if duration.is_zero() {
        if let Some(value) = value {
            ctx.error(&value.span(), field, "must be more than 0s");
        }
        return default;
    }
    duration
}

//! `lb-daemon status`: fetches `GET /api/v1/status` from a running daemon
//! and prints it as tables (or, with `--json`, as JSON).
use std::{fmt::Write as _, net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    admin::client,
    status::{CheckCounts, Health, Status, VirtualServerStatus, VrrpStatus},
};

/// Bound on the whole request, connect included.
const TIMEOUT: Duration = Duration::from_secs(5);

pub fn status(admin: SocketAddr, json: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let status = runtime.block_on(client::fetch_status(admin, TIMEOUT))?;
    if json {
        let text = serde_json::to_string_pretty(&status).context("encoding the status")?;
        println!("{text}");
    } else {
        print!("{}", render(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as the tables `lb-daemon status` prints: a header line,
/// the virtual servers each followed by its backends, then the VRRP
/// instances.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let dataplane = match &status.dataplane {
        None => "no data plane (VRRP only)".to_owned(),
        Some(dataplane) if dataplane.interfaces.is_empty() => "data plane: no interface".to_owned(),
        Some(dataplane) => {
            let interfaces: Vec<String> = dataplane
                .interfaces
                .iter()
                .map(|i| match i.program_id {
                    Some(id) => format!("{} ({}, program {id})", i.name, i.mode),
                    None => format!("{} ({})", i.name, i.mode),
                })
                .collect();
            format!("XDP on {}", interfaces.join(", "))
        }
    };
    let _ = writeln!(out, "lb-daemon {}  {dataplane}", status.version);

    out.push('\n');
    if status.virtual_servers.is_empty() {
        out.push_str("No virtual servers.\n");
    }
    for vs in &status.virtual_servers {
        let mut table = Table::new(&[
            "VIRTUAL SERVER",
            "VIP",
            "FORWARDING",
            "PACKETS",
            "FLOWS",
            "BACKENDS",
        ]);
        table.row(vec![
            vs.name.clone(),
            vip(vs),
            vs.forwarding.clone(),
            vs.packets.to_string(),
            vs.flows.to_string(),
            format!("{}/{} active", vs.active_backends(), vs.backends.len()),
        ]);
        out.push_str(&table.render(""));
        let mut backends = Table::new(&[
            "BACKEND",
            "HEALTH",
            "WEIGHT",
            "DRAINED",
            "PACKETS",
            "CHECKS OK/FAIL/TIMEOUT",
        ]);
        for backend in &vs.backends {
            backends.row(vec![
                backend.address.to_string(),
                match backend.health {
                    Health::Up => "up",
                    Health::Down => "DOWN",
                }
                .to_owned(),
                backend.weight.to_string(),
                if backend.drained { "yes" } else { "no" }.to_owned(),
                backend.packets.to_string(),
                checks(&backend.checks),
            ]);
        }
        out.push_str(&backends.render("  "));
        out.push('\n');
    }

    if status.vrrp.is_empty() {
        out.push_str("No VRRP instances.\n");
        return out;
    }
    let mut table = Table::new(&[
        "VRRP INSTANCE",
        "INTERFACE",
        "VRID",
        "STATE",
        "PRIORITY",
        "MASTER",
    ]);
    for instance in &status.vrrp {
        table.row(vrrp_row(instance));
    }
    out.push_str(&table.render(""));
    out
}

/// `192.0.2.10:80/tcp`, `[2001:db8::1]:443/tcp`, `192.0.2.10:*/udp` (all
/// ports).
fn vip(vs: &VirtualServerStatus) -> String {
    let port = match vs.port {
        0 => "*".to_owned(),
        port => port.to_string(),
    };
    match vs.address {
        std::net::IpAddr::V4(address) => format!("{address}:{port}/{}", vs.protocol),
        std::net::IpAddr::V6(address) => format!("[{address}]:{port}/{}", vs.protocol),
    }
}

/// A backend's checks by result, `-` if it has none (not checked).
fn checks(counts: &CheckCounts) -> String {
    if *counts == CheckCounts::default() {
        return "-".to_owned();
    }
    format!("{}/{}/{}", counts.success, counts.failure, counts.timeout)
}

fn vrrp_row(instance: &VrrpStatus) -> Vec<String> {
    let priority = if instance.priority == instance.effective_priority {
        instance.priority.to_string()
    } else {
        format!("{}/{}", instance.priority, instance.effective_priority)
    };
    vec![
        instance.name.clone(),
        instance.interface.clone(),
        instance.vrid.to_string(),
        instance.state.as_str().to_owned(),
        priority,
        instance
            .master
            .map_or_else(|| "-".to_owned(), |master| master.to_string()),
    ]
}

/// Left-aligned text columns separated by two spaces.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len());
        self.rows.push(row);
    }

    /// The header and the rows, each line starting with `indent`.
    fn render(&self, indent: &str) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = indent.to_owned();
            for (cell, width) in row.iter().zip(&widths) {
                let _ = write!(line, "{cell:<width$}  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_example_status() {
        let expected = "\
lb-daemon 0.1.0  XDP on eth0 (driver, program 42)

VIRTUAL SERVER  VIP                FORWARDING  PACKETS  FLOWS  BACKENDS
web             192.0.2.10:80/tcp  tunnel      1500     30     1/3 active
  BACKEND    HEALTH  WEIGHT  DRAINED  PACKETS  CHECKS OK/FAIL/TIMEOUT
  10.0.0.11  up      100     no       1000     12/0/0
  10.0.0.12  up      50      yes      500      -
  10.0.0.13  DOWN    100     no       0        4/3/2

VIRTUAL SERVER  VIP                   FORWARDING  PACKETS  FLOWS  BACKENDS
dns6            [2001:db8::53]:*/udp  dsr         7        2      1/1 active
  BACKEND        HEALTH  WEIGHT  DRAINED  PACKETS  CHECKS OK/FAIL/TIMEOUT
  2001:db8:1::1  up      1       no       7        -

VRRP INSTANCE  INTERFACE  VRID  STATE   PRIORITY  MASTER
VI_1           eth0       51    master  150/90    10.0.0.2
VI_6           eth1       52    backup  100       -
";
        let mut status = Status::example();
        status.version = "0.1.0".to_owned();
        let rendered = render(&status);
        assert_eq!(rendered, expected, "\n{rendered}");
    }

    #[test]
    fn renders_a_pure_vrrp_daemon() {
        let status = Status {
            version: "9.9.9".to_owned(),
            dataplane: None,
            virtual_servers: Vec::new(),
            vrrp: Vec::new(),
        };
        assert_eq!(
            render(&status),
            "lb-daemon 9.9.9  no data plane (VRRP only)\n\nNo virtual servers.\nNo VRRP instances.\n"
        );
    }
}

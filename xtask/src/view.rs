//! The live view of `cargo xtask run`: a pure function from a
//! [`Snapshot`] (what the client counted, what the daemons report) to the
//! lines shown, refreshed every second.
use std::{fmt::Write as _, time::Duration};

/// Everything one frame shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `lblab: VIP 192.0.2.100:80, tunnel, tcp health checks`.
    pub title: String,
    pub elapsed: Duration,
    pub limit: Duration,
    /// New connections per second the client aims at.
    pub target_rate: u32,
    pub backends: Vec<BackendRow>,
    pub balancers: Vec<BalancerRow>,
    /// Failed requests (new connections and sessions), and the latest error.
    pub errors: u64,
    pub last_error: Option<String>,
    pub sessions_open: usize,
    pub sessions_total: usize,
    /// Kept-alive connections that broke (each is reopened).
    pub sessions_broken: u64,
    /// The backend the keys act on (index into `backends`).
    pub selected: usize,
    /// Latest actions and what they did, oldest first.
    pub events: Vec<String>,
    /// Whether keys work (a terminal) or commands come on stdin.
    pub interactive: bool,
}

/// One backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendRow {
    pub name: String,
    pub address: String,
    /// Answers the client got from it (new connections and sessions).
    pub requests: u64,
    pub requests_per_second: f64,
    /// Packets the balancers sent it (summed over both).
    pub packets: Option<u64>,
    pub packets_per_second: Option<f64>,
    /// `up`/`down` as the daemons report it; `None` while unknown.
    pub health: Option<String>,
    pub weight: Option<u32>,
    pub drained: bool,
    /// Whether its HTTP server runs.
    pub serving: bool,
    /// Kept-alive sessions currently on it.
    pub sessions: usize,
}

/// One balancer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BalancerRow {
    pub name: String,
    /// Whether its lb-daemon process runs.
    pub running: bool,
    /// VRRP state, `None` when the admin API did not answer.
    pub vrrp: Option<String>,
    pub priority: Option<u8>,
    /// Packets to the virtual server it forwarded.
    pub packets: Option<u64>,
    /// Why the admin API gave nothing.
    pub problem: Option<String>,
}

/// The frame: one string per line, no line longer than 100 columns.
pub fn render(snapshot: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "{}   {} / {}",
        snapshot.title,
        clock(snapshot.elapsed),
        clock(snapshot.limit)
    ));
    lines.push(String::new());
    lines.push(format!(
        "  {:<7} {:<12} {:>9} {:>7} {:>10} {:>8}  {:<6} {:>6}  {}",
        "backend", "address", "requests", "req/s", "packets", "pkt/s", "health", "weight", "notes"
    ));
    let mut requests = 0;
    let mut requests_rate = 0.0;
    let mut packets = None::<u64>;
    let mut packets_rate = None::<f64>;
    for (index, backend) in snapshot.backends.iter().enumerate() {
        requests += backend.requests;
        requests_rate += backend.requests_per_second;
        if let Some(p) = backend.packets {
            packets = Some(packets.unwrap_or(0) + p);
        }
        if let Some(r) = backend.packets_per_second {
            packets_rate = Some(packets_rate.unwrap_or(0.0) + r);
        }
        let mut notes = Vec::new();
        if !backend.serving {
            notes.push("server killed".to_owned());
        }
        if backend.drained {
            notes.push("drained".to_owned());
        }
        if backend.sessions > 0 {
            notes.push(format!("{} sessions", backend.sessions));
        }
        lines.push(format!(
            "{} {:<7} {:<12} {:>9} {:>7.1} {:>10} {:>8}  {:<6} {:>6}  {}",
            if index == snapshot.selected { ">" } else { " " },
            backend.name,
            backend.address,
            backend.requests,
            backend.requests_per_second,
            optional(backend.packets),
            optional_rate(backend.packets_per_second),
            backend.health.as_deref().unwrap_or("?"),
            optional(backend.weight),
            notes.join(", ")
        ));
    }
    lines.push(format!(
        "  {:<7} {:<12} {:>9} {:>7.1} {:>10} {:>8}",
        "total",
        "",
        requests,
        requests_rate,
        optional(packets),
        optional_rate(packets_rate)
    ));
    lines.push(String::new());
    lines.push(format!(
        "  client: {} new connections/s; kept-alive sessions {}/{} open, {} broken",
        snapshot.target_rate,
        snapshot.sessions_open,
        snapshot.sessions_total,
        snapshot.sessions_broken,
    ));
    lines.push(format!(
        "  failed requests: {}{}",
        snapshot.errors,
        snapshot
            .last_error
            .as_deref()
            .map(|e| format!(" (last: {})", shorten(e, 70)))
            .unwrap_or_default()
    ));
    lines.push(String::new());
    lines.push(format!(
        "  {:<8} {:<8} {:<10} {:>8} {:>10}",
        "balancer", "daemon", "vrrp", "priority", "packets"
    ));
    for balancer in &snapshot.balancers {
        let mut line = format!(
            "  {:<8} {:<8} {:<10} {:>8} {:>10}",
            balancer.name,
            if balancer.running {
                "running"
            } else {
                "stopped"
            },
            balancer.vrrp.as_deref().unwrap_or("-"),
            optional(balancer.priority),
            optional(balancer.packets)
        );
        if let Some(problem) = &balancer.problem {
            let _ = write!(line, "  ({})", shorten(problem, 40));
        }
        lines.push(line);
    }
    lines.push(String::new());
    let how = if snapshot.interactive {
        "keys"
    } else {
        "commands (a letter and Enter on stdin)"
    };
    lines.push(format!(
        "  {how}: 1-9 select backend  k kill/restart its server  d drain/undrain it"
    ));
    lines.push(
        "        m stop the master (SIGTERM)  x kill -9 the master  s start stopped balancers  q quit"
            .to_owned(),
    );
    if !snapshot.events.is_empty() {
        lines.push(String::new());
        for event in &snapshot.events {
            lines.push(format!("  {event}"));
        }
    }
    for line in &mut lines {
        line.truncate(line.trim_end().len());
    }
    lines
}

/// `mm:ss`.
pub fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    format!("{:02}:{:02}", seconds / 60, seconds % 60)
}

fn optional(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn optional_rate(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            title: "lblab: VIP 192.0.2.100:80".to_owned(),
            elapsed: Duration::from_secs(75),
            limit: Duration::from_secs(600),
            target_rate: 20,
            backends: (1..=3)
                .map(|n| BackendRow {
                    name: format!("be-{n}"),
                    address: format!("192.0.2.1{n}"),
                    requests: 100 * n,
                    requests_per_second: 6.5,
                    packets: Some(1000 * n),
                    packets_per_second: Some(70.0),
                    health: Some("up".to_owned()),
                    weight: Some(100),
                    drained: false,
                    serving: true,
                    sessions: 0,
                })
                .collect(),
            balancers: vec![
                BalancerRow {
                    name: "lb-a".to_owned(),
                    running: true,
                    vrrp: Some("master".to_owned()),
                    priority: Some(150),
                    packets: Some(6000),
                    problem: None,
                },
                BalancerRow {
                    name: "lb-b".to_owned(),
                    running: false,
                    problem: Some("connection refused".to_owned()),
                    ..BalancerRow::default()
                },
            ],
            errors: 2,
            last_error: Some("connecting to 192.0.2.100:80: refused\nmore".to_owned()),
            sessions_open: 7,
            sessions_total: 8,
            sessions_broken: 1,
            selected: 1,
            events: vec!["00:30 killed the server of be-2".to_owned()],
            interactive: true,
        }
    }

    #[test]
    fn shows_counters_totals_and_states() {
        let lines = render(&snapshot());
        let text = lines.join("\n");
        assert!(lines[0].ends_with("01:15 / 10:00"), "{}", lines[0]);
        let be2 = lines.iter().find(|l| l.contains("be-2")).unwrap();
        assert!(
            be2.starts_with('>'),
            "the selected backend is marked: {be2}"
        );
        assert!(be2.contains(" 200 ") && be2.contains(" 2000 "), "{be2}");
        let total = lines.iter().find(|l| l.contains("total")).unwrap();
        assert!(
            total.contains(" 600 ") && total.contains("19.5") && total.contains("6000"),
            "{total}"
        );
        let lb_a = lines.iter().find(|l| l.contains("lb-a")).unwrap();
        assert!(lb_a.contains("running") && lb_a.contains("master") && lb_a.contains("150"));
        let lb_b = lines.iter().find(|l| l.contains("lb-b")).unwrap();
        assert!(lb_b.contains("stopped") && lb_b.contains("(connection refused)"));
        assert!(
            text.contains("sessions 7/8 open, 1 broken\n  failed requests: 2 (last: connecting")
        );
        assert!(!text.contains("more"), "only the first line of an error");
        assert!(text.ends_with("00:30 killed the server of be-2"));
        assert!(lines.iter().all(|l| l.chars().count() <= 100), "{text}");
    }

    #[test]
    fn unknown_daemon_figures_show_as_dashes_and_notes_add_up() {
        let mut snapshot = snapshot();
        for backend in &mut snapshot.backends {
            backend.packets = None;
            backend.packets_per_second = None;
            backend.health = None;
            backend.weight = None;
        }
        snapshot.backends[0].serving = false;
        snapshot.backends[0].drained = true;
        snapshot.backends[0].sessions = 3;
        snapshot.interactive = false;
        let lines = render(&snapshot);
        let be1 = lines.iter().find(|l| l.contains("be-1")).unwrap();
        assert!(be1.contains(" ?  "), "{be1}");
        assert!(be1.ends_with("server killed, drained, 3 sessions"), "{be1}");
        let total = lines.iter().find(|l| l.contains("total")).unwrap();
        assert!(total.ends_with("-        -"), "{total}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("commands (a letter and Enter"))
        );
    }

    #[test]
    fn long_errors_are_shortened() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
        assert_eq!(clock(Duration::from_secs(3599)), "59:59");
    }
}

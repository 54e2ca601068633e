//! `cargo xtask run`: set up, build, bring the lab up, drive client
//! traffic to the VIP and show a live view until Ctrl-C, `q` or the time
//! limit; then remove the lab. Keys (or, without a terminal, commands on
//! stdin) stop the master balancer, kill a backend's server or drain it.
//!
//! ```text
//!   main loop ──every second──▶ snapshot (client counts + admin API of
//!      │                          lb-a/lb-b) ──view::render──▶ terminal
//!      └── keys / stdin lines ──▶ actions (signals by PID, admin API)
//!   client traffic: HttpLoad (new connections at a fixed rate)
//!                   + kept-alive sessions (threads in the client's namespace)
//! ```
use std::{
    collections::{BTreeMap, HashMap},
    io::{BufRead as _, IsTerminal as _, Write as _},
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use crossterm::{
    cursor,
    event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    terminal::{self, ClearType},
};
use lb_lab::{HttpLoad, HttpLoadOptions, HttpSession, Netns, VIRTUAL_SERVER, WEB_PORT};

use crate::{
    RunArgs, admin,
    lab::{self, Lab},
    view::{self, BackendRow, BalancerRow, Snapshot},
};

/// How often the view is refreshed (in a terminal).
const REFRESH: Duration = Duration::from_secs(1);
/// Without a terminal, a frame is printed this often (and after commands).
const PRINT_EVERY: Duration = Duration::from_secs(5);
/// Pause between two requests of a kept-alive session.
const SESSION_PAUSE: Duration = Duration::from_millis(250);
/// Longest a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Events kept in the view.
const EVENTS_SHOWN: usize = 6;

/// Set by SIGINT/SIGTERM (outside raw mode) to end the run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn require_root(what: &str) -> Result<()> {
    if !crate::setup::is_root() {
        bail!("{what} creates network namespaces and loads BPF programs: run it as root");
    }
    Ok(())
}

/// `cargo build --release -p lb-daemon`; returns the binary's path.
pub fn build_lb_daemon() -> Result<PathBuf> {
    println!("run: cargo build --release -p lb-daemon");
    let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["build", "--release", "--package", "lb-daemon"])
        .status()
        .context("cargo build")?
        .success();
    if !ok {
        bail!("building lb-daemon failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask lives in the workspace")
                .join("target")
        },
        PathBuf::from,
    );
    Ok(target.join("release").join("lb-daemon"))
}

pub fn run(args: &RunArgs) -> Result<()> {
    require_root("cargo xtask run")?;
    crate::setup::run()?;
    let binary = match &args.lb_daemon {
        Some(path) => path.clone(),
        None => build_lb_daemon()?,
    };
    if let Some(config) = &args.config {
        // One daemon on the real host, in the foreground.
        println!(
            "run: {} run --config {}",
            binary.display(),
            config.display()
        );
        let status = Command::new(&binary)
            .args(["run", "--config"])
            .arg(config)
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        if !status.success() {
            bail!("lb-daemon {status}");
        }
        return Ok(());
    }
    install_signal_handlers();
    println!("run: bringing the lab {} up", args.lab.prefix);
    let lab = Lab::up(&args.lab.options(binary))?;
    // Removes the lab however `live` ends, a panic included.
    let _teardown = Teardown(lab.options.prefix.clone());
    live(lab, args)
}

/// `lab down` on drop.
struct Teardown(String);

impl Drop for Teardown {
    fn drop(&mut self) {
        println!("run: removing the lab");
        match lab::down(&self.0) {
            Ok(report) => print!("{report}"),
            Err(error) => eprintln!(
                "run: removing the lab failed: {error:#}\n(`cargo xtask lab down --prefix {}` retries)",
                self.0
            ),
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Select(usize),
    KillServer,
    Drain,
    StopMaster,
    KillMaster,
    StartBalancers,
    Quit,
}

impl Action {
    fn from_char(c: char) -> Option<Action> {
        Some(match c {
            '1'..='9' => Action::Select(c as usize - '1' as usize),
            'k' => Action::KillServer,
            'd' => Action::Drain,
            'm' => Action::StopMaster,
            'x' => Action::KillMaster,
            's' => Action::StartBalancers,
            'q' => Action::Quit,
            _ => return None,
        })
    }
}

/// Raw mode while the view runs; restored on drop, also on error.
struct RawTerminal;

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        terminal::enable_raw_mode().context("raw terminal mode")?;
        let mut out = std::io::stdout();
        crossterm::execute!(out, cursor::Hide, terminal::Clear(ClearType::All))?;
        Ok(RawTerminal)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

/// The run proper, with the lab up.
fn live(mut lab: Lab, args: &RunArgs) -> Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let client = Netns::existing(&lab.client_ns)?;
    let traffic = Traffic::start(&client, &lab, args)?;
    let mut state = ViewState::new(&lab, args, interactive);
    let commands = if interactive {
        None
    } else {
        Some(stdin_commands())
    };
    let raw = if interactive {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let started = Instant::now();
    let mut next_frame = started;
    let mut last_print = None::<Instant>;
    let mut quit = false;
    while !quit && !INTERRUPTED.load(Ordering::SeqCst) && started.elapsed() < args.duration {
        let wait = next_frame.saturating_duration_since(Instant::now());
        let mut actions = Vec::new();
        match &commands {
            None => {
                if event::poll(wait)?
                    && let Event::Key(key) = event::read()?
                    && key.kind == KeyEventKind::Press
                {
                    match key.code {
                        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                            actions.push(Action::Quit);
                        }
                        KeyCode::Char(c) => actions.extend(Action::from_char(c)),
                        KeyCode::Esc => actions.push(Action::Quit),
                        _ => {}
                    }
                }
            }
            Some(receiver) => match receiver.recv_timeout(wait) {
                Ok(line) => actions.extend(line.chars().filter_map(Action::from_char)),
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                }
            },
        }
        let acted = !actions.is_empty();
        for action in actions {
            if action == Action::Quit {
                quit = true;
            } else {
                state.act(&mut lab, action, started.elapsed());
            }
        }
        if Instant::now() >= next_frame || acted {
            let snapshot = state.snapshot(&mut lab, &traffic, started.elapsed());
            let lines = view::render(&snapshot);
            if interactive {
                draw(&lines)?;
            } else if acted || last_print.is_none_or(|t: Instant| t.elapsed() >= PRINT_EVERY) {
                println!("{}\n", lines.join("\n"));
                last_print = Some(Instant::now());
            }
            next_frame = Instant::now() + REFRESH;
        }
    }
    let snapshot = state.snapshot(&mut lab, &traffic, started.elapsed());
    traffic.stop();
    drop(raw);
    if interactive {
        let _ = crossterm::execute!(std::io::stdout(), terminal::Clear(ClearType::All));
    }
    let why = if quit || INTERRUPTED.load(Ordering::SeqCst) {
        "stopped"
    } else {
        "time limit reached"
    };
    println!(
        "{}\n\nrun: {why} after {}",
        view::render(&snapshot).join("\n"),
        view::clock(started.elapsed())
    );
    Ok(())
}

fn draw(lines: &[String]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    crossterm::queue!(out, cursor::MoveTo(0, 0))?;
    for line in lines {
        crossterm::queue!(out, terminal::Clear(ClearType::CurrentLine))?;
        // Raw mode: a newline does not return the carriage.
        write!(out, "{line}\r\n")?;
    }
    crossterm::queue!(out, terminal::Clear(ClearType::FromCursorDown))?;
    out.flush()?;
    Ok(())
}

/// Lines typed on stdin, from a thread that ends with stdin.
fn stdin_commands() -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// What the view remembers between frames.
struct ViewState {
    title: String,
    limit: Duration,
    rate: u32,
    interactive: bool,
    selected: usize,
    drained: Vec<bool>,
    events: Vec<String>,
    /// Last packets each balancer reported per backend address (a stopped
    /// daemon's figures stay counted).
    packets: HashMap<(String, String), u64>,
    /// Last packets each balancer reported for the virtual server.
    balancer_packets: HashMap<String, u64>,
    previous: Option<(Instant, Vec<u64>, Vec<Option<u64>>)>,
    /// Requests and packets per second of each backend, last measured.
    rates: Vec<(f64, Option<f64>)>,
}

impl ViewState {
    fn new(lab: &Lab, args: &RunArgs, interactive: bool) -> ViewState {
        ViewState {
            title: format!(
                "lb lab {}: VIP {}:{WEB_PORT}, {}, {} health checks{}",
                lab.options.prefix,
                lab.vip,
                lab.options.forwarding.as_str(),
                lab.options.health.as_str(),
                if lab.options.no_vrrp { ", no VRRP" } else { "" }
            ),
            limit: args.duration,
            rate: args.rate,
            interactive,
            selected: 0,
            drained: vec![false; lab.backends.len()],
            events: Vec::new(),
            packets: HashMap::new(),
            balancer_packets: HashMap::new(),
            previous: None,
            rates: Vec::new(),
        }
    }

    fn event(&mut self, at: Duration, text: String) {
        self.events.push(format!("{} {text}", view::clock(at)));
        let excess = self.events.len().saturating_sub(EVENTS_SHOWN);
        self.events.drain(..excess);
    }

    fn act(&mut self, lab: &mut Lab, action: Action, at: Duration) {
        let _ = lab.reap();
        let result = match action {
            Action::Select(index) => {
                if index < lab.backends.len() {
                    self.selected = index;
                }
                return;
            }
            Action::KillServer => self.toggle_server(lab),
            Action::Drain => self.toggle_drain(lab),
            Action::StopMaster => stop_master(lab, libc::SIGTERM, "SIGTERM"),
            Action::KillMaster => stop_master(lab, libc::SIGKILL, "kill -9"),
            Action::StartBalancers => start_balancers(lab),
            Action::Quit => return,
        };
        match result {
            Ok(text) => self.event(at, text),
            Err(error) => self.event(at, format!("failed: {error:#}")),
        }
    }

    fn toggle_server(&mut self, lab: &mut Lab) -> Result<String> {
        let name = lab.backends[self.selected].0.clone();
        match lab.record(&name, "http").filter(|r| r.alive()) {
            Some(record) => {
                let pid = record.pid;
                record.signal(libc::SIGKILL);
                Ok(format!("killed the HTTP server of {name} (kill -9 {pid})"))
            }
            None => {
                lab.start_http(&name)?;
                Ok(format!("restarted the HTTP server of {name}"))
            }
        }
    }

    fn toggle_drain(&mut self, lab: &mut Lab) -> Result<String> {
        let (name, _, address) = lab.backends[self.selected].clone();
        let drain = !self.drained[self.selected];
        let mut done = Vec::new();
        for (balancer, ns) in &lab.balancers {
            if !lab
                .record(balancer, "daemon")
                .is_some_and(lab::Record::alive)
            {
                continue;
            }
            let ns = Netns::existing(ns)?;
            admin::drain(&ns, VIRTUAL_SERVER, &address.to_string(), drain)
                .with_context(|| format!("on {balancer}"))?;
            done.push(balancer.clone());
        }
        self.drained[self.selected] = drain;
        Ok(format!(
            "{} {name} on {}",
            if drain { "drained" } else { "undrained" },
            done.join(", ")
        ))
    }

    fn snapshot(&mut self, lab: &mut Lab, traffic: &Traffic, elapsed: Duration) -> Snapshot {
        let _ = lab.reap();
        let counts = traffic.counts();
        let mut balancers = Vec::new();
        let mut statuses = Vec::new();
        for (name, ns) in &lab.balancers {
            let running = lab.record(name, "daemon").is_some_and(lab::Record::alive);
            let mut row = BalancerRow {
                name: name.clone(),
                running,
                ..BalancerRow::default()
            };
            if running {
                match Netns::existing(ns).and_then(|ns| admin::status(&ns)) {
                    Ok(status) => {
                        let vs = status
                            .virtual_servers
                            .iter()
                            .find(|vs| vs.name == VIRTUAL_SERVER);
                        if let Some(vs) = vs {
                            self.balancer_packets.insert(name.clone(), vs.packets);
                            for backend in &vs.backends {
                                self.packets.insert(
                                    (name.clone(), backend.address.clone()),
                                    backend.packets,
                                );
                            }
                        }
                        if let Some(vrrp) = status.vrrp.first() {
                            row.vrrp = Some(vrrp.state.clone());
                            row.priority = Some(vrrp.effective_priority);
                        }
                        statuses.push(status);
                    }
                    Err(error) => {
                        row.problem = Some(format!("admin API: {}", error.root_cause()));
                    }
                }
            }
            row.packets = self.balancer_packets.get(name).copied();
            balancers.push(row);
        }
        // Health and weight as the master (or else any daemon) sees them.
        let master = statuses
            .iter()
            .find(|s| s.vrrp.first().is_some_and(|v| v.state == "master"))
            .or(statuses.first());
        let now = Instant::now();
        let mut backends = Vec::new();
        for (index, (name, _, address)) in lab.backends.iter().enumerate() {
            let address = address.to_string();
            let reported = master.and_then(|status| {
                status
                    .virtual_servers
                    .iter()
                    .find(|vs| vs.name == VIRTUAL_SERVER)?
                    .backends
                    .iter()
                    .find(|b| b.address == address)
                    .cloned()
            });
            let packets = lab
                .balancers
                .iter()
                .filter_map(|(balancer, _)| self.packets.get(&(balancer.clone(), address.clone())))
                .copied()
                .reduce(|a, b| a + b);
            backends.push(BackendRow {
                name: name.clone(),
                address,
                requests: counts.answers.get(name).copied().unwrap_or(0),
                requests_per_second: 0.0,
                packets,
                packets_per_second: None,
                health: reported.as_ref().map(|b| b.health.clone()),
                weight: reported.as_ref().map(|b| b.weight),
                drained: reported.as_ref().map_or(self.drained[index], |b| b.drained),
                serving: lab.record(name, "http").is_some_and(lab::Record::alive),
                sessions: counts.sessions_on.iter().filter(|s| *s == name).count(),
            });
        }
        // Rates over at least half a second (a frame right after a key
        // would show noise); a shorter interval keeps the last rates.
        let window = self
            .previous
            .as_ref()
            .map(|(then, ..)| now.duration_since(*then).as_secs_f64());
        if let (Some(seconds), Some((_, requests, packets))) = (window, &self.previous)
            && seconds >= 0.5
        {
            self.rates = backends
                .iter()
                .enumerate()
                .map(|(index, row)| {
                    let requests = row.requests.saturating_sub(requests[index]) as f64 / seconds;
                    let packets = match (row.packets, packets[index]) {
                        (Some(now), Some(before)) => {
                            Some(now.saturating_sub(before) as f64 / seconds)
                        }
                        _ => None,
                    };
                    (requests, packets)
                })
                .collect();
        }
        if window.is_none_or(|seconds| seconds >= 0.5) {
            self.previous = Some((
                now,
                backends.iter().map(|b| b.requests).collect(),
                backends.iter().map(|b| b.packets).collect(),
            ));
        }
        for (row, (requests, packets)) in backends.iter_mut().zip(&self.rates) {
            row.requests_per_second = *requests;
            row.packets_per_second = *packets;
        }
        Snapshot {
            title: self.title.clone(),
            elapsed,
            limit: self.limit,
            target_rate: self.rate,
            backends,
            balancers,
            errors: counts.errors,
            last_error: counts.last_error,
            sessions_open: counts.sessions_on.len(),
            sessions_total: counts.sessions_total,
            sessions_broken: counts.sessions_broken,
            selected: self.selected,
            events: self.events.clone(),
            interactive: self.interactive,
        }
    }
}

/// Stops the master's daemon (lb-a when no daemon answers).
fn stop_master(lab: &mut Lab, signal: libc::c_int, how: &str) -> Result<String> {
    let mut target = None;
    for (name, ns) in &lab.balancers {
        if !lab.record(name, "daemon").is_some_and(lab::Record::alive) {
            continue;
        }
        let is_master = Netns::existing(ns)
            .and_then(|ns| admin::status(&ns))
            .is_ok_and(|s| s.vrrp.first().is_some_and(|v| v.state == "master"));
        if is_master || target.is_none() {
            target = Some(name.clone());
        }
        if is_master {
            break;
        }
    }
    let name = target.context("no balancer daemon is running")?;
    let record = lab.record(&name, "daemon").context("no record")?;
    if !record.signal(signal) {
        bail!("the daemon on {name} is gone");
    }
    Ok(format!("{how} lb-daemon on {name} (pid {})", record.pid))
}

fn start_balancers(lab: &mut Lab) -> Result<String> {
    let stopped: Vec<String> = lab
        .balancers
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| {
            (!lab.options.no_vrrp || name == "lb-a")
                && !lab.record(name, "daemon").is_some_and(lab::Record::alive)
        })
        .collect();
    if stopped.is_empty() {
        return Ok("every balancer is running".to_owned());
    }
    for name in &stopped {
        lab.start_daemon(name)?;
    }
    Ok(format!("started lb-daemon on {}", stopped.join(", ")))
}

/// What the client has seen.
#[derive(Debug, Default)]
struct Counts {
    answers: BTreeMap<String, u64>,
    errors: u64,
    last_error: Option<String>,
    /// The backend of each open session.
    sessions_on: Vec<String>,
    sessions_total: usize,
    sessions_broken: u64,
}

/// The client's traffic: new connections at a fixed rate and kept-alive
/// sessions, all stopping by themselves after the run's duration.
struct Traffic {
    load: HttpLoad,
    shared: Arc<SessionsShared>,
    threads: Vec<JoinHandle<Result<()>>>,
    sessions: usize,
}

#[derive(Default)]
struct SessionsShared {
    stop: AtomicBool,
    broken: AtomicU64,
    state: Mutex<SessionsState>,
}

#[derive(Default)]
struct SessionsState {
    answers: BTreeMap<String, u64>,
    errors: u64,
    last_error: Option<String>,
    /// The backend each session is on, by session number.
    on: BTreeMap<usize, String>,
}

impl SessionsShared {
    fn lock(&self) -> MutexGuard<'_, SessionsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Traffic {
    fn start(client: &Netns, lab: &Lab, args: &RunArgs) -> Result<Traffic> {
        let vip = SocketAddr::new(lab.vip, WEB_PORT);
        let load = HttpLoad::start(
            client,
            vip,
            &HttpLoadOptions {
                workers: 8,
                pause: Duration::ZERO,
                rate: Some(args.rate),
                request_timeout: REQUEST_TIMEOUT,
                max_duration: args.duration,
            },
        )?;
        let shared = Arc::new(SessionsShared::default());
        let mut threads = Vec::new();
        for number in 0..args.sessions {
            let shared = Arc::clone(&shared);
            let deadline = Instant::now() + args.duration;
            let ns = Netns::existing(client.name())?;
            threads
                .push(client.spawn_thread(move || session(&ns, vip, number, &shared, deadline))?);
        }
        Ok(Traffic {
            load,
            shared,
            threads,
            sessions: args.sessions,
        })
    }

    fn counts(&self) -> Counts {
        let load = self.load.stats();
        let sessions = self.shared.lock();
        let mut answers = load.answers;
        for (name, count) in &sessions.answers {
            *answers.entry(name.clone()).or_default() += count;
        }
        let last_error = load.last_error.or_else(|| sessions.last_error.clone());
        Counts {
            answers,
            errors: load.errors + sessions.errors,
            last_error,
            sessions_on: sessions.on.values().cloned().collect(),
            sessions_total: self.sessions,
            sessions_broken: self.shared.broken.load(Ordering::Relaxed),
        }
    }

    fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.load.stop();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// One kept-alive session: asks every [`SESSION_PAUSE`]; reopens when the
/// connection breaks. Stops at `deadline` at the latest.
fn session(ns: &Netns, vip: SocketAddr, number: usize, shared: &SessionsShared, deadline: Instant) {
    let mut current: Option<HttpSession> = None;
    while !shared.stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Err((whether the session was open before, the error)).
        let result = match current.as_mut() {
            Some(session) => session.get().map_err(|error| (true, error)),
            None => match HttpSession::connect(ns, vip, REQUEST_TIMEOUT) {
                Ok(mut session) => {
                    let answer = session.get();
                    if answer.is_ok() {
                        current = Some(session);
                    }
                    answer.map_err(|error| (false, error))
                }
                Err(error) => Err((false, error)),
            },
        };
        let mut state = shared.lock();
        match result {
            Ok(name) => {
                *state.answers.entry(name.clone()).or_default() += 1;
                state.on.insert(number, name);
            }
            Err((was_open, error)) => {
                if was_open {
                    current = None;
                    shared.broken.fetch_add(1, Ordering::Relaxed);
                }
                state.errors += 1;
                state.last_error = Some(format!("session: {error:#}"));
                state.on.remove(&number);
            }
        }
        drop(state);
        std::thread::sleep(SESSION_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(Action::from_char('2'), Some(Action::Select(1)));
        assert_eq!(Action::from_char('x'), Some(Action::KillMaster));
        assert_eq!(Action::from_char('?'), None);
    }
}

//! One instance's task: the shell around the pure [`Machine`].
//!
//! ```text
//!   socket ──datagram──┐
//!   Master_Down/Adver ─┤                    ┌─ send advert (socket)
//!   track poll, script ┼─► Event ─► Machine::step ─► Action ─┼─ add/remove addresses (netlink)
//!   control channel ───┘                    ├─ GARP / NA (AF_PACKET)
//!   (recheck, shutdown)                     └─ transition: counters, log, notify
//! ```
//!
//! The task owns the machine; [`Shared`] is the snapshot it publishes for
//! `status()` and `counters()`.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::{
    sync::{mpsc, oneshot},
    task::{JoinHandle, JoinSet},
};

use super::{
    addresses, announce, notify,
    packet::{self, Advert, Version},
    socket::{MULTICAST_V4, MULTICAST_V6, VrrpSocket},
    state::{Action, Event, Machine, Params},
    track::{self, Failures},
    validate::{self, Discard, Expect, Received},
};
use crate::{
    config::{Track, VrrpInstance, VrrpVersion},
    netlink,
    status::{TransitionCounts, VrrpState, VrrpStatus},
};

/// Health of virtual servers as fed in by the daemon; absent means healthy.
pub(crate) type HealthMap = Mutex<HashMap<String, bool>>;

/// What the owner of an instance tells its task.
pub(crate) enum Control {
    /// A tracked input changed: re-evaluate the priority now.
    Recheck,
    /// Stop gracefully (a master sends priority 0 and removes its
    /// addresses), then acknowledge.
    Shutdown(oneshot::Sender<()>),
}

/// What the task publishes.
pub(crate) struct Shared {
    inner: Mutex<Snapshot>,
}

struct Snapshot {
    status: VrrpStatus,
    discards: [u64; Discard::ALL.len()],
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn status(&self) -> VrrpStatus {
        self.lock().status.clone()
    }

    /// Discards per reason, by [`Discard::as_str`].
    pub(crate) fn discards(&self) -> Vec<(&'static str, u64)> {
        let snapshot = self.lock();
        Discard::ALL
            .iter()
            .map(|d| (d.as_str(), snapshot.discards[d.index()]))
            .collect()
    }
}

/// A running instance, as [`super::Vrrp`] holds it.
pub(crate) struct Handle {
    pub config: VrrpInstance,
    pub shared: Arc<Shared>,
    pub control: mpsc::UnboundedSender<Control>,
    pub task: JoinHandle<()>,
}

impl Handle {
    /// Stops the task gracefully, waiting at most `timeout`.
    pub async fn stop(self, timeout: Duration) {
        let (ack, done) = oneshot::channel();
        if self.control.send(Control::Shutdown(ack)).is_ok()
            && tokio::time::timeout(timeout, done).await.is_err()
        {
            tracing::warn!(instance = self.config.name, "no graceful stop in time");
        }
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Opens the instance's socket and starts its task. Errors (no such
/// interface, no primary address, no permission) are returned here.
pub(crate) fn spawn(config: VrrpInstance, health: Arc<HealthMap>) -> anyhow::Result<Handle> {
    let name = config.name.clone();
    let instance =
        Instance::new(config.clone(), health).with_context(|| format!("VRRP instance {name}"))?;
    let shared = instance.shared.clone();
    let (control, control_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(instance.run(control_rx));
    Ok(Handle {
        config,
        shared,
        control,
        task,
    })
}

struct Instance {
    config: VrrpInstance,
    ifindex: u32,
    socket: VrrpSocket,
    machine: Machine,
    expect: Expect,
    /// Where adverts go: the multicast group or the unicast peers.
    destinations: Vec<IpAddr>,
    shared: Arc<Shared>,
    health: Arc<HealthMap>,
    /// Last result of each tracked script, by index in `config.track`
    /// (`true`: failing). Scripts count as passing until they have run.
    script_failures: Vec<bool>,
    /// The last advert could not be sent (logged once until it recovers).
    send_failing: bool,
}

/// One input of the task's loop.
enum Input<'b> {
    Control(Option<Control>),
    Timer,
    Datagram(std::io::Result<Received<'b>>),
    Script(usize, bool),
    Poll,
}

impl Instance {
    fn new(config: VrrpInstance, health: Arc<HealthMap>) -> anyhow::Result<Instance> {
        let v6 = config.is_ipv6();
        let ifindex = netlink::ifindex(&config.interface)?;
        let global = config.unicast_peers.iter().any(|peer| match peer {
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            IpAddr::V4(_) => false,
        });
        let primary = addresses::primary(ifindex, v6, &config.virtual_addresses, global)?;
        let Some(primary) = primary else {
            bail!(
                "interface {} has no {} address to send adverts from",
                config.interface,
                match (v6, global) {
                    (false, _) => "IPv4",
                    (true, false) => "IPv6 link-local",
                    (true, true) => "global IPv6",
                }
            );
        };
        let multicast = config.unicast_peers.is_empty();
        let socket = VrrpSocket::open(&config.interface, ifindex, v6, multicast)
            .with_context(|| format!("opening the VRRP socket on {}", config.interface))?;
        let version = match config.version {
            VrrpVersion::V2 => Version::V2,
            VrrpVersion::V3 => Version::V3,
        };
        let advert_interval_cs = u16::try_from(config.advert_interval.as_millis() / 10)
            .context("advert_interval out of range")?;
        let machine = Machine::new(Params {
            version,
            priority: config.priority,
            advert_interval_cs,
            preempt: config.preempt,
            preempt_delay: config.preempt_delay,
            primary,
        });
        let expect = Expect {
            version,
            vrid: config.vrid,
            ifindex,
            addresses: config.virtual_addresses.iter().map(|n| n.addr()).collect(),
            advert_interval_cs,
            unicast_peers: config.unicast_peers.clone(),
            owner: config.priority == 255,
        };
        let destinations = match (multicast, v6) {
            (false, _) => config.unicast_peers.clone(),
            (true, false) => vec![MULTICAST_V4.into()],
            (true, true) => vec![MULTICAST_V6.into()],
        };
        let status = VrrpStatus {
            name: config.name.clone(),
            interface: config.interface.clone(),
            vrid: config.vrid,
            version: match version {
                Version::V2 => 2,
                Version::V3 => 3,
            },
            state: VrrpState::Initialize,
            priority: config.priority,
            effective_priority: config.priority,
            master: None,
            virtual_addresses: config
                .virtual_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            adverts_sent: 0,
            adverts_received: 0,
            adverts_discarded: 0,
            transitions: TransitionCounts::default(),
        };
        tracing::info!(
            instance = config.name,
            interface = config.interface,
            vrid = config.vrid,
            %primary,
            "VRRP instance starting"
        );
        Ok(Instance {
            script_failures: vec![false; config.track.len()],
            send_failing: false,
            config,
            ifindex,
            socket,
            machine,
            expect,
            destinations,
            shared: Arc::new(Shared {
                inner: Mutex::new(Snapshot {
                    status,
                    discards: [0; Discard::ALL.len()],
                }),
            }),
            health,
        })
    }

    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let (script_tx, mut script_rx) = mpsc::unbounded_channel();
        // Dropped with the task, which aborts the script loops.
        let mut scripts = JoinSet::new();
        for (index, track) in self.config.track.iter().enumerate() {
            if let Track::Script { path, interval, .. } = track {
                let (path, interval, tx) = (path.clone(), *interval, script_tx.clone());
                scripts.spawn(async move {
                    let mut ticks = tokio::time::interval(interval);
                    loop {
                        ticks.tick().await;
                        let ok = track::run_script(&path, interval).await;
                        if tx.send((index, !ok)).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        let poll_period = self.config.advert_interval.min(Duration::from_millis(500));
        let mut poll = tokio::time::interval(poll_period);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let (priority, fault) = self.tracked();
        self.step(
            Event::Track {
                effective_priority: priority,
                fault,
            },
            "tracking",
        )
        .await;
        self.step(Event::Startup, "startup").await;

        let mut buffer = vec![0u8; 4096];
        loop {
            let deadline = self.machine.deadline().map(tokio::time::Instant::from_std);
            let input = tokio::select! {
                biased;
                message = control.recv() => Input::Control(message),
                () = sleep_until(deadline) => Input::Timer,
                received = self.socket.recv(&mut buffer) => Input::Datagram(received),
                Some((index, failed)) = script_rx.recv() => Input::Script(index, failed),
                _ = poll.tick() => Input::Poll,
            };
            match input {
                Input::Control(Some(Control::Recheck)) | Input::Poll => self.retrack().await,
                Input::Control(Some(Control::Shutdown(ack))) => {
                    self.step(Event::Shutdown, "shutdown").await;
                    let _ = ack.send(());
                    return;
                }
                Input::Control(None) => {
                    self.step(Event::Shutdown, "shutdown").await;
                    return;
                }
                Input::Timer => self.step(Event::Timer, "timer").await,
                Input::Datagram(Ok(received)) => self.receive(&received).await,
                Input::Datagram(Err(error)) => {
                    tracing::debug!(instance = self.config.name, %error, "receive");
                    if error.kind() != std::io::ErrorKind::InvalidData {
                        // Bounded: a socket that keeps failing cannot spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Input::Script(index, failed) => {
                    if let Some(slot) = self.script_failures.get_mut(index) {
                        *slot = failed;
                    }
                    self.retrack().await;
                }
            }
        }
    }

    /// The priority and Fault flag tracking gives now.
    fn tracked(&self) -> (u8, bool) {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let failures = self
            .config
            .track
            .iter()
            .enumerate()
            .map(|(index, track)| match track {
                Track::VirtualServer { name, .. } => !health.get(name).copied().unwrap_or(true),
                Track::Interface { name, .. } => !addresses::link_up(name),
                Track::Script { .. } => self.script_failures[index],
            })
            .collect();
        drop(health);
        let (priority, fault) = track::effective_priority(
            self.config.priority,
            &self.config.track,
            &Failures(failures),
        );
        // Without its own interface the instance cannot take part (keepalived: FAULT).
        let own_down = addresses::link(self.ifindex).map_or(true, |link| !link.up);
        (priority, fault || own_down)
    }

    async fn retrack(&mut self) {
        let (priority, fault) = self.tracked();
        if priority != self.machine.effective_priority() || fault != self.machine.fault() {
            let event = Event::Track {
                effective_priority: priority,
                fault,
            };
            self.step(event, "tracking").await;
        }
    }

    async fn receive(&mut self, received: &Received<'_>) {
        if received.src == self.machine.params().primary {
            return; // our own, looped back
        }
        match validate::validate(received, &self.expect) {
            Ok(advert) => {
                self.shared.lock().status.adverts_received += 1;
                let event = Event::Advert {
                    src: received.src,
                    priority: advert.priority,
                    interval_cs: advert.interval_cs,
                };
                self.step(event, "advert").await;
            }
            Err(discard) => {
                tracing::debug!(
                    instance = self.config.name,
                    src = %received.src,
                    reason = discard.as_str(),
                    "advert discarded"
                );
                let mut snapshot = self.shared.lock();
                snapshot.discards[discard.index()] += 1;
                snapshot.status.adverts_discarded += 1;
            }
        }
    }

    async fn step(&mut self, event: Event, cause: &'static str) {
        let (next, actions) = self.machine.step(event, Instant::now());
        self.machine = next;
        for action in actions {
            self.perform(action, cause).await;
        }
        let mut snapshot = self.shared.lock();
        snapshot.status.state = self.machine.state();
        snapshot.status.effective_priority = self.machine.effective_priority();
        snapshot.status.master = self.machine.master();
    }

    async fn perform(&mut self, action: Action, cause: &'static str) {
        let name = self.config.name.as_str();
        match action {
            Action::SendAdvert { priority } => self.send_advert(priority).await,
            Action::AddAddresses => {
                for net in &self.config.virtual_addresses {
                    if let Err(error) = addresses::add(self.ifindex, net) {
                        tracing::error!(instance = name, address = %net, %error, "adding address");
                    }
                }
            }
            Action::RemoveAddresses => {
                for net in &self.config.virtual_addresses {
                    if let Err(error) = addresses::remove(self.ifindex, net) {
                        tracing::error!(instance = name, address = %net, %error, "removing address");
                    }
                }
            }
            Action::Announce => {
                let result = addresses::link(self.ifindex).and_then(|link| {
                    let frames = announce::frames(link.mac, &self.expect.addresses);
                    // Twice: one lost frame must not leave a stale neighbour entry.
                    announce::send(self.ifindex, &frames)?;
                    announce::send(self.ifindex, &frames)
                });
                if let Err(error) = result {
                    tracing::warn!(instance = name, %error, "announcing addresses");
                }
            }
            Action::Transition { from, to } => {
                tracing::info!(
                    instance = name,
                    from = from.as_str(),
                    to = to.as_str(),
                    cause,
                    priority = self.machine.effective_priority(),
                    "VRRP state change"
                );
                {
                    let mut snapshot = self.shared.lock();
                    let counts = &mut snapshot.status.transitions;
                    match to {
                        VrrpState::Backup => counts.backup += 1,
                        VrrpState::Master => counts.master += 1,
                        VrrpState::Fault => counts.fault += 1,
                        VrrpState::Initialize => {}
                    }
                }
                if let Some(command) = &self.config.notify {
                    notify::notify(command, name, to);
                }
            }
        }
    }

    async fn send_advert(&mut self, priority: u8) {
        let params = self.machine.params();
        let advert = Advert {
            version: params.version,
            vrid: self.config.vrid,
            priority,
            interval_cs: params.advert_interval_cs,
            addresses: self.expect.addresses.clone(),
        };
        let src = params.primary;
        for dst in &self.destinations {
            let sent = match packet::encode(&advert, src, *dst) {
                Ok(bytes) => self
                    .socket
                    .send(&bytes, src, *dst)
                    .await
                    .map_err(Into::into),
                Err(error) => Err(anyhow::Error::from(error)),
            };
            // Logged when sending starts or stops failing, not per advert.
            match sent {
                Ok(()) => {
                    self.shared.lock().status.adverts_sent += 1;
                    if std::mem::take(&mut self.send_failing) {
                        tracing::info!(instance = self.config.name, "sending adverts again");
                    }
                }
                Err(error) if !self.send_failing => {
                    self.send_failing = true;
                    tracing::warn!(
                        instance = self.config.name,
                        %dst,
                        error = format!("{error:#}"),
                        "sending advert failed"
                    );
                }
                Err(_) => {}
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

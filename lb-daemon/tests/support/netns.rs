//! Network namespaces for tests: a guard that deletes the namespace on
//! drop, veth links into a bridge namespace, and running code inside a
//! namespace on a thread of its own (sockets opened there stay there).
use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
};

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run("ip", &["netns", "add", name]);
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`, panicking with stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A command inside the namespace, panicking on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")]);
    }

    /// The MAC address of `interface`.
    pub fn mac(&self, interface: &str) -> [u8; 6] {
        let out = self.ip(&["-br", "link", "show", interface]);
        let text = out.split_whitespace().nth(2).expect("mac in ip -br link");
        let bytes: Vec<u8> = text
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("hex"))
            .collect();
        bytes.try_into().expect("6 bytes")
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/var/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns on a namespace fd; affects this thread only.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("thread in namespace panicked")
        })
    }

    /// Like [`Netns::enter`], for a thread that outlives the call.
    pub fn spawn<F: FnOnce() + Send + 'static>(&self, f: F) -> std::thread::JoinHandle<()> {
        let path = format!("/var/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        std::thread::spawn(move || {
            // SAFETY: as in `enter`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command, panicking with its stderr on failure.
pub fn run(program: &str, args: &[&str]) -> String {
    let out: Output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Joins `host`'s `eth0` to the bridge `br0` in `bridge` through a veth
/// pair whose bridge end is called `port`; MTU on both ends, transmit
/// checksum offload off (XDP_TX of CHECKSUM_PARTIAL packets corrupts them).
pub fn link_to_bridge(bridge: &Netns, port: &str, host: &Netns, mtu: u32) {
    let mtu = mtu.to_string();
    bridge.ip(&[
        "link",
        "add",
        port,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "mtu",
        &mtu,
        "netns",
        host.name(),
    ]);
    bridge.ip(&["link", "set", port, "master", "br0", "up"]);
    host.ip(&["link", "set", "eth0", "up"]);
    bridge.exec("ethtool", &["-K", port, "tx", "off"]);
    host.exec("ethtool", &["-K", "eth0", "tx", "off"]);
}

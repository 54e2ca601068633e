//! End to end, DESIGN.md §5 and §6: `POST /api/v1/backends/{vs}/{addr}/drain`
//! stops new connections to a backend while its open connections go on
//! until they close; `undrain` brings it back. Runs as root (CI does).
mod support;

use std::time::Duration;

use lb_lab::{HttpSession, VIRTUAL_SERVER, http_get_many, wait_until};
use support::e2e::{E2e, tally};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Connections held on the drained backend.
const HELD: usize = 5;
/// New connections counted while drained.
const NEW: usize = 300;

#[test]
fn a_drained_backend_keeps_its_connections_and_gets_no_new_ones() {
    let mut e2e = E2e::new("drn", 3, false);
    e2e.hold_vip("lb-a");
    let config = e2e.config(3);
    e2e.start_daemon("lb-a", &config);
    e2e.wait_vip();
    let client = e2e.lab.client().ns();
    let vip = e2e.vip_addr();
    let be1 = e2e.lab.backends()[0].ipv4();

    // Long-lived connections on be-1 (others are closed at once).
    let mut held = Vec::new();
    for _ in 0..200 {
        if held.len() == HELD {
            break;
        }
        let mut session = HttpSession::connect(client, vip, TIMEOUT).unwrap();
        if session.get().unwrap() == "be-1" {
            held.push(session);
        }
    }
    assert_eq!(held.len(), HELD, "too few connections reached be-1");

    let path = format!("/api/v1/backends/{VIRTUAL_SERVER}/{be1}/drain");
    let (code, body) = e2e.admin("lb-a", "POST", &path);
    assert_eq!(code, 200, "drain: {body}");
    let status = e2e.status("lb-a");
    let backend = &status.virtual_servers[0].backends[0];
    assert!(backend.drained && !backend.takes_new_flows(), "{backend:?}");

    let names = http_get_many(client, vip, NEW, Duration::from_secs(20)).unwrap();
    let counts = tally(&names);
    // The held connections still answer, from be-1.
    for _ in 0..5 {
        for session in &mut held {
            assert_eq!(session.get().expect("a held connection broke"), "be-1");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let open_on_be1 = e2e.servers[0].open_connections();
    println!(
        "be-1 drained: {NEW} new connections went {counts:?}; its {HELD} open connections \
         answered {} requests ({open_on_be1} open on be-1's server)",
        held.iter().map(HttpSession::requests).sum::<u64>()
    );
    assert_eq!(counts.get("be-1"), None, "a new connection reached be-1");
    assert!(open_on_be1 >= HELD, "be-1 lost connections: {open_on_be1}");

    // They close when the client closes them.
    drop(held);
    wait_until(TIMEOUT, "be-1's connections to close", || {
        Ok((e2e.servers[0].open_connections() == 0).then_some(()))
    })
    .unwrap();

    let path = format!("/api/v1/backends/{VIRTUAL_SERVER}/{be1}/undrain");
    let (code, body) = e2e.admin("lb-a", "POST", &path);
    assert_eq!(code, 200, "undrain: {body}");
    let names = http_get_many(client, vip, NEW, Duration::from_secs(20)).unwrap();
    let back = tally(&names).get("be-1").copied().unwrap_or(0);
    println!("undrained: be-1 got {back} of {NEW} new connections");
    assert!(
        back >= NEW / 6,
        "be-1 got only {back} of {NEW} after undrain"
    );
}

//! The Ethernet next hop of every backend, kept current at a cost that
//! does not grow with refreshes: the route of each backend address is
//! looked up again only every [`ROUTE_TTL`] (an address without a route
//! once per [`Round`]), the neighbour entry of each distinct next hop once
//! per round (one lookup however many backends share it; a missing or
//! stale one is solicited).
//!
//! A refresh of 100,000 backends with routes allocates nothing per
//! backend: it asks a round for each backend's next hop, one at a time
//! (an address without a route keeps its error for the round).
use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::neighbour::{self, Route};

/// How long a backend's route is trusted before it is looked up again.
pub const ROUTE_TTL: Duration = Duration::from_secs(30);

/// Where packets to a backend go, or why they cannot.
pub type NextHop = Result<(Route, [u8; 6]), String>;

/// The routes of the backend addresses, cached.
#[derive(Debug, Default)]
pub struct NextHops {
    routes: HashMap<IpAddr, CachedRoute>,
    /// What [`CachedRoute::at`] counts from: the first round.
    epoch: Option<Instant>,
    /// The number of the latest round.
    round: u32,
}

/// A route found (failures are remembered only for the round: they are
/// looked up again on the next one), in 32 bytes: there is one per
/// backend address.
#[derive(Clone, Copy, Debug)]
struct CachedRoute {
    route: Route,
    /// When it was looked up, in whole seconds since the epoch.
    at: u32,
    /// The last round that asked for it.
    round: u32,
}

impl NextHops {
    /// Starts a round of lookups at `now`. Addresses that the round does
    /// not ask for are forgotten when it ends.
    pub fn round(&mut self, now: Instant) -> Round<'_> {
        let epoch = *self.epoch.get_or_insert(now);
        self.round = self.round.wrapping_add(1);
        Round {
            now: seconds(now.duration_since(epoch)),
            hops: self,
            unroutable: HashMap::new(),
            neighbours: HashMap::new(),
        }
    }
}

/// One pass over the backends (see [`NextHops::round`]).
pub struct Round<'a> {
    hops: &'a mut NextHops,
    now: u32,
    /// The addresses whose route lookup failed in this round, and why.
    unroutable: HashMap<IpAddr, String>,
    /// The neighbour entries looked up in this round, by next hop.
    neighbours: HashMap<Route, Result<[u8; 6], String>>,
}

impl Round<'_> {
    /// The next hop of `address`.
    pub fn next_hop(&mut self, address: IpAddr) -> NextHop {
        let route = self.route(address)?;
        let mac = self
            .neighbours
            .entry(route)
            .or_insert_with(|| lookup(route))
            .clone()?;
        Ok((route, mac))
    }

    /// The route of `address`: cached if looked up less than
    /// [`ROUTE_TTL`] ago, else asked of the kernel.
    fn route(&mut self, address: IpAddr) -> Result<Route, String> {
        self.route_from(address, neighbour::route)
    }

    /// The route of `address`, as [`Round::route`], asking `ask` where
    /// the kernel would be asked: at most once per address in a round,
    /// whether it answers or fails.
    fn route_from(
        &mut self,
        address: IpAddr,
        ask: impl FnOnce(IpAddr) -> io::Result<Route>,
    ) -> Result<Route, String> {
        let (now, round) = (self.now, self.hops.round);
        if let Some(cached) = self.hops.routes.get_mut(&address)
            && now - cached.at < seconds(ROUTE_TTL)
        {
            cached.round = round;
            return Ok(cached.route);
        }
        if let Some(error) = self.unroutable.get(&address) {
            return Err(error.clone());
        }
        match ask(address) {
            Ok(route) => {
                let cached = CachedRoute {
                    route,
                    at: now,
                    round,
                };
                self.hops.routes.insert(address, cached);
                Ok(route)
            }
            Err(error) => {
                self.hops.routes.remove(&address);
                let error = error.to_string();
                self.unroutable.insert(address, error.clone());
                Err(error)
            }
        }
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        let round = self.hops.round;
        self.hops.routes.retain(|_, cached| cached.round == round);
    }
}

/// Whole seconds of `duration`, saturating at `u32::MAX` (136 years).
fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

fn lookup(route: Route) -> Result<[u8; 6], String> {
    match neighbour::lookup(route.ifindex, route.next_hop) {
        Ok(Some(entry)) => {
            if entry.stale {
                // XDP traffic does not confirm entries; ask the kernel to.
                let _ = neighbour::solicit(route.ifindex, route.next_hop);
            }
            Ok(entry.mac)
        }
        Ok(None) => {
            let _ = neighbour::solicit(route.ifindex, route.next_hop);
            Err(format!("{} is not resolved yet", route.next_hop))
        }
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, net::Ipv4Addr};

    use super::*;

    const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    /// A kernel that has no route to anything, counting the questions.
    fn no_route(asked: &Cell<usize>) -> impl Fn(IpAddr) -> io::Result<Route> + '_ {
        move |address| {
            asked.set(asked.get() + 1);
            Err(io::Error::other(format!("no route to {address}")))
        }
    }

    #[test]
    fn an_address_without_a_route_is_asked_for_once_a_round() {
        let asked = Cell::new(0);
        let mut hops = NextHops::default();
        let start = Instant::now();
        let mut round = hops.round(start);
        for _ in 0..3 {
            let error = round.route_from(BACKEND, no_route(&asked));
            assert_eq!(error, Err("no route to 10.0.0.1".to_string()));
        }
        assert_eq!(asked.get(), 1);
        drop(round);

        // The next round asks again.
        let mut round = hops.round(start);
        assert!(round.route_from(BACKEND, no_route(&asked)).is_err());
        assert_eq!(asked.get(), 2);
    }

    #[test]
    fn a_route_found_is_kept_for_its_lifetime() {
        let asked = Cell::new(0);
        let route = Route {
            ifindex: 2,
            next_hop: BACKEND,
        };
        let found = |_| {
            asked.set(asked.get() + 1);
            Ok(route)
        };
        let mut hops = NextHops::default();
        let start = Instant::now();
        assert_eq!(hops.round(start).route_from(BACKEND, found), Ok(route));
        assert_eq!(hops.round(start).route_from(BACKEND, found), Ok(route));
        assert_eq!(asked.get(), 1);
        let later = start + ROUTE_TTL;
        assert_eq!(hops.round(later).route_from(BACKEND, found), Ok(route));
        assert_eq!(asked.get(), 2);
    }
}

//! The Ethernet next hop of every backend, kept current at a cost that
//! does not grow with refreshes: the route of each backend address is
//! looked up again only every [`ROUTE_TTL`], the neighbour entry of each
//! distinct next hop on every refresh (one lookup however many backends
//! share it; a missing or stale one is solicited).
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::neighbour::{self, Route};

/// How long a backend's route is trusted before it is looked up again.
pub const ROUTE_TTL: Duration = Duration::from_secs(30);

/// A route and when it was looked up.
#[derive(Clone, Debug)]
struct CachedRoute {
    route: Result<Route, String>,
    at: Instant,
}

/// Where packets to a backend go, or why they cannot.
pub type NextHop = Result<(Route, [u8; 6]), String>;

#[derive(Debug, Default)]
pub struct NextHops {
    routes: HashMap<IpAddr, CachedRoute>,
}

impl NextHops {
    /// The next hop of each of `addresses` (duplicates allowed).
    pub fn resolve(
        &mut self,
        addresses: impl IntoIterator<Item = IpAddr>,
        now: Instant,
    ) -> HashMap<IpAddr, NextHop> {
        let mut routes: HashMap<IpAddr, Result<Route, String>> = HashMap::new();
        for address in addresses {
            if routes.contains_key(&address) {
                continue;
            }
            let cached = self
                .routes
                .get(&address)
                .filter(|c| now.duration_since(c.at) < ROUTE_TTL && c.route.is_ok())
                .cloned()
                .unwrap_or_else(|| CachedRoute {
                    route: neighbour::route(address).map_err(|e| e.to_string()),
                    at: now,
                });
            routes.insert(address, cached.route.clone());
            self.routes.insert(address, cached);
        }
        self.routes
            .retain(|address, _| routes.contains_key(address));

        let mut macs: HashMap<(u32, IpAddr), Result<[u8; 6], String>> = HashMap::new();
        routes
            .into_iter()
            .map(|(address, route)| {
                let next_hop = route.and_then(|route| {
                    let mac = macs
                        .entry((route.ifindex, route.next_hop))
                        .or_insert_with(|| lookup(route))
                        .clone()?;
                    Ok((route, mac))
                });
                (address, next_hop)
            })
            .collect()
    }
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

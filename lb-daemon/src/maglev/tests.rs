use super::*;
use std::net::{IpAddr, Ipv4Addr};

const M: u32 = 65_537;

fn members(n: u32, weight: u32) -> Vec<Member> {
    (1..=n)
        .map(|i| {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8));
            Member {
                id: i,
                key: key_of(&addr),
                weight,
            }
        })
        .collect()
}

fn shares(table: &[u32], n: u32) -> Vec<usize> {
    let mut counts = vec![0usize; n as usize + 1];
    for id in table {
        counts[*id as usize] += 1;
    }
    counts
}

#[test]
fn equal_weights_balance_within_one_percent() {
    for n in [2, 3, 10, 100, 1000] {
        let table = build(&members(n, 100), M);
        let counts = shares(&table, n);
        assert_eq!(counts[0], 0, "every slot is filled");
        let ideal = f64::from(M) / f64::from(n);
        for (id, count) in counts.iter().enumerate().skip(1) {
            let error = (*count as f64 - ideal).abs() / ideal;
            assert!(
                error < 0.01,
                "n={n} backend {id}: {count} slots, ideal {ideal:.1}"
            );
        }
    }
}

#[test]
fn unequal_weights_are_proportional() {
    let mut set = members(4, 100);
    set[1].weight = 200;
    set[2].weight = 50;
    set[3].weight = 150;
    let counts = shares(&build(&set, M), 4);
    let total: u32 = set.iter().map(|m| m.weight).sum();
    for m in &set {
        let ideal = f64::from(M) * f64::from(m.weight) / f64::from(total);
        let error = (counts[m.id as usize] as f64 - ideal).abs() / ideal;
        assert!(
            error < 0.01,
            "{m:?}: {} slots, ideal {ideal:.1}",
            counts[m.id as usize]
        );
    }
}

#[test]
fn weight_zero_takes_no_slots() {
    let mut set = members(3, 100);
    set[0].weight = 0;
    let counts = shares(&build(&set, 101), 3);
    assert_eq!(counts[1], 0);
    assert_eq!(counts[2] + counts[3], 101);
}

#[test]
fn empty_set_gives_empty_table() {
    assert!(build(&[], 13).iter().all(|id| *id == EMPTY));
}

#[test]
fn order_of_members_does_not_matter() {
    let set = members(50, 100);
    let mut reversed = set.clone();
    reversed.reverse();
    assert_eq!(build(&set, M), build(&reversed, M));
}

/// Removing one of N backends moves its own slots and only a few
/// others: the share of slots that change owner stays close to 1/N.
#[test]
fn removal_disrupts_about_one_nth() {
    for n in [5u32, 10, 50] {
        let set = members(n, 100);
        let before = build(&set, M);
        let after = build(&set[1..], M);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let moved_share = moved as f64 / f64::from(M);
        let one_nth = 1.0 / f64::from(n);
        assert!(
            moved_share < one_nth * 1.6,
            "n={n}: {moved_share:.4} of slots moved, 1/N = {one_nth:.4}"
        );
        // Slots of the surviving backends mostly keep their owner.
        let kept = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| **a != set[0].id && a == b)
            .count();
        let survivors = before.iter().filter(|a| **a != set[0].id).count();
        assert!(kept as f64 / survivors as f64 > 0.9, "n={n}");
    }
}

#[test]
fn addition_disrupts_about_one_nth() {
    let set = members(11, 100);
    let before = build(&set[..10], M);
    let after = build(&set, M);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!((moved as f64 / f64::from(M)) < 1.6 / 11.0);
}

/// FNV-1a over the table's slots, little-endian.
fn fingerprint(table: &[u32]) -> u64 {
    fnv1a(
        &table
            .iter()
            .flat_map(|id| id.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

/// Tables of fixed backend sets, as every version since the first builds
/// them: a change here would make two balancers of different versions
/// pick different backends for the same flow.
#[test]
fn tables_do_not_change_between_versions() {
    assert_eq!(
        build(&members(3, 100), 13),
        [1, 3, 2, 1, 3, 1, 3, 1, 1, 2, 3, 2, 2]
    );
    let mut first_heavier = members(100, 100);
    first_heavier[0].weight = 150;
    let mut uneven = members(1000, 0);
    for m in &mut uneven {
        m.weight = 1 + m.id % 7;
    }
    for (name, set, expected) in [
        ("100 equal", members(100, 100), 0xf688_4eca_8580_ee45),
        (
            "100, the first at 150",
            first_heavier,
            0x53c6_4622_b227_9ec1,
        ),
        ("1000 of weights 1 to 7", uneven, 0xc6a6_6fe9_c791_094b),
    ] {
        assert_eq!(fingerprint(&build(&set, M)), expected, "{name}");
    }
}

/// Random backend sets: keys, weights (some 0), sizes from 2 slots up.
fn random_sets() -> Vec<(Vec<Member>, u32)> {
    let mut rng = fastrand::Rng::with_seed(0x6d61_676c_6576);
    let mut sets = Vec::new();
    for size in [2, 3, 13, 1009, 65_537] {
        for _ in 0..6 {
            let n = rng.u32(1..=300);
            let set = (1..=n)
                .map(|id| Member {
                    id,
                    key: rng.u64(..),
                    weight: if rng.u8(..10) == 0 {
                        0
                    } else {
                        rng.u32(1..=400)
                    },
                })
                .collect();
            sets.push((set, size));
        }
    }
    sets
}

#[test]
fn vector_paths_claim_the_slots_of_the_scalar_walk() {
    let paths = probe::paths();
    println!(
        "paths: {:?}",
        paths.iter().map(|(name, _)| *name).collect::<Vec<_>>()
    );
    let mut builder = Builder::default();
    for (set, size) in random_sets() {
        let mut expected = Vec::new();
        for (name, fill) in &paths {
            let mut table = Vec::new();
            if builder.prepare(&set, size, &mut table) {
                fill(builder.fill(&mut table, size));
            }
            if expected.is_empty() {
                expected = table;
            } else {
                assert!(
                    table == expected,
                    "{name}: {} members, {size} slots",
                    set.len()
                );
            }
        }
    }
}

#[test]
fn a_reused_builder_builds_what_a_new_one_does() {
    let mut builder = Builder::default();
    let mut table = vec![7; 5];
    for (set, size) in random_sets().into_iter().rev() {
        builder.build_into(&set, size, &mut table);
        assert_eq!(table, build(&set, size));
    }
    builder.build_into(&[], 13, &mut table);
    assert_eq!(table, [EMPTY; 13]);
}

#[test]
fn primes() {
    assert!(is_prime(65_537));
    assert!(is_prime(13));
    assert!(!is_prime(65_536));
    assert!(!is_prime(1));
}

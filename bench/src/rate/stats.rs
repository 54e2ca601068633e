//! The statistics of the packet-rate results: the median over rounds and
//! the per-round paired ratio of two devices. Pure functions, so that what
//! the report states can be tested without a network.

/// The median of `values`: the middle value of an odd count, the mean of
/// the two middle values of an even count; `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// `numerator / denominator` for every round measured on both sides, in
/// the order of `numerator`. Both are `(round, value)`; rounds are paired
/// by number, not by position. A round missing on either side, or whose
/// denominator is not a positive number, gives no ratio.
pub fn paired_ratios(
    numerator: &[(usize, f64)],
    denominator: &[(usize, f64)],
) -> Vec<(usize, f64)> {
    numerator
        .iter()
        .filter_map(|&(round, n)| {
            let &(_, d) = denominator.iter().find(|(r, _)| *r == round)?;
            let ratio = n / d;
            (d > 0.0 && ratio.is_finite()).then_some((round, ratio))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(median(&[7.0]), Some(7.0));
        // Unsorted, and an outlier does not pull it as it would a mean.
        assert_eq!(median(&[100.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(&[3.0, 9.0, 1.0, 4.0, 2.0]), Some(3.0));
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[10.0, 20.0]), Some(15.0));
        assert_eq!(median(&[1.0, 2.0, 2.0, 1000.0]), Some(2.0));
    }

    #[test]
    fn median_of_no_values_is_none() {
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn paired_ratios_pair_rounds_by_number_not_position() {
        let balancer = [(0, 9.0), (1, 8.0), (2, 10.0)];
        let baseline = [(2, 20.0), (0, 10.0), (1, 16.0)];
        assert_eq!(
            paired_ratios(&balancer, &baseline),
            vec![(0, 0.9), (1, 0.5), (2, 0.5)]
        );
    }

    #[test]
    fn paired_ratios_skip_rounds_missing_on_either_side() {
        // Round 1 has no baseline, round 3 no balancer.
        let balancer = [(0, 9.0), (1, 8.0), (2, 10.0)];
        let baseline = [(0, 10.0), (2, 20.0), (3, 5.0)];
        assert_eq!(
            paired_ratios(&balancer, &baseline),
            vec![(0, 0.9), (2, 0.5)]
        );
        assert_eq!(paired_ratios(&balancer, &[]), vec![]);
        assert_eq!(paired_ratios(&[], &baseline), vec![]);
    }

    #[test]
    fn paired_ratios_skip_a_baseline_without_a_positive_rate() {
        let balancer = [(0, 9.0), (1, 8.0), (2, 10.0)];
        let baseline = [(0, 0.0), (1, -1.0), (2, 20.0)];
        assert_eq!(paired_ratios(&balancer, &baseline), vec![(2, 0.5)]);
    }
}

//! Latency statistics from raw samples: exact percentiles from a sorted
//! vector (a run has at most a few tens of thousands of samples).

use super::results::Latency;

/// Points of [`Latency::cdf`].
const CDF_POINTS: usize = 200;

/// The distribution of `samples_ns` (nanoseconds), in microseconds; `None`
/// when there are no samples.
///
/// Percentiles are nearest-rank: the p-th percentile is the smallest sample
/// with at least p % of the samples at or below it.
pub fn latency(mut samples_ns: Vec<u64>) -> Option<Latency> {
    if samples_ns.is_empty() {
        return None;
    }
    samples_ns.sort_unstable();
    let sorted = samples_ns.as_slice();
    let n = sorted.len();
    let sum: u128 = sorted.iter().map(|&s| u128::from(s)).sum();
    Some(Latency {
        samples: n as u64,
        p50_us: micros(quantile(sorted, 0.5)),
        p99_us: micros(quantile(sorted, 0.99)),
        p999_us: micros(quantile(sorted, 0.999)),
        max_us: micros(sorted[n - 1]),
        mean_us: sum as f64 / n as f64 / 1_000.0,
        cdf: cdf(sorted),
    })
}

/// The nearest-rank `q` quantile of `sorted` (not empty), `q` in 0..=1.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted[rank(sorted.len(), q) - 1]
}

/// The 1-based nearest rank of quantile `q` among `n` samples.
fn rank(n: usize, q: f64) -> usize {
    // The epsilon keeps a product like 0.99 * 1000 = 990.0000000000001 at 990.
    ((q * n as f64) - 1e-9).ceil().clamp(1.0, n as f64) as usize
}

fn micros(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

/// About [`CDF_POINTS`] points `(quantile, µs)`, evenly spaced in "nines"
/// (`-log10(1 - q)`) from the minimum up to `1 - 1/n`, then the maximum:
/// dense in the tail, where the systems differ.
fn cdf(sorted: &[u64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let nines = (n as f64).log10().max(1.0);
    let steps = CDF_POINTS - 2;
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(CDF_POINTS);
    let mut last_rank = 0;
    for i in 0..=steps {
        let x = nines * i as f64 / steps as f64;
        let q = 1.0 - 10f64.powf(-x);
        // One point per rank: few samples give few points.
        let rank = rank(n, q);
        if rank == last_rank {
            continue;
        }
        last_rank = rank;
        points.push((q, micros(sorted[rank - 1])));
    }
    points.push((1.0, micros(sorted[n - 1])));
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_a_thousand() {
        // 1..=1000 µs, shuffled.
        let mut samples: Vec<u64> = (1..=1000u64).map(|us| us * 1_000).collect();
        samples.reverse();
        samples.swap(10, 500);
        let l = latency(samples).unwrap();
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.p999_us, 999.0);
        assert_eq!(l.max_us, 1000.0);
        assert!((l.mean_us - 500.5).abs() < 1e-9, "{}", l.mean_us);
    }

    #[test]
    fn cdf_is_monotone_and_ends_at_the_maximum() {
        let samples: Vec<u64> = (1..=10_000u64).map(|us| us * 1_000).collect();
        let l = latency(samples).unwrap();
        assert!(
            l.cdf.len() <= CDF_POINTS && l.cdf.len() > 100,
            "{}",
            l.cdf.len()
        );
        assert_eq!(l.cdf.first().copied(), Some((0.0, 1.0)));
        assert_eq!(l.cdf.last().copied(), Some((1.0, 10_000.0)));
        for pair in l.cdf.windows(2) {
            assert!(pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1, "{pair:?}");
        }
        // Denser in the tail: more points above the median than below.
        let above = l.cdf.iter().filter(|p| p.0 > 0.5).count();
        assert!(above > l.cdf.len() / 2);
    }

    #[test]
    fn one_sample_and_none() {
        let l = latency(vec![2_500]).unwrap();
        assert_eq!(
            (l.p50_us, l.p999_us, l.max_us, l.mean_us),
            (2.5, 2.5, 2.5, 2.5)
        );
        assert!(latency(Vec::new()).is_none());
    }
}

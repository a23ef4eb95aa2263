//! Sampling decisions driven by a caller-supplied uniform sample, so that
//! tests choose the sample and the proxy owns the random number generator:
//! mirror percentages (`RequestMirror.percent`/`fraction`) and weighted
//! backend choice (`backendRefs[].weight`).

use super::Mirror;
use crate::dataplane::WeightedBackend;

/// Whether a request is mirrored, given `sample` drawn uniformly from
/// `0..m.denominator`: true for `numerator` of every `denominator` samples.
/// A zero denominator mirrors nothing.
pub fn mirror_selected(m: &Mirror, sample: u32) -> bool {
    m.denominator != 0 && sample % m.denominator < m.numerator
}

/// The backend for `sample` drawn uniformly from `0..total_weight` (the sum
/// of weights): each backend owns a run of samples as long as its weight.
/// `None` when every weight is 0 (the request gets 500). A sample past the
/// total wraps around rather than failing.
pub fn pick_weighted(backends: &[WeightedBackend], sample: u32) -> Option<&WeightedBackend> {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut sample = u64::from(sample) % total;
    backends.iter().find(|b| {
        let w = u64::from(b.weight);
        if sample < w {
            true
        } else {
            sample -= w;
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::BackendTarget;

    fn backend(weight: u32) -> WeightedBackend {
        WeightedBackend {
            weight,
            target: BackendTarget::Invalid,
            filters: Vec::new(),
        }
    }

    #[test]
    fn weights_split_samples_proportionally() {
        let bs = [backend(70), backend(0), backend(30)];
        let mut counts = [0usize; 3];
        for s in 0..100 {
            let b = pick_weighted(&bs, s).expect("total weight is 100");
            let i = bs
                .iter()
                .position(|x| std::ptr::eq(x, b))
                .expect("from the slice");
            counts[i] += 1;
        }
        assert_eq!(counts, [70, 0, 30]);
    }

    #[test]
    fn zero_total_weight_picks_nothing() {
        assert!(pick_weighted(&[backend(0), backend(0)], 0).is_none());
        assert!(pick_weighted(&[], 0).is_none());
    }

    #[test]
    fn single_backend_takes_every_sample() {
        let bs = [backend(1)];
        assert!(pick_weighted(&bs, 0).is_some());
        assert!(pick_weighted(&bs, 5).is_some(), "out-of-range samples wrap");
    }

    #[test]
    fn mirror_fraction_selects_numerator_of_denominator() {
        let m = |numerator, denominator| Mirror {
            target: BackendTarget::Invalid,
            numerator,
            denominator,
        };
        let hits = |m: &Mirror| {
            (0..m.denominator)
                .filter(|&s| mirror_selected(m, s))
                .count()
        };
        assert_eq!(hits(&m(20, 100)), 20);
        assert_eq!(hits(&m(1, 1)), 1);
        assert_eq!(hits(&m(0, 100)), 0);
        assert_eq!(hits(&m(100, 100)), 100);
        assert!(!mirror_selected(&m(1, 0), 0));
    }
}

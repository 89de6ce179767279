//! A DDSketch (Masson, Rim, Lee, VLDB 2019) with 1 % relative accuracy:
//! quantile estimates whose relative error is bounded, whatever the data's
//! distribution, in a few hundred bytes.
//!
//! A positive value `x` is counted in bin `ceil(ln x / ln γ)` with
//! `γ = (1 + α) / (1 − α)`, `α = 0.01`; every value in bin `i` lies in
//! `(γ^(i−1), γ^i]`, so answering `2γ^i / (γ + 1)` is within `α` of any of
//! them. Negative values go to a second store by magnitude; magnitudes
//! below [`MIN_MAGNITUDE`] count as zero. Each store keeps a contiguous
//! range of bins, at most [`MAX_BINS`]; when a value would widen it past
//! that, the lowest bins are folded into the lowest kept one (the
//! "collapsing lowest" store). 2,048 bins span a ratio of `γ^2048 ≈ 10^17`
//! between the smallest and largest magnitude, so folding happens only for
//! data spanning more than that, and then only the quantiles of the folded
//! (smallest) values lose their guarantee.
//!
//! The quantile `q` is the value of rank `⌊q·(n − 1)⌋` (0-based) in sorted
//! order; the estimate is within 1 % of it, and is clamped to the exact
//! minimum and maximum, which the sketch also keeps (and answers for the
//! first and last rank: `q = 1` is the exact maximum).

use super::super::codec::{DecodeError, Reader, Writer};

/// Relative accuracy.
pub const ALPHA: f64 = 0.01;
/// Most bins per store (positive values, negative values).
pub const MAX_BINS: usize = 2048;
/// Magnitudes below this count as zero.
pub const MIN_MAGNITUDE: f64 = 1e-9;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

fn ln_gamma() -> f64 {
    gamma().ln()
}

fn key(magnitude: f64) -> i32 {
    // `magnitude` is at least MIN_MAGNITUDE and finite: the key is within
    // ±2,100 for every finite double, far inside i32.
    (magnitude.ln() / ln_gamma()).ceil() as i32
}

fn value_of(key: i32) -> f64 {
    2.0 * gamma().powi(key) / (gamma() + 1.0)
}

/// A contiguous range of bins starting at key `offset`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Store {
    offset: i32,
    counts: Vec<u64>,
}

impl Store {
    fn add(&mut self, key: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = key;
            self.counts.push(n);
            return;
        }
        let hi = self.offset + self.counts.len() as i32 - 1;
        let (new_lo, new_hi) = (self.offset.min(key), hi.max(key));
        if (new_hi - new_lo) as usize >= MAX_BINS {
            self.collapse(new_hi);
        } else if key < self.offset {
            let mut counts = vec![0u64; (self.offset - key) as usize];
            counts.extend_from_slice(&self.counts);
            self.counts = counts;
            self.offset = key;
        } else if key > hi {
            self.counts.resize((key - self.offset) as usize + 1, 0);
        }
        let at = (key.max(self.offset) - self.offset) as usize;
        self.counts[at] += n;
    }

    /// Re-bins to the top `MAX_BINS` keys ending at `hi`, folding every
    /// lower bin into the lowest kept one.
    fn collapse(&mut self, hi: i32) {
        let floor = hi - (MAX_BINS as i32 - 1);
        let mut counts = vec![0u64; MAX_BINS];
        for (i, &c) in self.counts.iter().enumerate() {
            let k = self.offset + i as i32;
            counts[(k.max(floor) - floor) as usize] += c;
        }
        self.counts = counts;
        self.offset = floor;
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn merge(&mut self, other: &Store) {
        for (i, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.add(other.offset + i as i32, c);
            }
        }
    }

    fn encode(&self, w: &mut Writer) {
        w.zigzag(self.offset as i64);
        w.varint(self.counts.len() as u64);
        for &c in &self.counts {
            w.varint(c);
        }
    }

    fn decode(r: &mut Reader) -> Result<Store, DecodeError> {
        let offset = r.zigzag("sketch offset")?;
        let n = r.count(1, "sketch bins")?;
        if n > MAX_BINS || offset < i32::MIN as i64 || offset + n as i64 > i32::MAX as i64 {
            return Err(DecodeError::Invalid("sketch bins"));
        }
        let mut counts = Vec::with_capacity(n);
        for _ in 0..n {
            counts.push(r.varint("sketch bin")?);
        }
        Ok(Store {
            offset: offset as i32,
            counts,
        })
    }
}

/// A DDSketch over finite values (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct DdSketch {
    positive: Store,
    negative: Store,
    zero: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl Default for DdSketch {
    fn default() -> Self {
        DdSketch {
            positive: Store::default(),
            negative: Store::default(),
            zero: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl DdSketch {
    /// An empty sketch.
    pub fn new() -> DdSketch {
        DdSketch::default()
    }

    /// Values added.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Adds a finite value (callers filter out NaN and infinities).
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if v >= MIN_MAGNITUDE {
            self.positive.add(key(v), 1);
        } else if v <= -MIN_MAGNITUDE {
            self.negative.add(key(-v), 1);
        } else {
            self.zero += 1;
        }
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &DdSketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero += other.zero;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The estimate of quantile `q` in `[0, 1]`; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        // The extremes are known exactly; in between, the bin's value.
        if rank == 0 {
            return Some(self.min);
        }
        if rank == self.count - 1 {
            return Some(self.max);
        }
        Some(self.at_rank(rank).clamp(self.min, self.max))
    }

    fn at_rank(&self, rank: u64) -> f64 {
        // Negative values, most negative (largest magnitude key) first.
        let mut seen = 0u64;
        for (i, &c) in self.negative.counts.iter().enumerate().rev() {
            seen += c;
            if seen > rank {
                return -value_of(self.negative.offset + i as i32);
            }
        }
        seen += self.zero;
        if seen > rank {
            return 0.0;
        }
        for (i, &c) in self.positive.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return value_of(self.positive.offset + i as i32);
            }
        }
        self.max
    }

    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.count);
        if self.count == 0 {
            return;
        }
        w.varint(self.zero);
        w.f64(self.min);
        w.f64(self.max);
        self.positive.encode(w);
        self.negative.encode(w);
    }

    pub fn decode(r: &mut Reader) -> Result<DdSketch, DecodeError> {
        let count = r.varint("sketch count")?;
        if count == 0 {
            return Ok(DdSketch::new());
        }
        let s = DdSketch {
            zero: r.varint("sketch zero count")?,
            min: r.f64("sketch min")?,
            max: r.f64("sketch max")?,
            positive: Store::decode(r)?,
            negative: Store::decode(r)?,
            count,
        };
        if s.zero + s.positive.total() + s.negative.total() != count {
            return Err(DecodeError::Invalid("sketch counts"));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn check(values: &[f64]) {
        let mut s = DdSketch::new();
        for &v in values {
            s.add(v);
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let want = exact(&sorted, q);
            let got = s.quantile(q).unwrap();
            let tolerance = ALPHA * want.abs() * (1.0 + 1e-9) + MIN_MAGNITUDE;
            assert!(
                (got - want).abs() <= tolerance,
                "q={q}: got {got}, exact {want}, allowed ±{tolerance}"
            );
        }
    }

    #[test]
    fn quantiles_are_within_one_percent_of_the_exact_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let uniform: Vec<f64> = (0..10_000).map(|_| rng.gen_range(15.0..35.0)).collect();
        check(&uniform);
        // Heavy tailed: latencies spanning six orders of magnitude.
        let heavy: Vec<f64> = (0..10_000)
            .map(|_| 10f64.powf(rng.gen_range(-3.0..3.0)))
            .collect();
        check(&heavy);
        // Negative, zero and positive values together.
        let mixed: Vec<f64> = (0..5_000)
            .map(|i| match i % 5 {
                0 => 0.0,
                1 | 2 => -rng.gen_range(0.5..500.0),
                _ => rng.gen_range(0.5..500.0),
            })
            .collect();
        check(&mixed);
        check(&[42.0]);
    }

    #[test]
    fn an_empty_sketch_has_no_quantiles() {
        assert_eq!(DdSketch::new().quantile(0.5), None);
    }

    #[test]
    fn the_first_and_last_ranks_are_the_exact_minimum_and_maximum() {
        let mut s = DdSketch::new();
        for v in [3.3, 100.0, 7.77, 99.9] {
            s.add(v);
        }
        assert_eq!(s.quantile(1.0), Some(100.0));
        assert_eq!(s.quantile(0.0), Some(3.3));
        assert_eq!(s.quantile(0.2), Some(3.3), "rank ⌊0.2·3⌋ = 0");
    }

    #[test]
    fn merging_equals_adding_everything_to_one_sketch() {
        let (mut a, mut b, mut all) = (DdSketch::new(), DdSketch::new(), DdSketch::new());
        for i in 0..1000 {
            let v = (i as f64 - 300.0) * 1.7;
            if i % 3 == 0 { &mut a } else { &mut b }.add(v);
            all.add(v);
        }
        a.merge(&b);
        for q in [0.0, 0.3, 0.5, 0.99, 1.0] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert_eq!(a.count(), 1000);
    }

    #[test]
    fn bins_stay_bounded_and_large_values_keep_their_accuracy() {
        let mut s = DdSketch::new();
        // Magnitudes from 1e-9 to 1e300: far more than 2,048 bins apart.
        let mut values = Vec::new();
        for e in -9..300 {
            for m in [1.0, 2.5, 7.0] {
                values.push(m * 10f64.powi(e));
            }
        }
        for &v in &values {
            s.add(v);
        }
        assert!(s.positive.counts.len() <= MAX_BINS);
        assert_eq!(s.count(), values.len() as u64);
        values.sort_by(f64::total_cmp);
        // The kept bins span γ^2048 ≈ 10^17.8 below the largest value: the
        // top 5 % here (15.5 decades) keeps the guarantee.
        for q in [0.95, 0.97, 0.99, 1.0] {
            let want = exact(&values, q);
            let got = s.quantile(q).unwrap();
            assert!(
                (got - want).abs() <= ALPHA * want * (1.0 + 1e-9),
                "q={q}: {got} vs {want}"
            );
        }
        // The smallest values were folded: their estimate is only bounded below by the minimum.
        assert!(s.quantile(0.0).unwrap() >= 1e-9);
    }

    #[test]
    fn sketches_round_trip_and_inconsistent_counts_are_refused() {
        let mut s = DdSketch::new();
        for v in [-3.0, 0.0, 1.0, 2.0, 1e6] {
            s.add(v);
        }
        let mut w = Writer::new();
        s.encode(&mut w);
        DdSketch::new().encode(&mut w);
        let mut r = Reader::new(&w.buf);
        assert_eq!(DdSketch::decode(&mut r).unwrap(), s);
        assert_eq!(DdSketch::decode(&mut r).unwrap(), DdSketch::new());
        r.finish().unwrap();

        let mut bad = Writer::new();
        s.encode(&mut bad);
        bad.buf[0] = 9; // count no longer matches the bins
        assert!(DdSketch::decode(&mut Reader::new(&bad.buf)).is_err());
    }
}

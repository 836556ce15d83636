//! The free-space fragmentation score, computed exactly as Ceph computes it.
//!
//! Ceph's `Allocator::get_fragmentation_score` values a free extent of `v` bytes, with
//! `k = floor(log2 v)` and `x = (v - 2^k) / 2^k`, at `2^k*s[k]*(1-x) + 2^(k+1)*s[k+1]*x`, where
//! `s[0] = 1` and `s[k] = s[k-1]*f(k)`. The score is `(ideal - sum) / (ideal - terrible)`:
//! `ideal` is the worth of all free space in one extent, `terrible` that of the same space cut
//! into the smallest pieces. 0 means one free run; 1 means every piece apart.
//!
//! Two forms exist:
//! - [`ScoreVariant::Reef`] (Ceph PR #49885, Reef and later, the default): `f = 1.2` up to
//!   `2^20`, falling linearly to `1.0` at `2^27`, `1.0` beyond; `terrible` uses pieces of one
//!   allocation unit.
//! - [`ScoreVariant::Pacific`] (Pacific and earlier): `f = 1.1` everywhere; `terrible` uses
//!   1-byte pieces.
//!
//! The arithmetic follows Ceph's operation order, including the integer division in Reef's
//! `terrible`, so results match a Ceph OSD's to the last printed digit (see the test vectors).

/// Which form of Ceph's formula to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ScoreVariant {
    /// Reef and later (the default).
    #[default]
    Reef,
    /// Pacific and earlier, for comparison with older fleets.
    Pacific,
}

/// Accumulates free extents (in offset order, as Ceph iterates them) and yields the score.
#[derive(Debug, Clone)]
pub struct FragmentationScore {
    variant: ScoreVariant,
    alloc_unit: u64,
    scales: Vec<f64>,
    score_sum: f64,
    free_bytes: u64,
}

impl FragmentationScore {
    /// A score over extents allocated in units of `alloc_unit` bytes.
    pub fn new(variant: ScoreVariant, alloc_unit: u64) -> Self {
        FragmentationScore {
            variant,
            alloc_unit: alloc_unit.max(1),
            scales: vec![1.0],
            score_sum: 0.0,
            free_bytes: 0,
        }
    }

    /// Adds one free extent of `length` bytes.
    pub fn add(&mut self, length: u64) {
        if length == 0 {
            return;
        }
        self.score_sum += self.worth(length);
        self.free_bytes += length;
    }

    /// The score in [0, 1]; 0 when there is nothing to fragment (no free space, or a single
    /// allocation unit), where Ceph's formula divides by zero. Rounding can put Ceph's formula a
    /// few ulps outside [0, 1]; the result is clamped.
    pub fn finish(mut self) -> f64 {
        if self.free_bytes == 0 {
            return 0.0;
        }
        let ideal = self.worth(self.free_bytes);
        let terrible = match self.variant {
            ScoreVariant::Reef => {
                (self.free_bytes / self.alloc_unit) as f64 * self.worth(self.alloc_unit)
            }
            ScoreVariant::Pacific => self.free_bytes as f64 * self.worth(1),
        };
        if ideal == terrible {
            return 0.0;
        }
        ((ideal - self.score_sum) / (ideal - terrible)).clamp(0.0, 1.0)
    }

    fn worth(&mut self, length: u64) -> f64 {
        let grade = 63 - length.leading_zeros() as usize;
        while self.scales.len() <= grade + 1 {
            let next = self.scales.len();
            let factor = self.factor(next);
            let last = *self.scales.last().expect("scales start with one entry");
            self.scales.push(last * factor);
        }
        let base = 1u64 << grade;
        let x = (length - base) as f64 / base as f64;
        base as f64 * self.scales[grade] * (1.0 - x)
            + (base * 2) as f64 * self.scales[grade + 1] * x
    }

    /// How much more one extent of `2^grade` bytes is worth than two of half the size.
    fn factor(&self, grade: usize) -> f64 {
        const SMALL_GRADE: usize = 20; // 1 MiB
        const HUGE_GRADE: usize = 27; // 128 MiB
        const WORTH_SMALL: f64 = 1.2;
        const WORTH_HUGE: f64 = 1.0;
        match self.variant {
            ScoreVariant::Pacific => 1.1,
            ScoreVariant::Reef if grade >= HUGE_GRADE => WORTH_HUGE,
            ScoreVariant::Reef if grade > SMALL_GRADE => {
                (WORTH_HUGE * (grade - SMALL_GRADE) as f64
                    + WORTH_SMALL * (HUGE_GRADE - grade) as f64)
                    / (HUGE_GRADE - SMALL_GRADE) as f64
            }
            ScoreVariant::Reef => WORTH_SMALL,
        }
    }
}

/// Scores the free extent lengths in `lengths` (in offset order).
pub fn fragmentation_score(
    variant: ScoreVariant,
    alloc_unit: u64,
    lengths: impl IntoIterator<Item = u64>,
) -> f64 {
    let mut score = FragmentationScore::new(variant, alloc_unit);
    lengths.into_iter().for_each(|length| score.add(length));
    score.finish()
}

/// Formats a double as C++ streams do with 17 significant digits (`%.17g`), which is how
/// `ceph-bluestore-tool` prints the rating.
pub fn format_g17(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let scientific = format!("{value:.16e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("Rust's {:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("exponent is an integer");
    if !(-4..17).contains(&exponent) {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let decimals = usize::try_from(16 - exponent).unwrap_or(0);
    trim_fraction(&format!("{value:.decimals$}")).to_string()
}

fn trim_fraction(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: u64 = 4096;

    #[test]
    fn one_free_run_scores_zero() {
        for variant in [ScoreVariant::Reef, ScoreVariant::Pacific] {
            assert_eq!(fragmentation_score(variant, UNIT, [1 << 30]), 0.0);
        }
    }

    #[test]
    fn every_unit_apart_scores_one_in_reef() {
        let score = fragmentation_score(ScoreVariant::Reef, UNIT, vec![UNIT; 1000]);
        assert!((score - 1.0).abs() < 1e-12, "{score}");
    }

    #[test]
    fn every_byte_apart_scores_one_in_pacific() {
        // Pacific's "terrible" is free space in 1-byte pieces, so only 1-byte extents score 1.
        let score = fragmentation_score(ScoreVariant::Pacific, 1, vec![1; 1000]);
        assert!((score - 1.0).abs() < 1e-12, "{score}");
        let units = fragmentation_score(ScoreVariant::Pacific, UNIT, vec![UNIT; 1000]);
        assert!(
            units > 0.5 && units < 1.0,
            "4 KiB pieces are bad but not the worst: {units}"
        );
    }

    #[test]
    fn hand_computed_mixed_case_reef() {
        // Two free runs of 8 KiB and 4 KiB, 4 KiB units: grades 13 and 12.
        // s[12] = 1.2^12, s[13] = 1.2^13, s[14] = 1.2^14 (all below 2^20).
        // worth(8K) = 8192*s13; worth(4K) = 4096*s12; ideal = worth(12K) = 8192*s13*0.5 + 16384*s14*0.5
        // terrible = 3 * 4096 * s12.
        let s = |k: i32| 1.2f64.powi(k);
        let sum = 8192.0 * s(13) + 4096.0 * s(12);
        let ideal = 8192.0 * s(13) * 0.5 + 16384.0 * s(14) * 0.5;
        let terrible = 3.0 * 4096.0 * s(12);
        let expected = (ideal - sum) / (ideal - terrible);
        let got = fragmentation_score(ScoreVariant::Reef, UNIT, [8192, 4096]);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn hand_computed_mixed_case_pacific() {
        // Pacific: s[k] = 1.1^k, terrible = free bytes * worth(1) = free bytes.
        let s = |k: i32| 1.1f64.powi(k);
        let sum = 8192.0 * s(13) + 4096.0 * s(12);
        let ideal = 8192.0 * s(13) * 0.5 + 16384.0 * s(14) * 0.5;
        let terrible = 12288.0;
        let expected = (ideal - sum) / (ideal - terrible);
        let got = fragmentation_score(ScoreVariant::Pacific, UNIT, [8192, 4096]);
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    }

    #[test]
    fn reef_factor_falls_linearly_between_1_mib_and_128_mib() {
        let score = FragmentationScore::new(ScoreVariant::Reef, UNIT);
        assert_eq!(score.factor(20), 1.2);
        assert!((score.factor(21) - (1.0 + 1.2 * 6.0) / 7.0).abs() < 1e-15);
        assert_eq!(score.factor(27), 1.0);
        assert_eq!(score.factor(40), 1.0);
    }

    #[test]
    fn nothing_to_fragment_scores_zero() {
        assert_eq!(fragmentation_score(ScoreVariant::Reef, UNIT, []), 0.0);
        assert_eq!(fragmentation_score(ScoreVariant::Reef, UNIT, [UNIT]), 0.0);
    }

    #[test]
    #[expect(
        clippy::excessive_precision,
        reason = "the digits Ceph printed, verbatim"
    )]
    fn g17_matches_cpp_stream_output() {
        assert_eq!(format_g17(0.084831046389246198), "0.084831046389246198");
        assert_eq!(format_g17(0.00022383055942302332), "0.00022383055942302332");
        assert_eq!(format_g17(0.0), "0");
        assert_eq!(format_g17(1.0), "1");
        assert_eq!(format_g17(0.5), "0.5");
        assert_eq!(format_g17(1.5e-7), "1.4999999999999999e-07");
    }
}

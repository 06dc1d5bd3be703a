//! Shape environments: the size of every rank, bound after parsing (`E=64,M=4096`).
//!
//! A split `M -> M1 M0` is resolved from any two of `M`, `M1`, `M0`; when only `M` is given,
//! `M0` defaults to `gcd(M, 64)` (a tile of at most 64 that divides `M`). A second variable over
//! the inner rank (`N0` of `split M -> M1 M0 N0`) always has the size of `M0`.

use std::collections::BTreeMap;
use std::fmt;

use crate::ast::{Cascade, RankId};

/// Default upper bound of an inner split rank when the caller gives only the outer rank.
pub const DEFAULT_TILE: i64 = 64;

/// The largest size a rank may have (2^32): any larger is a typo, and products of a few such
/// sizes still fit the 64-bit index arithmetic of every stage.
pub const MAX_SIZE: i64 = 1 << 32;

/// Sizes given by the caller, by rank name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShapeSpec {
    pub sizes: BTreeMap<String, i64>,
}

/// A problem with a shape specification, naming the rank and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error(
        "cannot read `{item}` in the shape: write NAME=SIZE pairs separated by commas, e.g. E=64,M=1024"
    )]
    Syntax { item: String },
    #[error("rank {rank} has size {size}: sizes must be at least 1")]
    NotPositive { rank: String, size: i64 },
    #[error("rank {rank} has size {size}: sizes must be at most {max} (2^32)", max = MAX_SIZE)]
    TooLarge { rank: String, size: i64 },
    #[error(
        "split {outer} -> {a} {b}: {a}={a_size} × {b}={b_size} is more than the largest size {max} (2^32) of {outer}",
        max = MAX_SIZE
    )]
    ProductTooLarge {
        outer: String,
        a: String,
        b: String,
        a_size: i64,
        b_size: i64,
    },
    #[error(
        "rank {rank} is given twice in the shape ({rank}={first} and {rank}={second}): give each rank once"
    )]
    Duplicate {
        rank: String,
        first: i64,
        second: i64,
    },
    #[error(
        "rank {second} is the second variable over {inner} (`split … {inner} {second}`), so its size is {inner}={inner_size}, not {second_size}: leave {second} out of the shape"
    )]
    SecondVariableMismatch {
        inner: String,
        second: String,
        inner_size: i64,
        second_size: i64,
    },
    #[error("rank {rank} has no size: add {rank}=N to the shape")]
    Missing { rank: String },
    #[error("the shape names {rank}, which this cascade does not declare (it declares {declared})")]
    Unknown { rank: String, declared: String },
    #[error(
        "split {outer} -> {a} {b}: {outer}={outer_size} is not {a}={a_size} × {b}={b_size}; give two of the three"
    )]
    SplitMismatch {
        outer: String,
        a: String,
        b: String,
        outer_size: i64,
        a_size: i64,
        b_size: i64,
    },
    #[error(
        "split {outer} -> {a} {b}: {outer}={outer_size} is not divisible by {divisor}={divisor_size}"
    )]
    NotDivisible {
        outer: String,
        a: String,
        b: String,
        outer_size: i64,
        /// The given part that does not divide the outer size.
        divisor: String,
        divisor_size: i64,
    },
}

impl std::str::FromStr for ShapeSpec {
    type Err = ShapeError;

    /// Parses `E=64,F=64,M=1024` (spaces allowed, `k`/`K` and `m`/`M` suffixes for 1024 and 1024²).
    fn from_str(s: &str) -> Result<Self, ShapeError> {
        let mut sizes = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let syntax = || ShapeError::Syntax {
                item: item.to_string(),
            };
            let (name, value) = item.split_once('=').ok_or_else(syntax)?;
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(syntax());
            }
            let size = parse_size(value).ok_or_else(syntax)?;
            if let Some(first) = sizes.insert(name.to_string(), size) {
                return Err(ShapeError::Duplicate {
                    rank: name.to_string(),
                    first,
                    second: size,
                });
            }
        }
        Ok(ShapeSpec { sizes })
    }
}

/// Parses `1024`, `4k`, `1M` (k = 1024, M = 1024²).
pub fn parse_size(value: &str) -> Option<i64> {
    let (digits, mult) = match value.chars().last()? {
        'k' | 'K' => (&value[..value.len() - 1], 1024),
        'm' | 'M' => (&value[..value.len() - 1], 1024 * 1024),
        _ => (value, 1),
    };
    digits.parse::<i64>().ok()?.checked_mul(mult)
}

/// The size of every rank of one cascade. Indexed by [`RankId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    sizes: Vec<i64>,
}

impl Shape {
    /// Binds every rank of `cascade` from `spec`, deriving split ranks.
    pub fn resolve(cascade: &Cascade, spec: &ShapeSpec) -> Result<Shape, Vec<ShapeError>> {
        let mut errors = Vec::new();
        let declared = || {
            cascade
                .ranks
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        for (name, &size) in &spec.sizes {
            if cascade.rank_by_name(name).is_none() {
                errors.push(ShapeError::Unknown {
                    rank: name.clone(),
                    declared: declared(),
                });
            }
            if size < 1 {
                errors.push(ShapeError::NotPositive {
                    rank: name.clone(),
                    size,
                });
            } else if size > MAX_SIZE {
                errors.push(ShapeError::TooLarge {
                    rank: name.clone(),
                    size,
                });
            }
        }
        if !errors.is_empty() {
            // Splits are resolved from valid sizes only (a tile of 0 divides nothing).
            return Err(errors);
        }
        let mut sizes: Vec<Option<i64>> = cascade
            .ranks
            .iter()
            .map(|r| spec.sizes.get(&r.name).copied())
            .collect();
        // Splits may nest (M -> M1 M0, M0 -> M01 M00): resolve until nothing changes. Every
        // size below is in 1..=MAX_SIZE, so no step divides by zero or overflows.
        loop {
            let mut changed = false;
            for (i, rank) in cascade.ranks.iter().enumerate() {
                let Some((a, b)) = rank.split else { continue };
                match resolve_split(cascade, i, a, b, &mut sizes) {
                    Ok(step) => changed |= step,
                    Err(e) => {
                        errors.push(e);
                        return Err(errors);
                    }
                }
            }
            if !changed {
                break;
            }
        }
        // A second variable over a split's inner rank has that rank's size, whatever else.
        for (i, rank) in cascade.ranks.iter().enumerate() {
            let Some(inner) = rank.range_of else { continue };
            match (sizes[i], sizes[inner.index()]) {
                (Some(given), Some(size)) if given != size => {
                    errors.push(ShapeError::SecondVariableMismatch {
                        inner: cascade.rank(inner).name.clone(),
                        second: rank.name.clone(),
                        inner_size: size,
                        second_size: given,
                    });
                    return Err(errors);
                }
                (_, Some(size)) => sizes[i] = Some(size),
                (_, None) => {}
            }
        }
        for (rank, size) in cascade.ranks.iter().zip(&sizes) {
            if size.is_none() {
                errors.push(ShapeError::Missing {
                    rank: rank.name.clone(),
                });
            }
        }
        if errors.is_empty() {
            Ok(Shape {
                sizes: sizes.into_iter().map(|s| s.unwrap_or(1)).collect(),
            })
        } else {
            Err(errors)
        }
    }

    /// The size of a rank.
    pub fn size(&self, rank: RankId) -> i64 {
        self.sizes[rank.index()]
    }

    /// Sizes by rank id.
    pub fn sizes(&self) -> &[i64] {
        &self.sizes
    }
}

impl fmt::Display for ShapeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.sizes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&items.join(","))
    }
}

/// One step of resolving split `i -> a b`: fills in a missing size when the other two (or the
/// outer one alone) are known; `Ok(true)` when it did.
fn resolve_split(
    cascade: &Cascade,
    i: usize,
    a: RankId,
    b: RankId,
    sizes: &mut [Option<i64>],
) -> Result<bool, ShapeError> {
    let (o, sa, sb) = (sizes[i], sizes[a.index()], sizes[b.index()]);
    let name = |id: RankId| cascade.rank(id).name.clone();
    let outer = cascade.ranks[i].name.clone();
    match (o, sa, sb) {
        (Some(o), Some(x), Some(y)) if x.checked_mul(y) != Some(o) => {
            Err(ShapeError::SplitMismatch {
                outer,
                a: name(a),
                b: name(b),
                outer_size: o,
                a_size: x,
                b_size: y,
            })
        }
        (Some(o), None, Some(y)) if o % y != 0 => Err(ShapeError::NotDivisible {
            outer,
            a: name(a),
            b: name(b),
            outer_size: o,
            divisor: name(b),
            divisor_size: y,
        }),
        (Some(o), None, Some(y)) => {
            sizes[a.index()] = Some(o / y);
            Ok(true)
        }
        (Some(o), Some(x), None) if o % x == 0 => {
            sizes[b.index()] = Some(o / x);
            Ok(true)
        }
        (Some(o), Some(x), None) => Err(ShapeError::NotDivisible {
            outer,
            a: name(a),
            b: name(b),
            outer_size: o,
            divisor: name(a),
            divisor_size: x,
        }),
        (None, Some(x), Some(y)) => match x.checked_mul(y).filter(|p| *p <= MAX_SIZE) {
            Some(p) => {
                sizes[i] = Some(p);
                Ok(true)
            }
            None => Err(ShapeError::ProductTooLarge {
                outer,
                a: name(a),
                b: name(b),
                a_size: x,
                b_size: y,
            }),
        },
        (Some(o), None, None) => {
            sizes[b.index()] = Some(gcd(o, DEFAULT_TILE));
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl;

    fn split() -> Cascade {
        let src =
            "cascade s\nranks M\nsplit M -> M1 M0\ninput A[M]\nB[m1,m0] = A[m1*M0+m0]\noutput B\n";
        dsl::parse(src, "s").expect("parses").cascade
    }

    fn resolve(spec: &str) -> Result<Vec<i64>, Vec<String>> {
        let spec: ShapeSpec = spec.parse().map_err(|e: ShapeError| vec![e.to_string()])?;
        Shape::resolve(&split(), &spec)
            .map(|s| s.sizes().to_vec())
            .map_err(|errs| errs.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_zero_tile_is_an_error_not_a_remainder_by_zero() {
        assert_eq!(
            resolve("M=64,M0=0").unwrap_err(),
            ["rank M0 has size 0: sizes must be at least 1"]
        );
        assert_eq!(
            resolve("M1=-3,M0=4").unwrap_err(),
            ["rank M1 has size -3: sizes must be at least 1"]
        );
    }

    #[test]
    fn sizes_above_the_maximum_name_it() {
        let errs = resolve("M=4294967297").unwrap_err();
        assert_eq!(
            errs,
            ["rank M has size 4294967297: sizes must be at most 4294967296 (2^32)"]
        );
        assert_eq!(resolve("M=4294967296").unwrap()[0], MAX_SIZE);
    }

    #[test]
    fn a_product_of_parts_beyond_the_maximum_is_an_error_not_a_wrapped_size() {
        let errs = resolve("M1=4294967296,M0=4294967296").unwrap_err();
        assert!(
            errs[0].contains("M1=4294967296 × M0=4294967296 is more than"),
            "{errs:?}"
        );
        assert_eq!(resolve("M1=3,M0=5").unwrap(), [15, 3, 5]);
    }

    #[test]
    fn parts_that_do_not_divide_the_whole_say_which() {
        let errs = resolve("M=10,M1=3").unwrap_err();
        assert_eq!(errs, ["split M -> M1 M0: M=10 is not divisible by M1=3"]);
        let errs = resolve("M=10,M0=4").unwrap_err();
        assert_eq!(errs, ["split M -> M1 M0: M=10 is not divisible by M0=4"]);
        assert_eq!(resolve("M=100").unwrap(), [100, 25, 4]);
    }

    #[test]
    fn a_second_inner_variable_has_the_size_of_the_inner_rank() {
        let src = "cascade s\nranks M\nsplit M -> M1 M0 N0\ninput A[M]\nB[m1,m0,n0] = A[m1*M0+m0] * A[m1*M0+n0]\noutput B\n";
        let c = dsl::parse(src, "s").expect("parses").cascade;
        let sizes = |spec: &str| {
            Shape::resolve(&c, &spec.parse().expect("spec"))
                .map(|s| s.sizes().to_vec())
                .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        // M=12 with M0=4 gives M1 = 12/4 = 3, and N0 ranges over M0: 4.
        assert_eq!(sizes("M=12,M0=4"), Ok(vec![12, 3, 4, 4]));
        assert_eq!(sizes("M=12,M0=4,N0=4"), Ok(vec![12, 3, 4, 4]));
        // A different N0 would drop keys of a chunk (smaller) or read past it (larger).
        assert_eq!(
            sizes("M=12,M0=4,N0=3").unwrap_err(),
            [
                "rank N0 is the second variable over M0 (`split … M0 N0`), so its size is M0=4, not 3: leave N0 out of the shape"
            ]
        );
    }

    #[test]
    fn a_rank_given_twice_is_an_error() {
        let err = "M=4,M=8".parse::<ShapeSpec>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "rank M is given twice in the shape (M=4 and M=8): give each rank once"
        );
    }
}

//! Shape environments: the size of every rank, bound after parsing (`E=64,M=4096`).
//!
//! A split `M -> M1 M0` is resolved from any two of `M`, `M1`, `M0`; when only `M` is given,
//! `M0` defaults to `gcd(M, 64)` (a tile of at most 64 that divides `M`).

use std::collections::BTreeMap;
use std::fmt;

use crate::ast::{Cascade, RankId};

/// Default upper bound of an inner split rank when the caller gives only the outer rank.
pub const DEFAULT_TILE: i64 = 64;

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
    #[error("split {outer} -> {a} {b}: {outer}={outer_size} is not divisible by {b}={b_size}")]
    NotDivisible {
        outer: String,
        a: String,
        b: String,
        outer_size: i64,
        b_size: i64,
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
            sizes.insert(name.to_string(), size);
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
            }
        }
        let mut sizes: Vec<Option<i64>> = cascade
            .ranks
            .iter()
            .map(|r| spec.sizes.get(&r.name).copied())
            .collect();
        // Splits may nest (M -> M1 M0, M0 -> M01 M00): resolve until nothing changes.
        loop {
            let mut changed = false;
            for (i, rank) in cascade.ranks.iter().enumerate() {
                let Some((a, b)) = rank.split else { continue };
                let (o, sa, sb) = (sizes[i], sizes[a.index()], sizes[b.index()]);
                let name = |id: RankId| cascade.rank(id).name.clone();
                match (o, sa, sb) {
                    (Some(o), Some(x), Some(y)) if o != x * y => {
                        errors.push(ShapeError::SplitMismatch {
                            outer: rank.name.clone(),
                            a: name(a),
                            b: name(b),
                            outer_size: o,
                            a_size: x,
                            b_size: y,
                        });
                        return Err(errors);
                    }
                    (Some(o), None, Some(y)) | (Some(o), Some(_), Some(y)) if o % y != 0 => {
                        errors.push(ShapeError::NotDivisible {
                            outer: rank.name.clone(),
                            a: name(a),
                            b: name(b),
                            outer_size: o,
                            b_size: y,
                        });
                        return Err(errors);
                    }
                    (Some(o), None, Some(y)) => {
                        sizes[a.index()] = Some(o / y);
                        changed = true;
                    }
                    (Some(o), Some(x), None) if x > 0 && o % x == 0 => {
                        sizes[b.index()] = Some(o / x);
                        changed = true;
                    }
                    (None, Some(x), Some(y)) => {
                        sizes[i] = Some(x * y);
                        changed = true;
                    }
                    (Some(o), None, None) => {
                        sizes[b.index()] = Some(gcd(o, DEFAULT_TILE));
                        changed = true;
                    }
                    _ => {}
                }
            }
            if !changed {
                break;
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

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

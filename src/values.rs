//! The values the command line takes apart from its flags' own types: sequence lengths,
//! array-size ranges, byte counts and memory limits. Each parser checks its value where it
//! enters (positive, at most a stated maximum, no overflow) and says what it accepts; the
//! fuzz targets and property tests call them directly, so they live in the `cascade_cli`
//! library rather than in the binary.

use std::fmt;

use cascade_ir::shape::{MAX_SIZE, parse_size};

/// A value the user gave that cannot be used, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

fn err<T>(message: String) -> Result<T, ValueError> {
    Err(ValueError(message))
}

/// The longest sequence length (`--seq`): [`MAX_SIZE`], 4096M tokens.
pub const MAX_SEQ: u64 = MAX_SIZE as u64;

/// The most entries one `--seq` list may hold.
pub const MAX_SEQ_ENTRIES: usize = 1024;

/// The widest array a sweep may try (`--pe-dim`): 65536 × 65536 PEs.
pub const MAX_PE_DIM: u64 = 1 << 16;

/// The most array sizes one `--pe-dim` range may produce.
pub const MAX_PE_DIMS: u64 = 1 << 16;

/// The largest buffer a sweep may try (`--min-buffer`, `--max-buffer`): 1 TiB.
pub const MAX_BUFFER_BYTES: u64 = 1 << 40;

/// The largest `--max-memory`: 1 PiB.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;

/// The non-empty entries of a comma-separated `flag` value, refused when there are none (`none`
/// says what to write instead) or more than [`MAX_SEQ_ENTRIES`] (`plural` names them).
fn entries<'a>(
    arg: &'a str,
    flag: &str,
    plural: &str,
    none: &str,
) -> Result<Vec<&'a str>, ValueError> {
    let items: Vec<&str> = arg
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return err(format!("{flag} `{arg}` lists {none}"));
    }
    if items.len() > MAX_SEQ_ENTRIES {
        return err(format!(
            "{flag} lists {} {plural}, more than the limit of {MAX_SEQ_ENTRIES}; run several commands",
            items.len()
        ));
    }
    Ok(items)
}

/// Parses `1k,4k,64k` (k = 1024, M = 1024²) into sequence lengths, each in `1..=MAX_SEQ`.
pub fn seq_list(arg: &str) -> Result<Vec<u64>, ValueError> {
    entries(
        arg,
        "--seq",
        "lengths",
        "no sequence length; write numbers with optional k/M suffixes, e.g. 1k,4k,64k",
    )?
    .into_iter()
        .map(|s| match parse_size(s) {
            Some(v) if v >= 1 && v as u64 <= MAX_SEQ => Ok(v as u64),
            Some(v) if v >= 1 => err(format!(
                "sequence length `{s}` is {v}, more than the longest, {MAX_SEQ} (4096M)"
            )),
            Some(v) => err(format!(
                "sequence length `{s}` is {v}; lengths must be at least 1"
            )),
            None => err(format!(
                "cannot read sequence length `{s}`; write numbers up to {MAX_SEQ} with optional k/M suffixes, e.g. 1k,4k,64k"
            )),
        })
        .collect()
}

/// The largest decode batch (`--batch`): 2^20 requests, as in workload files.
pub const MAX_BATCH: u64 = 1 << 20;

/// Parses `1,16,256` (k = 1024 allowed) into decode batches, each in `1..=MAX_BATCH`.
pub fn batch_list(arg: &str) -> Result<Vec<u64>, ValueError> {
    let none = format!("no batch; write request counts from 1 to {MAX_BATCH}, e.g. 1,16,256");
    entries(arg, "--batch", "batches", &none)?
        .into_iter()
        .map(|s| match parse_size(s) {
            Some(v) if v >= 1 && v as u64 <= MAX_BATCH => Ok(v as u64),
            Some(v) if v >= 1 => err(format!(
                "--batch `{s}` is {v}, more than the largest batch, {MAX_BATCH} (1M)"
            )),
            Some(v) => err(format!("--batch `{s}` is {v}; a batch is at least 1 request")),
            None => err(format!(
                "cannot read --batch `{s}`; write request counts from 1 to {MAX_BATCH}, e.g. 1,16,256"
            )),
        })
        .collect()
}

/// Parses `A..B` (powers of two from A to B) or `A..B:S` (A, A+S, … ≤ B) into array sizes, each
/// in `1..=MAX_PE_DIM`, at most [`MAX_PE_DIMS`] of them; the count is known before any is made.
pub fn pe_dims(arg: &str) -> Result<Vec<u64>, ValueError> {
    let bad = || {
        ValueError(format!(
            "cannot read --pe-dim `{arg}`; write 16..512 (powers of two) or 16..512:16 (a step), with sizes from 1 to {MAX_PE_DIM}"
        ))
    };
    let number = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let (range, step) = match arg.split_once(':') {
        Some((r, s)) => (r, Some(number(s)?)),
        None => (arg, None),
    };
    let (lo, hi) = range.split_once("..").ok_or_else(bad)?;
    let (lo, hi) = (
        number(lo)?,
        number(hi.trim_start().trim_start_matches('='))?,
    );
    if lo == 0 || hi < lo || step == Some(0) {
        return Err(bad());
    }
    if hi > MAX_PE_DIM {
        return err(format!(
            "--pe-dim `{arg}` goes up to {hi}, more than the widest array, {MAX_PE_DIM}"
        ));
    }
    match step {
        Some(s) => {
            let count = (hi - lo) / s + 1;
            if count > MAX_PE_DIMS {
                return err(format!(
                    "--pe-dim `{arg}` makes {count} array sizes, more than the limit of {MAX_PE_DIMS}; use a larger step"
                ));
            }
            Ok((0..count).map(|k| lo + k * s).collect())
        }
        None => Ok(std::iter::successors(Some(lo), |&d| d.checked_mul(2))
            .take_while(|&d| d <= hi)
            .collect()),
    }
}

/// The most values one geometric range (`--seq 128k..10m`, `--chips 1..1024`) may produce.
pub const MAX_RANGE_VALUES: u64 = 256;

/// Parses `A..B` (A, 2A, 4A, … and B itself when the doublings miss it) or `A..B:N` (N values
/// spaced evenly in log from A to B, rounded, repeats dropped) into values in `1..=max`, with
/// k/M suffixes (k = 1024, M = 1024²); a single value `A` is the range of itself. `flag` and
/// `what` name the option and its values in messages.
pub fn geometric_range(
    arg: &str,
    flag: &str,
    what: &str,
    max: u64,
) -> Result<Vec<u64>, ValueError> {
    let bad = || {
        ValueError(format!(
            "cannot read {flag} `{arg}`; write A..B (doubling from A to B), A..B:N (N values, log-spaced) or one value, with {what} from 1 to {max} and optional k/M suffixes"
        ))
    };
    let value = |s: &str| -> Result<u64, ValueError> {
        match parse_size(s.trim()) {
            Some(v) if v >= 1 && v as u64 <= max => Ok(v as u64),
            Some(v) if v >= 1 => err(format!(
                "{flag} `{arg}` goes up to {v}, more than the limit of {max} {what}"
            )),
            _ => Err(bad()),
        }
    };
    let (range, steps) = match arg.split_once(':') {
        Some((r, n)) => (r, Some(n.trim().parse::<u64>().map_err(|_| bad())?)),
        None => (arg, None),
    };
    let (lo, hi) = match range.split_once("..") {
        Some((a, b)) => (value(a)?, value(b)?),
        None if steps.is_none() => {
            let v = value(range)?;
            (v, v)
        }
        None => return Err(bad()),
    };
    if hi < lo {
        return err(format!(
            "{flag} `{arg}` runs from {lo} down to {hi}; give the smaller value first"
        ));
    }
    let values: Vec<u64> = match steps {
        Some(0) => return Err(bad()),
        Some(n) if n > MAX_RANGE_VALUES => {
            return err(format!(
                "{flag} `{arg}` asks for {n} values, more than the limit of {MAX_RANGE_VALUES}"
            ));
        }
        Some(1) => vec![lo],
        Some(n) => {
            let ratio = (hi as f64 / lo as f64).ln() / (n - 1) as f64;
            let mut v: Vec<u64> = (0..n)
                .map(|k| ((lo as f64) * (ratio * k as f64).exp()).round() as u64)
                .map(|x| x.clamp(lo, hi))
                .collect();
            v.dedup();
            v
        }
        None => {
            let mut v: Vec<u64> = std::iter::successors(Some(lo), |&x| x.checked_mul(2))
                .take_while(|&x| x <= hi)
                .collect();
            if v.last() != Some(&hi) {
                v.push(hi);
            }
            v
        }
    };
    if values.len() as u64 > MAX_RANGE_VALUES {
        return err(format!(
            "{flag} `{arg}` makes {} values, more than the limit of {MAX_RANGE_VALUES}",
            values.len()
        ));
    }
    Ok(values)
}

/// Parses a byte count with optional binary suffixes (`64k`, `32M`, `4G`, `1T`, `1P`), in
/// `1..=max`; `flag` names the option in messages.
pub fn bytes(arg: &str, flag: &str, max: u64) -> Result<u64, ValueError> {
    let text = arg.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        Some((i, 't' | 'T')) => (&text[..i], 40),
        Some((i, 'p' | 'P')) => (&text[..i], 50),
        _ => (text, 0),
    };
    let value = digits
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(1 << shift));
    match value {
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(0) => err(format!("{flag} `{arg}` is 0 bytes; give at least 1")),
        Some(v) => err(format!(
            "{flag} `{arg}` is {v} bytes, more than the limit of {max} ({})",
            human_bytes(max)
        )),
        None if digits.parse::<u128>().is_ok() => err(format!(
            "{flag} `{arg}` is more than the limit of {max} ({})",
            human_bytes(max)
        )),
        None => err(format!(
            "cannot read {flag} `{arg}`; write bytes with optional k/M/G/T/P suffixes (powers of 1024), e.g. 64k or 4G"
        )),
    }
}

/// The most shards a sweep may be cut into (`--shard K/N`): one per design point of the
/// largest sweep.
pub const MAX_SHARDS: u64 = 1 << 20;

/// One of `count` disjoint slices of a sweep (`--shard K/N`, `index` = K − 1): the design points
/// whose position in the whole sweep leaves remainder `index` when divided by `count`. Dealt
/// round-robin, so every shard gets small and large arrays alike and the slices together are
/// the whole sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Whether the design point at `position` of the whole sweep is this shard's.
    pub fn holds(self, position: u64) -> bool {
        position % self.count == self.index
    }
}

/// Parses `--shard K/N`: 1 ≤ K ≤ N ≤ [`MAX_SHARDS`]. N may exceed the sweep's design points;
/// a shard without points writes only the header, so a job array of fixed size works for any
/// sweep.
pub fn shard(arg: &str) -> Result<Shard, ValueError> {
    let usage = "write K/N with 1 ≤ K ≤ N, e.g. --shard 3/8 for the third of eight shards";
    let Some((k, n)) = arg.split_once('/') else {
        return err(format!("--shard `{arg}` is not K/N; {usage}"));
    };
    let number = |s: &str, what: &str| -> Result<u64, ValueError> {
        s.trim().parse::<u64>().map_err(|_| {
            ValueError(format!(
                "--shard `{arg}`: {what} `{s}` is not a whole number; {usage}"
            ))
        })
    };
    let (k, n) = (number(k, "K")?, number(n, "N")?);
    if n == 0 || n > MAX_SHARDS {
        return err(format!(
            "--shard `{arg}`: N = {n} shards; N must be between 1 and {MAX_SHARDS} (2^20)"
        ));
    }
    if k == 0 || k > n {
        return err(format!(
            "--shard `{arg}`: K = {k} is not one of the {n} shards; {usage}"
        ));
    }
    Ok(Shard {
        index: k - 1,
        count: n,
    })
}

/// `4294967296` → `4 GiB`, rounded down to the largest unit that divides nothing away when
/// possible, else with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut value = n as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_too_large_to_hold_is_refused_before_anything_is_made() {
        let e = pe_dims("1..18446744073709551615:1").unwrap_err();
        assert!(e.0.contains("more than the widest array, 65536"), "{e}");
        let e = pe_dims("1..65536:1").map(|d| d.len());
        assert_eq!(e, Ok(65536));
        assert_eq!(pe_dims("16..512").unwrap(), [16, 32, 64, 128, 256, 512]);
        assert_eq!(pe_dims("16..=64:16").unwrap(), [16, 32, 48, 64]);
    }

    #[test]
    fn byte_counts_name_the_limit() {
        assert_eq!(bytes("4G", "--max-memory", MAX_MEMORY_BYTES), Ok(4 << 30));
        let e = bytes("2T", "--max-buffer", MAX_BUFFER_BYTES).unwrap_err();
        assert_eq!(
            e.0,
            "--max-buffer `2T` is 2199023255552 bytes, more than the limit of 1099511627776 (1 TiB)"
        );
        let e = bytes("99999999999999999999", "--max-memory", MAX_MEMORY_BYTES).unwrap_err();
        assert!(e.0.contains("more than the limit"), "{e}");
        assert!(bytes("0", "--x", 10).is_err() && bytes("-1", "--x", 10).is_err());
        assert!(bytes("1é", "--x", 10).is_err() && bytes("", "--x", 10).is_err());
    }

    #[test]
    fn batches_are_named_as_batches_and_bounded() {
        assert_eq!(batch_list("1, 16,1k").unwrap(), [1, 16, 1024]);
        let e = batch_list("0").unwrap_err();
        assert!(e.0.starts_with("--batch `0`"), "{e}");
        let e = batch_list("1048577").unwrap_err();
        assert!(e.0.contains("more than the largest batch, 1048576"), "{e}");
        assert!(batch_list("").is_err() && batch_list("-1").is_err() && batch_list("x").is_err());
    }

    #[test]
    fn sequence_lengths_are_positive_and_bounded() {
        assert_eq!(seq_list("1k, 4k,1M").unwrap(), [1024, 4096, 1 << 20]);
        assert!(seq_list("0").is_err() && seq_list("-4k").is_err() && seq_list(",").is_err());
        let e = seq_list("8192M").unwrap_err();
        assert_eq!(
            e.0,
            "sequence length `8192M` is 8589934592, more than the longest, 4294967296 (4096M)"
        );
    }
}

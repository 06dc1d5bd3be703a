//! The global buffer's SRAM as a cost table characterises it: a row access's energies, the
//! static energy per cycle and the area at a few capacities, and for any other capacity the
//! power law through the two characterised sizes around it.
//!
//! An SRAM's energy per access does not follow one simple law of its capacity: a circuit model
//! such as CACTI changes the organisation (subarrays, banks, wire types) as the size grows, so
//! the exponent differs from one size range to the next. The table takes the values a model
//! gives at its sizes and only interpolates between neighbours; beyond its ends it continues the
//! nearest pair's law.

use serde::Deserialize;

use super::{MAX_AREA_MM2, MAX_ENERGY_PJ, at_most_f64, positive_f64, positive_int};
use crate::ConfigError;

/// One characterised size, as a cost table gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSram {
    pub capacity_bytes: Option<i64>,
    pub read_pj: Option<f64>,
    pub write_pj: Option<f64>,
    pub leak_pj_per_cycle: Option<f64>,
    pub area_mm2: Option<f64>,
}

/// The SRAM at one capacity: energy of one row read and one row write, static energy per
/// cycle, area.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sram {
    pub capacity_bytes: u64,
    pub read_pj: f64,
    pub write_pj: f64,
    pub leak_pj_per_cycle: f64,
    pub area_mm2: f64,
}

/// Two or more characterised sizes, strictly increasing in capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct SramTable {
    points: Vec<Sram>,
}

impl SramTable {
    /// The SRAM of `capacity_bytes`: exact at a characterised size, the power law through the
    /// neighbouring sizes elsewhere.
    pub fn at(&self, capacity_bytes: u64) -> Sram {
        let p = &self.points;
        // The pair whose law applies: the one around the capacity, else the nearest end's.
        let j = p
            .iter()
            .position(|s| s.capacity_bytes >= capacity_bytes)
            .unwrap_or(p.len() - 1)
            .clamp(1, p.len() - 1);
        let (lo, hi) = (p[j - 1], p[j]);
        let t = (capacity_bytes as f64 / lo.capacity_bytes as f64).ln()
            / (hi.capacity_bytes as f64 / lo.capacity_bytes as f64).ln();
        let law = |a: f64, b: f64| {
            if a == 0.0 || b == 0.0 {
                // Validation allows zero only for leakage, and then at every size.
                0.0
            } else {
                a * (b / a).powf(t)
            }
        };
        Sram {
            capacity_bytes,
            read_pj: law(lo.read_pj, hi.read_pj),
            write_pj: law(lo.write_pj, hi.write_pj),
            leak_pj_per_cycle: law(lo.leak_pj_per_cycle, hi.leak_pj_per_cycle),
            area_mm2: law(lo.area_mm2, hi.area_mm2),
        }
    }

    /// The characterised sizes.
    pub fn points(&self) -> &[Sram] {
        &self.points
    }
}

/// Validates `buffer.sram`: every field present and in range, capacities strictly increasing,
/// at least two sizes (one fixes no law), leakage zero at every size or at none.
pub fn check_sram_table(
    raw: Option<Vec<RawSram>>,
    errs: &mut Vec<ConfigError>,
) -> Option<SramTable> {
    let before = errs.len();
    let Some(raw) = raw else {
        errs.push(ConfigError::field(
            "costs: buffer.sram",
            "is missing; give the SRAM at two or more capacities, e.g. \
             `sram = [{ capacity_bytes = 16777216, read_pj = …, write_pj = …, \
             leak_pj_per_cycle = …, area_mm2 = … }, …]`",
        ));
        return None;
    };
    if raw.len() < 2 {
        errs.push(ConfigError::field(
            "costs: buffer.sram",
            format!(
                "has {} size(s); give at least two, so that other capacities follow the law \
                 between them",
                raw.len()
            ),
        ));
    }
    let mut points = Vec::with_capacity(raw.len());
    for (k, s) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("costs: buffer.sram[{k}].{f}");
        let capacity = positive_int(
            s.capacity_bytes,
            &at("capacity_bytes"),
            "the SRAM's size in bytes",
            errs,
        );
        let energy = |v, f: &str, errs: &mut Vec<ConfigError>| {
            at_most_f64(
                positive_f64(v, &at(f), "pJ", errs),
                MAX_ENERGY_PJ,
                &at(f),
                "pJ",
                errs,
            )
        };
        let read = energy(s.read_pj, "read_pj", errs);
        let write = energy(s.write_pj, "write_pj", errs);
        let leak = match s.leak_pj_per_cycle {
            Some(0.0) => Some(0.0),
            v => energy(v, "leak_pj_per_cycle", errs),
        };
        let area = at_most_f64(
            positive_f64(s.area_mm2, &at("area_mm2"), "mm²", errs),
            MAX_AREA_MM2,
            &at("area_mm2"),
            "mm²",
            errs,
        );
        if let (Some(capacity_bytes), Some(read_pj), Some(write_pj), Some(leak), Some(area)) =
            (capacity, read, write, leak, area)
        {
            points.push(Sram {
                capacity_bytes,
                read_pj,
                write_pj,
                leak_pj_per_cycle: leak,
                area_mm2: area,
            });
        }
    }
    for w in points.windows(2) {
        if w[1].capacity_bytes <= w[0].capacity_bytes {
            errs.push(ConfigError::field(
                "costs: buffer.sram",
                format!(
                    "lists capacity {} after {}; list the sizes from small to large, each once",
                    w[1].capacity_bytes, w[0].capacity_bytes
                ),
            ));
        }
    }
    let leaking = points.iter().filter(|s| s.leak_pj_per_cycle > 0.0).count();
    if leaking != 0 && leaking != points.len() {
        errs.push(ConfigError::field(
            "costs: buffer.sram",
            "gives leakage at some sizes and 0 at others; give it at every size, or 0 at every \
             size for an SRAM that does not leak",
        ));
    }
    (errs.len() == before).then_some(SramTable { points })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(capacity: i64, read: f64, leak: f64) -> RawSram {
        RawSram {
            capacity_bytes: Some(capacity),
            read_pj: Some(read),
            write_pj: Some(2.0 * read),
            leak_pj_per_cycle: Some(leak),
            area_mm2: Some(read / 100.0),
        }
    }

    fn table(points: Vec<RawSram>) -> Result<SramTable, Vec<ConfigError>> {
        let mut errs = Vec::new();
        check_sram_table(Some(points), &mut errs).ok_or(errs)
    }

    #[test]
    fn characterised_sizes_are_exact_and_others_follow_the_neighbours_law() {
        let t = table(vec![
            raw(1 << 20, 100.0, 1.0),
            raw(1 << 22, 400.0, 4.0),
            raw(1 << 24, 800.0, 8.0),
        ])
        .expect("valid");
        for p in t.points() {
            assert_eq!(t.at(p.capacity_bytes), *p);
        }
        // Between 1 MiB and 4 MiB the read energy goes as capacity^1: 2 MiB costs 200.
        let mid = t.at(1 << 21);
        assert!((mid.read_pj - 200.0).abs() < 1e-9, "{mid:?}");
        assert!((mid.write_pj - 400.0).abs() < 1e-9);
        // Between 4 MiB and 16 MiB as capacity^0.5: 8 MiB costs 400·√2.
        assert!((t.at(1 << 23).read_pj - 400.0 * 2f64.sqrt()).abs() < 1e-9);
        // Beyond the ends the nearest pair's law continues.
        assert!((t.at(1 << 19).read_pj - 50.0).abs() < 1e-9);
        assert!((t.at(1 << 26).read_pj - 1600.0).abs() < 1e-9);
    }

    #[test]
    fn leakage_may_be_zero_only_at_every_size() {
        let t = table(vec![raw(1 << 20, 100.0, 0.0), raw(1 << 22, 400.0, 0.0)]).expect("valid");
        assert_eq!(t.at(1 << 21).leak_pj_per_cycle, 0.0);
        let errs = table(vec![raw(1 << 20, 100.0, 0.0), raw(1 << 22, 400.0, 4.0)]).unwrap_err();
        assert!(
            errs.iter().any(|e| e.to_string().contains("every size")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_table_needs_two_increasing_sizes_and_valid_values() {
        let one = table(vec![raw(1 << 20, 100.0, 1.0)]).unwrap_err();
        assert!(one[0].to_string().contains("at least two"), "{one:?}");
        let unsorted = table(vec![raw(1 << 22, 100.0, 1.0), raw(1 << 20, 400.0, 1.0)]).unwrap_err();
        assert!(
            unsorted[0].to_string().contains("from small to large"),
            "{unsorted:?}"
        );
        let bad = table(vec![raw(1 << 20, f64::NAN, 1.0), raw(0, 400.0, 1.0)]).unwrap_err();
        let text: Vec<String> = bad.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter().any(|e| e.contains("buffer.sram[0].read_pj")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("buffer.sram[1].capacity_bytes")),
            "{text:?}"
        );
        let mut errs = Vec::new();
        assert!(check_sram_table(None, &mut errs).is_none());
        assert!(errs[0].to_string().contains("is missing"), "{errs:?}");
    }
}

//! Comparisons between architectures over a set of workload points: per point speedup and
//! energy ratio of a subject against baselines, for attention alone and for the whole layer,
//! and their arithmetic means (as the FuseMax paper averages its 24 points).

use cascade_ir::Cascade;
use cascade_scheduler::{ArchSpec, Outcome, Problem, schedule};

use crate::{SimReport, simulate};

/// An architecture with the cascade it runs.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    pub arch: &'a ArchSpec,
    pub cascade: &'a Cascade,
}

/// The result of one configuration at one point.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    Ok(Box<SimReport>),
    /// No schedule exists (or the problem does not fit the cascade); the reason.
    Infeasible(String),
}

impl Evaluation {
    pub fn report(&self) -> Option<&SimReport> {
        match self {
            Evaluation::Ok(r) => Some(r),
            Evaluation::Infeasible(_) => None,
        }
    }
}

/// Schedules and simulates one configuration at one point.
pub fn evaluate(config: Config<'_>, problem: &Problem) -> Evaluation {
    match schedule(config.cascade, config.arch, problem) {
        Ok(Outcome::Scheduled(s)) => {
            let report = simulate(&s, config.arch);
            let bad = report.non_finite();
            if bad.is_empty() {
                Evaluation::Ok(Box::new(report))
            } else {
                // Validated inputs keep every number finite; this is a bug, refused as one.
                Evaluation::Infeasible(format!(
                    "internal error: the model produced numbers that are not finite: {}",
                    bad.join(", ")
                ))
            }
        }
        Ok(Outcome::Infeasible(why)) => Evaluation::Infeasible(why.reason),
        Err(e) => Evaluation::Infeasible(e.to_string()),
    }
}

/// Subject against one baseline: how many times faster, and what fraction of the energy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub speedup: f64,
    pub energy: f64,
}

impl Ratio {
    fn attention(subject: &SimReport, baseline: &SimReport) -> Ratio {
        Ratio {
            speedup: baseline.latency_cycles / subject.latency_cycles,
            energy: subject.energy.total_pj() / baseline.energy.total_pj(),
        }
    }

    fn end_to_end(subject: &SimReport, baseline: &SimReport) -> Ratio {
        Ratio {
            speedup: baseline.end_to_end.latency_cycles / subject.end_to_end.latency_cycles,
            energy: subject.end_to_end.energy_pj / baseline.end_to_end.energy_pj,
        }
    }
}

/// One workload point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRow {
    pub workload: String,
    pub seq: u64,
    pub subject: Evaluation,
    pub baselines: Vec<Evaluation>,
    /// Per baseline; `None` where either side is infeasible.
    pub attention: Vec<Option<Ratio>>,
    pub end_to_end: Vec<Option<Ratio>>,
}

/// A full comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub subject: String,
    pub baselines: Vec<String>,
    pub rows: Vec<PointRow>,
    /// Arithmetic means over the feasible points, per baseline.
    pub mean_attention: Vec<Option<Ratio>>,
    pub mean_end_to_end: Vec<Option<Ratio>>,
}

/// Compares `subject` with every baseline at every problem.
pub fn compare(subject: Config<'_>, baselines: &[Config<'_>], problems: &[Problem]) -> Comparison {
    let rows: Vec<PointRow> = problems
        .iter()
        .map(|p| {
            let s = evaluate(subject, p);
            let bs: Vec<Evaluation> = baselines.iter().map(|&b| evaluate(b, p)).collect();
            let pair = |f: fn(&SimReport, &SimReport) -> Ratio| -> Vec<Option<Ratio>> {
                bs.iter()
                    .map(|b| Some(f(s.report()?, b.report()?)))
                    .collect()
            };
            PointRow {
                workload: p.label.clone(),
                seq: p.seq,
                attention: pair(Ratio::attention),
                end_to_end: pair(Ratio::end_to_end),
                subject: s,
                baselines: bs,
            }
        })
        .collect();
    let mean = |pick: fn(&PointRow) -> &Vec<Option<Ratio>>, k: usize| -> Option<Ratio> {
        let vals: Vec<Ratio> = rows.iter().filter_map(|r| pick(r)[k]).collect();
        (!vals.is_empty()).then(|| Ratio {
            speedup: vals.iter().map(|r| r.speedup).sum::<f64>() / vals.len() as f64,
            energy: vals.iter().map(|r| r.energy).sum::<f64>() / vals.len() as f64,
        })
    };
    let mean_attention = (0..baselines.len())
        .map(|k| mean(|r| &r.attention, k))
        .collect();
    let mean_end_to_end = (0..baselines.len())
        .map(|k| mean(|r| &r.end_to_end, k))
        .collect();
    Comparison {
        subject: subject.arch.name().to_string(),
        baselines: baselines
            .iter()
            .map(|b| b.arch.name().to_string())
            .collect(),
        rows,
        mean_attention,
        mean_end_to_end,
    }
}

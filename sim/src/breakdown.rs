//! Where every pJ and byte comes from: each action count priced, per phase and component.
//!
//! The report's energy totals are these items summed, so the parts add up by construction.
//! Compute and PE-register energy belong to the Einsum that spends it; global-buffer and DRAM
//! energy belong to the tensor moved (a buffer fill from DRAM is no one Einsum's); leakage
//! belongs to the component that leaks, over the phase's time (owner `leakage`). So the items
//! of [`EnergyBreakdown::by_einsum`], [`EnergyBreakdown::by_tensor`] and
//! [`EnergyBreakdown::leakage`] together, and those of [`EnergyBreakdown::by_component`]
//! alone, each sum to [`Energy::total_pj`].

use std::collections::BTreeMap;

use cascade_scheduler::{ArchSpec, Schedule};

use crate::Energy;

/// Which of the four energy totals an item adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EnergyKind {
    Compute,
    Register,
    Buffer,
    Dram,
    /// Static energy: a component's leakage per cycle × the cycles it is powered.
    Leakage,
}

/// One priced action count: `count` actions of `action` on `component`, for `owner`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyItem {
    /// Phase, from 0.
    pub phase: usize,
    pub kind: EnergyKind,
    /// A unit (`array2d`), a unit's PE registers (`array2d registers`), `global buffer` or
    /// `DRAM`; for leakage, a unit or `global buffer`.
    pub component: String,
    /// An energy-table action (`mac`, `exp`, …), `read` / `write`, or `leak` (per cycle).
    pub action: String,
    /// The Einsum (compute, registers), the tensor (buffer, DRAM) or `leakage`.
    pub owner: String,
    /// Actions over the whole layer; words for registers, buffer and DRAM; cycles for leakage.
    pub count: f64,
    /// Energy per action (per word for registers, buffer and DRAM), from the cost table.
    pub pj_per_action: f64,
    pub pj: f64,
}

/// Energy of one (phase, component, action), or of one (phase, owner), summed over the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyPart {
    pub phase: usize,
    /// `component action` for [`EnergyBreakdown::by_component`], the Einsum or tensor name
    /// for the others.
    pub name: String,
    pub count: f64,
    pub pj: f64,
}

/// Every priced action count of a schedule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EnergyBreakdown {
    pub items: Vec<EnergyItem>,
}

/// One tensor's traffic in one phase, over the whole layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorTraffic {
    pub phase: usize,
    pub tensor: String,
    pub dram_read_bytes: f64,
    pub dram_write_bytes: f64,
    pub buffer_read_words: f64,
    pub buffer_write_words: f64,
}

impl EnergyBreakdown {
    /// The four totals, each the sum of its items in order.
    pub fn totals(&self) -> Energy {
        let mut e = Energy::default();
        for it in &self.items {
            *match it.kind {
                EnergyKind::Compute => &mut e.compute_pj,
                EnergyKind::Register => &mut e.register_pj,
                EnergyKind::Buffer => &mut e.buffer_pj,
                EnergyKind::Dram => &mut e.dram_pj,
                EnergyKind::Leakage => &mut e.leakage_pj,
            } += it.pj;
        }
        e
    }

    /// Per phase, component and action (`array2d mac`, `global buffer read`, `DRAM write`),
    /// compute first, then registers, buffer, DRAM and leakage.
    pub fn by_component(&self) -> Vec<EnergyPart> {
        let mut items: Vec<&EnergyItem> = self.items.iter().collect();
        items.sort_by(|a, b| {
            (a.phase, a.kind, &a.component, &a.action).cmp(&(
                b.phase,
                b.kind,
                &b.component,
                &b.action,
            ))
        });
        group(items, |it| format!("{} {}", it.component, it.action))
    }

    /// Per phase and Einsum: its compute and PE-register energy.
    pub fn by_einsum(&self) -> Vec<EnergyPart> {
        let items = self.items.iter();
        group(
            items.filter(|it| matches!(it.kind, EnergyKind::Compute | EnergyKind::Register)),
            |it| it.owner.clone(),
        )
    }

    /// Per phase and leaking component: its static energy.
    pub fn leakage(&self) -> Vec<EnergyPart> {
        let items = self.items.iter();
        group(items.filter(|it| it.kind == EnergyKind::Leakage), |it| {
            it.component.clone()
        })
    }

    /// Per phase and tensor: its global-buffer and DRAM energy.
    pub fn by_tensor(&self) -> Vec<EnergyPart> {
        let items = self.items.iter();
        group(
            items.filter(|it| matches!(it.kind, EnergyKind::Buffer | EnergyKind::Dram)),
            |it| it.owner.clone(),
        )
    }
}

/// Sums items by phase and `name`, in the order each first appears.
fn group<'a>(
    items: impl IntoIterator<Item = &'a EnergyItem>,
    name: impl Fn(&EnergyItem) -> String,
) -> Vec<EnergyPart> {
    let mut parts: Vec<EnergyPart> = Vec::new();
    let mut index: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for it in items {
        let key = (it.phase, name(it));
        let k = *index.entry(key.clone()).or_insert_with(|| {
            parts.push(EnergyPart {
                phase: key.0,
                name: key.1,
                count: 0.0,
                pj: 0.0,
            });
            parts.len() - 1
        });
        parts[k].count += it.count;
        parts[k].pj += it.pj;
    }
    parts
}

/// Prices every action count of the schedule: each Einsum's compute actions and PE-register
/// accesses, and each tensor's buffer and DRAM words, per phase.
/// Leakage is not among them: it needs the phases' latencies ([`add_leakage`]).
pub fn energy_breakdown(schedule: &Schedule, arch: &ArchSpec) -> EnergyBreakdown {
    let n = schedule.instances() as f64;
    let table = arch.costs();
    let mut items = Vec::new();
    let mut push = |phase, kind, component: &str, action: &str, owner: &str, count: f64, per| {
        if count != 0.0 {
            items.push(EnergyItem {
                phase,
                kind,
                component: component.to_string(),
                action: action.to_string(),
                owner: owner.to_string(),
                count,
                pj_per_action: per,
                pj: count * per,
            });
        }
    };
    for e in &schedule.einsums {
        let unit = arch.unit(e.unit).name();
        for (action, &count) in &e.actions {
            let per = table.energy_pj(action).unwrap_or(0.0);
            let c = count as f64 * n;
            push(e.phase, EnergyKind::Compute, unit, action, &e.name, c, per);
        }
        let (reg_r, reg_w) = arch.register_pj(e.unit);
        let regs = format!("{unit} registers");
        let (r, w) = (e.register_reads as f64 * n, e.register_writes as f64 * n);
        push(
            e.phase,
            EnergyKind::Register,
            &regs,
            "read",
            &e.name,
            r,
            reg_r,
        );
        push(
            e.phase,
            EnergyKind::Register,
            &regs,
            "write",
            &e.name,
            w,
            reg_w,
        );
    }
    let (buf_r, buf_w) = table.buffer_word_pj(arch.buffer_bytes(), arch.word_bits());
    let dram_word = table.dram_word_pj(arch.word_bits());
    for (k, phase) in schedule.phases.iter().enumerate() {
        for (tensor, t) in &phase.traffic_by_tensor {
            let buf = "global buffer";
            push(
                k,
                EnergyKind::Buffer,
                buf,
                "read",
                tensor,
                t.buffer_read * n,
                buf_r,
            );
            push(
                k,
                EnergyKind::Buffer,
                buf,
                "write",
                tensor,
                t.buffer_write * n,
                buf_w,
            );
            push(
                k,
                EnergyKind::Dram,
                "DRAM",
                "read",
                tensor,
                t.dram_read * n,
                dram_word,
            );
            push(
                k,
                EnergyKind::Dram,
                "DRAM",
                "write",
                tensor,
                t.dram_write * n,
                dram_word,
            );
        }
    }
    EnergyBreakdown { items }
}

/// Adds each component's leakage over each phase's `latency_cycles` (whole layer): static
/// energy per cycle from the cost table × the cycles the phase lasts, busy or not.
pub fn add_leakage(breakdown: &mut EnergyBreakdown, arch: &ArchSpec, latency_cycles: &[f64]) {
    breakdown.items.retain(|it| it.kind != EnergyKind::Leakage);
    let rates = arch.leakage_pj_per_cycle();
    for (phase, &cycles) in latency_cycles.iter().enumerate() {
        for (component, rate) in &rates {
            if cycles > 0.0 {
                breakdown.items.push(EnergyItem {
                    phase,
                    kind: EnergyKind::Leakage,
                    component: component.clone(),
                    action: "leak".into(),
                    owner: "leakage".into(),
                    count: cycles,
                    pj_per_action: *rate,
                    pj: cycles * rate,
                });
            }
        }
    }
}

/// The whole chip's static energy per cycle: every leaking component's, summed.
pub fn leakage_rate_pj(arch: &ArchSpec) -> f64 {
    arch.leakage_pj_per_cycle().iter().map(|(_, pj)| pj).sum()
}

/// Each tensor's DRAM bytes and buffer words per phase, over the whole layer.
pub fn traffic_by_tensor(schedule: &Schedule, arch: &ArchSpec) -> Vec<TensorTraffic> {
    let n = schedule.instances() as f64;
    let word_bytes = arch.word_bytes() as f64;
    let mut out = Vec::new();
    for (k, phase) in schedule.phases.iter().enumerate() {
        for (tensor, t) in &phase.traffic_by_tensor {
            out.push(TensorTraffic {
                phase: k,
                tensor: tensor.clone(),
                dram_read_bytes: t.dram_read * n * word_bytes,
                dram_write_bytes: t.dram_write * n * word_bytes,
                buffer_read_words: t.buffer_read * n,
                buffer_write_words: t.buffer_write * n,
            });
        }
    }
    out
}

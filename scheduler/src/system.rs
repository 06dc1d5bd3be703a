//! Systems of chips: N copies of one spatial-array architecture joined by an interconnect, and
//! the partition of an attention problem over them.
//!
//! `arch-configs/systems/*.toml` names the chip (an architecture file), the chip count, the
//! interconnect (ring, 2D torus or switch; per-link bandwidth, latency and energy per bit;
//! whether a chip overlaps sending with computing) and the partition as data: which rank is
//! split over chips (`query`, `key` or `heads`), how sequence chunks are assigned
//! (`contiguous`, `striped`, `zigzag`) and the communication pattern (`ring`,
//! `bidirectional-ring`, `all-to-all`). Ring attention is `query` + `ring`, TokenRing's
//! bidirectional ring `query` + `bidirectional-ring`, DeepSpeed-Ulysses `heads` + `all-to-all`,
//! context-parallel decode `key` + a collective that combines the partial states; the causal
//! load balance of zig-zag or striped assignment is the `assignment` field. No scheme has a code
//! path of its own.
//!
//! [`partition`] is the scheduler of a system: it cuts the sequence into chunks of whole array
//! tiles, gives each chip its chunks, and counts the live tiles of every (query chunk, key
//! chunk) pair from the same region of the tile's filters the single-chip scheduler uses
//! ([`crate::schedule::tile_grid`], [`cascade_ir::occupancy`]), so a causal mask counts only
//! the tiles it leaves live. A chip's compute is priced by the single-chip model on the chip's
//! sub-problem (`chip_schedule`); what each step computes and receives, and the collectives
//! before and after, are data for `sim` to price.

use std::collections::BTreeMap;

use cascade_ir::Cascade;
use cascade_ir::occupancy::{self, Affine, Cond, Grid, Region, TileCounts};
use cascade_ir::ops::OpKind;
use serde::Deserialize;

use crate::arch::{ArchSpec, ConfigError, PointOp};
use crate::schedule::{self, Infeasible, Outcome, Schedule, ScheduleError};
use crate::workload::{HEAD_RANK, Problem};

/// The most chips a system may have: every per-step table (chips × steps) stays countable.
pub const MAX_CHIPS: u64 = 1 << 16;
/// The fastest link a file may give, in GB/s (10^9 bytes per second), per direction.
const MAX_LINK_GB_S: f64 = 1e6;
/// The longest link latency a file may give, in ns.
const MAX_LATENCY_NS: f64 = 1e9;
/// The most energy per bit a file may give, in pJ.
const MAX_PJ_PER_BIT: f64 = 1e6;

/// `arch-configs/systems/*.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSystem {
    pub name: Option<String>,
    /// The chip: a shipped architecture's name or an architecture file beside this one.
    pub chip: Option<String>,
    pub chips: Option<i64>,
    pub interconnect: Option<RawInterconnect>,
    pub partition: Option<RawPartition>,
}

/// How chips are joined.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterconnect {
    /// `ring`, `torus2d` or `switch`.
    pub topology: Option<String>,
    /// Bandwidth of one link in one direction, GB/s (10^9 bytes per second).
    pub link_gb_s: Option<f64>,
    /// Latency of one transfer over one link, ns.
    pub link_latency_ns: Option<f64>,
    /// Energy of one bit over one link, pJ.
    pub link_pj_per_bit: Option<f64>,
    /// Whether a chip sends and receives while it computes (double-buffered blocks).
    pub overlap: Option<bool>,
}

/// How the problem is split over chips.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartition {
    /// `query`, `key` or `heads`.
    pub split: Option<String>,
    /// `contiguous`, `striped` or `zigzag`.
    pub assignment: Option<String>,
    /// `ring`, `bidirectional-ring` or `all-to-all`.
    pub exchange: Option<String>,
}

impl RawSystem {
    pub fn from_toml(text: &str) -> Result<RawSystem, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            message: e.to_string().trim_end().to_string(),
        })
    }
}

/// The shape of the interconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Each chip links to two neighbours, one link per direction each way.
    Ring,
    /// A `rows × cols` torus (the most nearly square factorisation of the chip count), links in
    /// both directions along both dimensions; dimension-ordered routing.
    Torus2d,
    /// Every chip has one link (each direction) into a non-blocking switch.
    Switch,
}

/// The rank distributed over chips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Each chip keeps its queries; key/value blocks travel (ring attention).
    Query,
    /// Each chip keeps its keys and values and sees every query; the partial states (running
    /// max, normaliser, numerator) are combined afterwards (split-K across chips).
    Key,
    /// Each chip runs whole sequences for its share of heads; all-to-alls before and after
    /// (DeepSpeed-Ulysses).
    Heads,
}

/// Which sequence chunks a chip gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// N chunks, chip i the i-th.
    Contiguous,
    /// Chunks of one array tile, dealt round-robin (striped attention).
    Striped,
    /// 2N chunks, chip i the i-th and the (2N−1−i)-th (zig-zag context parallelism).
    ZigZag,
}

/// The communication pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// To the next chip only; N−1 steps.
    Ring,
    /// To both neighbours at once on separate links; ⌈(N−1)/2⌉ steps.
    BidirectionalRing,
    /// Every chip to every other at once, over the topology's links.
    AllToAll,
}

/// A validated system.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSpec {
    name: String,
    chip_name: String,
    chip: ArchSpec,
    chips: u64,
    topology: Topology,
    link_bytes_per_s: f64,
    link_latency_s: f64,
    link_pj_per_bit: f64,
    overlap: bool,
    split: Split,
    assignment: Assignment,
    exchange: Exchange,
}

fn pick<T: Copy>(
    value: Option<&str>,
    field: &str,
    choices: &[(&str, T)],
    default: Option<T>,
    errs: &mut Vec<ConfigError>,
) -> Option<T> {
    let names = || {
        choices
            .iter()
            .map(|c| format!("\"{}\"", c.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match value {
        None if default.is_some() => default,
        None => {
            errs.push(ConfigError::Field {
                field: field.into(),
                problem: format!("is missing; use one of {}", names()),
            });
            None
        }
        Some(v) => match choices.iter().find(|c| c.0 == v) {
            Some(c) => Some(c.1),
            None => {
                errs.push(ConfigError::Field {
                    field: field.into(),
                    problem: format!("is `{v}`; use one of {}", names()),
                });
                None
            }
        },
    }
}

fn bounded(
    value: Option<f64>,
    field: &str,
    (lo, positive, hi): (f64, bool, f64),
    example: &str,
    errs: &mut Vec<ConfigError>,
) -> Option<f64> {
    let Some(v) = value else {
        errs.push(ConfigError::Field {
            field: field.into(),
            problem: format!("is missing; e.g. `{example}`"),
        });
        return None;
    };
    let low_ok = if positive { v > lo } else { v >= lo };
    if v.is_finite() && low_ok && v <= hi {
        Some(v)
    } else {
        let low = if positive { "above" } else { "at least" };
        errs.push(ConfigError::Field {
            field: field.into(),
            problem: format!("is {v}; it must be a finite number {low} {lo} and at most {hi}"),
        });
        None
    }
}

impl SystemSpec {
    /// Validates a system; `chip` resolves the chip's name to an architecture (its error is
    /// reported against the `chip` field).
    pub fn new(
        raw: RawSystem,
        chip: &dyn Fn(&str) -> Result<ArchSpec, String>,
    ) -> Result<SystemSpec, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let field = |f: &str, p: String| ConfigError::Field {
            field: f.into(),
            problem: p,
        };
        let name = raw.name.filter(|n| !n.trim().is_empty());
        if name.is_none() {
            errs.push(field(
                "name",
                "is missing; add `name = \"my-system\"`".into(),
            ));
        }
        let chip_name = raw.chip.filter(|c| !c.trim().is_empty());
        let arch = match &chip_name {
            None => {
                errs.push(field(
                    "chip",
                    "is missing; name the architecture of one chip, e.g. `chip = \"fusemax\"`"
                        .into(),
                ));
                None
            }
            Some(c) => match chip(c) {
                Ok(a) => Some(a),
                Err(why) => {
                    errs.push(field("chip", format!("`{c}`: {why}")));
                    None
                }
            },
        };
        let chips = match raw.chips {
            Some(n) if (1..=MAX_CHIPS as i64).contains(&n) => Some(n as u64),
            Some(n) => {
                errs.push(field(
                    "chips",
                    format!("is {n}; it must be between 1 and {MAX_CHIPS}"),
                ));
                None
            }
            None => {
                errs.push(field("chips", "is missing; e.g. `chips = 64`".into()));
                None
            }
        };
        let link = raw.interconnect.unwrap_or(RawInterconnect {
            topology: None,
            link_gb_s: None,
            link_latency_ns: None,
            link_pj_per_bit: None,
            overlap: None,
        });
        let topology = pick(
            link.topology.as_deref(),
            "interconnect.topology",
            &[
                ("ring", Topology::Ring),
                ("torus2d", Topology::Torus2d),
                ("switch", Topology::Switch),
            ],
            None,
            &mut errs,
        );
        let gb_s = bounded(
            link.link_gb_s,
            "interconnect.link_gb_s",
            (0.0, true, MAX_LINK_GB_S),
            "link_gb_s = 100.0",
            &mut errs,
        );
        let latency_ns = bounded(
            link.link_latency_ns,
            "interconnect.link_latency_ns",
            (0.0, false, MAX_LATENCY_NS),
            "link_latency_ns = 1000.0",
            &mut errs,
        );
        let pj_per_bit = bounded(
            link.link_pj_per_bit,
            "interconnect.link_pj_per_bit",
            (0.0, false, MAX_PJ_PER_BIT),
            "link_pj_per_bit = 5.0",
            &mut errs,
        );
        let overlap = link.overlap.unwrap_or(true);
        let (split, assignment, exchange) = check_partition(raw.partition, &mut errs);
        if errs.is_empty() {
            Ok(SystemSpec {
                name: name.expect("checked"),
                chip_name: chip_name.expect("checked"),
                chip: arch.expect("checked"),
                chips: chips.expect("checked"),
                topology: topology.expect("checked"),
                link_bytes_per_s: gb_s.expect("checked") * 1e9,
                link_latency_s: latency_ns.expect("checked") * 1e-9,
                link_pj_per_bit: pj_per_bit.expect("checked"),
                overlap,
                split: split.expect("checked"),
                assignment: assignment.expect("checked"),
                exchange: exchange.expect("checked"),
            })
        } else {
            Err(errs)
        }
    }

    /// The same system with `chips` chips (a scaling study's point).
    pub fn with_chips(&self, chips: u64) -> Result<SystemSpec, ConfigError> {
        if !(1..=MAX_CHIPS).contains(&chips) {
            return Err(ConfigError::Field {
                field: "chips".into(),
                problem: format!("is {chips}; it must be between 1 and {MAX_CHIPS}"),
            });
        }
        Ok(SystemSpec {
            chips,
            ..self.clone()
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// The chip's architecture name as the file gives it.
    pub fn chip_name(&self) -> &str {
        &self.chip_name
    }
    pub fn chip(&self) -> &ArchSpec {
        &self.chip
    }
    pub fn chips(&self) -> u64 {
        self.chips
    }
    pub fn topology(&self) -> Topology {
        self.topology
    }
    pub fn link_bytes_per_s(&self) -> f64 {
        self.link_bytes_per_s
    }
    pub fn link_latency_s(&self) -> f64 {
        self.link_latency_s
    }
    pub fn link_pj_per_bit(&self) -> f64 {
        self.link_pj_per_bit
    }
    pub fn overlap(&self) -> bool {
        self.overlap
    }
    pub fn split(&self) -> Split {
        self.split
    }
    pub fn assignment(&self) -> Assignment {
        self.assignment
    }
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    /// The torus's `rows × cols`: the factorisation of the chip count closest to square
    /// (`rows ≤ cols`); a prime count is a `1 × N` torus, a ring.
    pub fn torus_dims(&self) -> (u64, u64) {
        let n = self.chips;
        let mut rows = (n as f64).sqrt() as u64;
        while rows > 1 && !n.is_multiple_of(rows) {
            rows -= 1;
        }
        let rows = rows.max(1);
        (rows, n / rows)
    }

    /// The same system with another link bandwidth (a crossover study).
    pub fn with_link_gb_s(&self, gb_s: f64) -> Result<SystemSpec, ConfigError> {
        let mut errs = Vec::new();
        let v = bounded(
            Some(gb_s),
            "interconnect.link_gb_s",
            (0.0, true, MAX_LINK_GB_S),
            "link_gb_s = 100.0",
            &mut errs,
        );
        match v {
            Some(v) => Ok(SystemSpec {
                link_bytes_per_s: v * 1e9,
                ..self.clone()
            }),
            None => Err(errs.remove(0)),
        }
    }
}

type PartitionChoice = (Option<Split>, Option<Assignment>, Option<Exchange>);

fn check_partition(raw: Option<RawPartition>, errs: &mut Vec<ConfigError>) -> PartitionChoice {
    let raw = raw.unwrap_or(RawPartition {
        split: None,
        assignment: None,
        exchange: None,
    });
    let split = pick(
        raw.split.as_deref(),
        "partition.split",
        &[
            ("query", Split::Query),
            ("key", Split::Key),
            ("heads", Split::Heads),
        ],
        None,
        errs,
    );
    let assignment = pick(
        raw.assignment.as_deref(),
        "partition.assignment",
        &[
            ("contiguous", Assignment::Contiguous),
            ("striped", Assignment::Striped),
            ("zigzag", Assignment::ZigZag),
        ],
        Some(Assignment::Contiguous),
        errs,
    );
    let exchange = pick(
        raw.exchange.as_deref(),
        "partition.exchange",
        &[
            ("ring", Exchange::Ring),
            ("bidirectional-ring", Exchange::BidirectionalRing),
            ("all-to-all", Exchange::AllToAll),
        ],
        None,
        errs,
    );
    let field = |f: &str, p: &str| ConfigError::Field {
        field: f.into(),
        problem: p.into(),
    };
    match (split, exchange) {
        (Some(Split::Query), Some(Exchange::AllToAll)) => errs.push(field(
            "partition.exchange",
            "is `all-to-all`, but a query split passes key/value blocks from chip to chip; use \"ring\" or \"bidirectional-ring\" (a switch or torus carries them one hop per step)",
        )),
        (Some(Split::Heads), Some(Exchange::Ring | Exchange::BidirectionalRing)) => {
            errs.push(field(
                "partition.exchange",
                "must be \"all-to-all\" for a head split: every chip trades its sequence shard of every head for the whole sequence of its heads (the topology sets what that costs)",
            ))
        }
        _ => {}
    }
    if split == Some(Split::Heads)
        && raw.assignment.is_some()
        && assignment != Some(Assignment::Contiguous)
    {
        errs.push(field(
            "partition.assignment",
            "has no meaning for a head split (every chip runs the whole sequence of its heads); leave it out",
        ));
    }
    (split, assignment, exchange)
}

/// When a collective runs relative to the chips' compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Before,
    After,
}

/// A collective over all chips: every chip sends one piece of `piece_bytes` to every other chip
/// (all-gather, reduce-scatter and all-to-all have this traffic; they differ in content).
#[derive(Debug, Clone, PartialEq)]
pub struct Collective {
    pub name: &'static str,
    pub when: When,
    pub piece_bytes: u64,
}

/// The combine of partial attention states that a key split leaves (the split-K combine of
/// running max, normaliser and numerator): each chip merges `partials` states for each of its
/// `rows` (query, head) rows; one merge costs `ops` per row.
#[derive(Debug, Clone, PartialEq)]
pub struct Combine {
    pub rows: u64,
    pub partials: u64,
    pub ops: BTreeMap<PointOp, u32>,
}

/// A problem partitioned over a system: what each chip computes and receives at each step.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemSchedule {
    pub system: String,
    pub chips: u64,
    pub problem: Problem,
    /// The sub-problem one chip runs, scheduled by the single-chip scheduler; its latency per
    /// live tile prices every step.
    pub chip_schedule: Schedule,
    /// Live tiles of `chip_schedule`'s grid (per instance).
    pub chip_tiles: u64,
    /// Live tiles of the whole problem's grid (per instance): what the chips share.
    pub total_tiles: u64,
    /// Tiles of one full (query chunk, key chunk) pair of the largest chunks: the dense block.
    pub block_tiles: u64,
    /// Bytes of the largest key/value block a step receives.
    pub block_bytes: u64,
    /// Blocks a chip receives (and computes) per step: 2 on a bidirectional ring.
    pub blocks_per_step: u64,
    pub steps: u64,
    /// `chips × steps`, chip-major: live tiles (per instance) chip `c` computes at step `s`.
    pub work: Vec<u64>,
    /// `chips × steps`, chip-major: bytes chip `c` must have received before step `s` (the
    /// largest over its links; zero at step 0).
    pub receive: Vec<u64>,
    /// `chips × steps`: all bytes chip `c` receives for step `s` (both directions).
    pub received: Vec<u64>,
    /// `chips × steps`: the chip that sent each received block (the source of the largest).
    pub source: Vec<u64>,
    pub collectives: Vec<Collective>,
    pub combine: Option<Combine>,
}

impl SystemSchedule {
    /// Live tiles chip `c` computes over all steps.
    pub fn chip_work(&self, c: u64) -> u64 {
        let s = self.steps as usize;
        self.work[c as usize * s..(c as usize + 1) * s].iter().sum()
    }
}

/// The result of partitioning: a system schedule, or the reason there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemOutcome {
    Scheduled(Box<SystemSchedule>),
    Infeasible(Infeasible),
}

/// Words per token of each tensor a partition moves, for the whole batch.
struct TokenWords {
    q: u64,
    kv: u64,
    heads: u64,
    kv_heads: u64,
    e: u64,
    f: u64,
}

fn token_words(problem: &Problem) -> Result<TokenWords, Infeasible> {
    let size = |r: &str| problem.sizes.get(r).copied();
    let (Some(e), Some(f)) = (size("E"), size("F")) else {
        return Err(Infeasible::new(
            "the problem gives no head dims E and F, so the bytes a partition moves are unknown",
        ));
    };
    let heads = size(HEAD_RANK).unwrap_or(problem.heads).max(1);
    let kv_heads = size("G").unwrap_or(heads).max(1);
    let b = problem.batch;
    let too_large = || Infeasible::new("the words per token of the problem do not fit 64 bits");
    let mul = |a: u64, x: u64| a.checked_mul(x).ok_or_else(too_large);
    Ok(TokenWords {
        q: mul(mul(e, heads)?, b)?,
        kv: mul(mul(e.checked_add(f).ok_or_else(too_large)?, kv_heads)?, b)?,
        heads,
        kv_heads,
        e,
        f,
    })
}

/// Partitions `problem` (running `cascade`) over `system`'s chips.
pub fn partition(
    cascade: &Cascade,
    system: &SystemSpec,
    problem: &Problem,
) -> Result<SystemOutcome, ScheduleError> {
    let words = match token_words(problem) {
        Ok(w) => w,
        Err(why) => return Ok(SystemOutcome::Infeasible(why)),
    };
    match system.split {
        Split::Heads => heads_split(cascade, system, problem, &words),
        Split::Query => sequence_split(cascade, system, problem, &words, false),
        Split::Key => sequence_split(cascade, system, problem, &words, true),
    }
}

fn infeasible(reason: String) -> Result<SystemOutcome, ScheduleError> {
    Ok(SystemOutcome::Infeasible(Infeasible::new(reason)))
}

/// The single-chip schedule of a sub-problem, or why there is none.
fn chip_schedule(
    cascade: &Cascade,
    system: &SystemSpec,
    sub: &Problem,
) -> Result<Result<(Schedule, u64), Infeasible>, ScheduleError> {
    let arch = system.chip();
    let schedule = match schedule::schedule(cascade, arch, sub)? {
        Outcome::Scheduled(s) => *s,
        Outcome::Infeasible(why) => {
            return Ok(Err(Infeasible::new(format!(
                "one chip's share cannot run on `{}`: {why}",
                arch.name()
            ))));
        }
    };
    // Live tiles: those the tile's filters leave, as the schedule's phases count them.
    let tiles = schedule
        .phases
        .first()
        .map_or(0, |p| p.occupancy.partial + p.occupancy.full);
    Ok(Ok((schedule, tiles)))
}

/// Ulysses: each chip runs the whole sequence for `heads / chips` heads, after an all-to-all
/// that turns its sequence shard of every head into the whole sequence of its heads, and
/// before one that turns its heads' outputs back into a sequence shard.
fn heads_split(
    cascade: &Cascade,
    system: &SystemSpec,
    problem: &Problem,
    words: &TokenWords,
) -> Result<SystemOutcome, ScheduleError> {
    let n = system.chips;
    let (h, g) = (words.heads, words.kv_heads);
    if !h.is_multiple_of(n) {
        let divisors: Vec<String> = (1..=h)
            .filter(|d| h.is_multiple_of(*d))
            .map(|d| d.to_string())
            .collect();
        return infeasible(format!(
            "a head split needs the heads divisible by the chips: {h} heads do not split over {n} chips; use {} chips, or split the query rank (`split = \"query\"`)",
            divisors.join(", ")
        ));
    }
    // Key/value heads: a share each, or each one copied to the chips of its query heads.
    let kv_per_chip = if g.is_multiple_of(n) {
        g / n
    } else if n.is_multiple_of(g) {
        1
    } else {
        return infeasible(format!(
            "a head split needs the {g} key/value heads divisible by the {n} chips or the chips by them, so each chip holds whole groups"
        ));
    };
    // Instances are batch × heads for a cascade that leaves the heads implicit, and the head
    // ranks' sizes for one that declares them: a chip's share either way.
    let mut sub = problem.clone();
    sub.heads = h / n;
    sub.sizes.insert(HEAD_RANK.into(), h / n);
    sub.sizes.insert("G".into(), kv_per_chip);
    let (chip, tiles) = match chip_schedule(cascade, system, &sub)? {
        Ok(x) => x,
        Err(why) => return Ok(SystemOutcome::Infeasible(why)),
    };
    let wb = system.chip().word_bytes();
    let seq = problem.seq;
    let shard = seq.div_ceil(n);
    // A shard's words for one destination chip: its tokens of that chip's heads.
    // Head dims are at most 2^24 and heads 2^16, so the words per token fit; the products
    // with the batch and the tokens are checked.
    let qkv_words = words.e * (h / n) + (words.e + words.f) * kv_per_chip;
    let piece = |words: u64| {
        shard
            .checked_mul(words)
            .and_then(|w| w.checked_mul(problem.batch))
            .and_then(|w| w.checked_mul(wb))
    };
    let (qkv_piece, out_piece) = (piece(qkv_words), piece(words.f * (h / n)));
    let (Some(qkv_piece), Some(out_piece)) = (qkv_piece, out_piece) else {
        return Err(ScheduleError::TooLarge {
            given: format!("{} over {n} chips", problem.label),
        });
    };
    let collectives = if n > 1 {
        vec![
            Collective {
                name: "all-to-all Q, K, V (sequence to heads)",
                when: When::Before,
                piece_bytes: qkv_piece,
            },
            Collective {
                name: "all-to-all output (heads to sequence)",
                when: When::After,
                piece_bytes: out_piece,
            },
        ]
    } else {
        Vec::new()
    };
    Ok(SystemOutcome::Scheduled(Box::new(SystemSchedule {
        system: system.name.clone(),
        chips: n,
        problem: problem.clone(),
        chip_schedule: chip,
        chip_tiles: tiles,
        total_tiles: tiles * n,
        block_tiles: tiles,
        block_bytes: 0,
        blocks_per_step: 1,
        steps: 1,
        work: vec![tiles; n as usize],
        receive: vec![0; n as usize],
        received: vec![0; n as usize],
        source: (0..n).collect(),
        collectives,
        combine: None,
    })))
}

/// Sequence chunks of one axis: `count` chunks of whole tiles over `tiles` tiles and the chip
/// that owns each.
struct Chunks {
    /// `count + 1` tile boundaries.
    bounds: Vec<u64>,
    owner: Vec<u64>,
    striped: bool,
}

impl Chunks {
    fn new(tiles: u64, chips: u64, assignment: Assignment) -> Chunks {
        let count = match assignment {
            Assignment::Contiguous => chips,
            // One chip holds the whole sequence: one chunk.
            Assignment::ZigZag if chips == 1 => 1,
            Assignment::ZigZag => 2 * chips,
            Assignment::Striped => tiles,
        };
        let bounds = (0..=count)
            .map(|k| (u128::from(k) * u128::from(tiles) / u128::from(count)) as u64)
            .collect();
        let owner = (0..count)
            .map(|k| match assignment {
                Assignment::Contiguous => k,
                Assignment::ZigZag if k < chips => k,
                Assignment::ZigZag => 2 * chips - 1 - k,
                Assignment::Striped => k % chips,
            })
            .collect();
        Chunks {
            bounds,
            owner,
            striped: assignment == Assignment::Striped,
        }
    }

    fn count(&self) -> usize {
        self.owner.len()
    }

    /// The items (keys, or query columns) each of `chips` holds, for tiles of `tile` items
    /// over `limit` in all.
    fn held(&self, tile: u64, limit: u64, chips: u64) -> Vec<u64> {
        let mut held = vec![0u64; chips as usize];
        for k in 0..self.count() {
            let lo = self.bounds[k] * tile;
            let hi = (self.bounds[k + 1] * tile).min(limit);
            held[self.owner[k] as usize] += hi - lo;
        }
        held
    }

    fn tiles(&self, k: usize) -> u64 {
        self.bounds[k + 1] - self.bounds[k]
    }

    /// Adds `per_tile × tiles` of chunks `j0..j1` to their owners' entries of `row`.
    fn add_range(&self, row: &mut [u64], j0: usize, j1: usize, per_tile: u64) {
        let n = row.len();
        if self.striped && j1 - j0 > n {
            // Round-robin: every chip gets ⌊len/N⌋ chunks, the first `len mod N` after `j0`
            // one more.
            let len = (j1 - j0) as u64;
            let (each, extra) = (len / n as u64, (len % n as u64) as usize);
            for (k, slot) in row.iter_mut().enumerate() {
                let offset = (k + n - j0 % n) % n;
                *slot += per_tile * (each + u64::from(offset < extra));
            }
            return;
        }
        for j in j0..j1 {
            row[self.owner[j] as usize] += per_tile * self.tiles(j);
        }
    }
}

/// Counts the live tiles of every (chip's queries, chip's keys) pair: `chips × chips`,
/// query-chip major.
fn pair_work(
    grid: &Grid,
    region: Option<&Region>,
    queries: &Chunks,
    keys: &Chunks,
    chips: u64,
) -> Vec<u64> {
    let n = chips as usize;
    let mut pairs = vec![0u64; n * n];
    let mut mixed = region.map(MixedPairs::new);
    for i in 0..queries.count() {
        let (q0, q1) = (queries.bounds[i], queries.bounds[i + 1]);
        if q0 == q1 {
            continue;
        }
        let row = &mut pairs[queries.owner[i] as usize * n..(queries.owner[i] as usize + 1) * n];
        let Some(region) = region else {
            keys.add_range(row, 0, keys.count(), q1 - q0);
            continue;
        };
        let mixed = mixed.as_mut().expect("made with the region");
        let (p_lo, p_hi) = grid.queries_of(q0, q1 - 1);
        let mut band = BandCounts::new(region, grid, p_lo, p_hi);
        // Ranges of key chunks, split until each is empty for the band, full for it, or one
        // chunk (then counted row by row).
        let mut stack = vec![(0usize, keys.count())];
        while let Some((j0, j1)) = stack.pop() {
            let (k0, k1) = (keys.bounds[j0], keys.bounds[j1]);
            if k0 == k1 {
                continue;
            }
            let (lo, hi) = (band.at(k0), band.at(k1));
            if hi.empty - lo.empty == k1 - k0 {
                continue;
            }
            if hi.full - lo.full == k1 - k0 {
                keys.add_range(row, j0, j1, q1 - q0);
                continue;
            }
            if j1 - j0 > 1 {
                let mid = j0 + (j1 - j0) / 2;
                stack.push((j0, mid));
                stack.push((mid, j1));
                continue;
            }
            let live = mixed.live(grid, q0, q1, k0, k1);
            row[keys.owner[j0] as usize] += live;
        }
    }
    pairs
}

/// The live tiles of chunk pairs that are neither empty nor full for their band, counted row
/// by row. A region whose every condition is unchanged when keys and queries move together
/// (`a_m + a_p = 0`: causal, sliding windows) gives every pair at the same place relative to
/// the diagonal the same count, so each is counted once.
struct MixedPairs<'a> {
    region: &'a Region,
    along_diagonal: bool,
    seen: std::collections::HashMap<[i64; 5], u64>,
}

impl<'a> MixedPairs<'a> {
    fn new(region: &'a Region) -> MixedPairs<'a> {
        let along_diagonal = region.disjuncts.iter().flatten().all(|c| match c {
            Cond::Affine(a, _) => a.m.checked_add(a.p) == Some(0),
            Cond::Unknown => false,
        });
        MixedPairs {
            region,
            along_diagonal,
            seen: std::collections::HashMap::new(),
        }
    }

    /// Live tiles of query tiles `q0..q1` × key tiles `k0..k1`.
    fn live(&mut self, grid: &Grid, q0: u64, q1: u64, k0: u64, k1: u64) -> u64 {
        let (first, _) = grid.queries_of(q0, q0);
        let (_, last) = grid.queries_of(q1 - 1, q1 - 1);
        let key_first = (k0 * grid.key_tile) as i64;
        let key_count = ((k1 * grid.key_tile).min(grid.keys) - k0 * grid.key_tile) as i64;
        // Where a tile's queries start within a query repeats every `stride / tile` tiles.
        let phase = q0 % (grid.stride.max(1) / grid.query_tile.max(1)).max(1);
        let key = [
            key_first - first,
            key_count,
            (q1 - q0) as i64,
            last - first,
            phase as i64,
        ];
        if self.along_diagonal
            && let Some(&n) = self.seen.get(&key)
        {
            return n;
        }
        // The key chunk as a grid of its own: the region moved so its first key is 0, one
        // classification per row.
        let n = match key_window(self.region, grid, k0, k1) {
            Some((moved, chunk)) => (q0..q1)
                .map(|t| {
                    let (lo, hi) = grid.queries_of(t, t);
                    occupancy::classify(&moved, &chunk, lo, hi).live()
                })
                .sum(),
            // A shift that does not fit 64 bits: every tile of the pair counts as live.
            None => (q1 - q0) * (k1 - k0),
        };
        if self.along_diagonal {
            self.seen.insert(key, n);
        }
        n
    }
}

/// Key tiles `k0..k1` as a grid of their own: the region with key `m` read as `m + k0·tile`
/// (each condition's constant moved by its key coefficient), or `None` when a constant would
/// leave 64 bits.
fn key_window(region: &Region, grid: &Grid, k0: u64, k1: u64) -> Option<(Region, Grid)> {
    let first = i64::try_from(k0.checked_mul(grid.key_tile)?).ok()?;
    let disjuncts = region
        .disjuncts
        .iter()
        .map(|conj| {
            conj.iter()
                .map(|cond| match *cond {
                    Cond::Affine(a, op) => Some(Cond::Affine(
                        Affine {
                            c: a.c.checked_add(a.m.checked_mul(first)?)?,
                            ..a
                        },
                        op,
                    )),
                    Cond::Unknown => Some(Cond::Unknown),
                })
                .collect::<Option<Vec<Cond>>>()
        })
        .collect::<Option<Vec<_>>>()?;
    let keys = (k1 * grid.key_tile).min(grid.keys) - k0 * grid.key_tile;
    Some((Region { disjuncts }, Grid { keys, ..*grid }))
}

/// Key tiles `0..k_tiles` of a band by verdict.
fn classify_prefix(region: &Region, grid: &Grid, k_tiles: u64, p_lo: i64, p_hi: i64) -> TileCounts {
    if k_tiles == 0 {
        return TileCounts::default();
    }
    let prefix = Grid {
        keys: (k_tiles * grid.key_tile).min(grid.keys),
        ..*grid
    };
    occupancy::classify(region, &prefix, p_lo, p_hi)
}

/// A band's prefix counts, remembered by boundary.
struct BandCounts<'a> {
    region: &'a Region,
    grid: &'a Grid,
    p_lo: i64,
    p_hi: i64,
    seen: Vec<(u64, TileCounts)>,
}

impl<'a> BandCounts<'a> {
    fn new(region: &'a Region, grid: &'a Grid, p_lo: i64, p_hi: i64) -> BandCounts<'a> {
        BandCounts {
            region,
            grid,
            p_lo,
            p_hi,
            seen: Vec::new(),
        }
    }

    fn at(&mut self, k: u64) -> TileCounts {
        if let Some(&(_, c)) = self.seen.iter().find(|(b, _)| *b == k) {
            return c;
        }
        let c = classify_prefix(self.region, self.grid, k, self.p_lo, self.p_hi);
        self.seen.push((k, c));
        c
    }
}

/// Ring attention and its relatives (query split), and the split-K combine across chips (key
/// split): the sequence in chunks of whole tiles, assigned to chips, and the pair work counted.
fn sequence_split(
    cascade: &Cascade,
    system: &SystemSpec,
    problem: &Problem,
    words: &TokenWords,
    key_split: bool,
) -> Result<SystemOutcome, ScheduleError> {
    let n = system.chips;
    let arch = system.chip();
    let tiles = match schedule::tile_grid(cascade, arch, problem)? {
        Ok(t) => t,
        Err(why) => return Ok(SystemOutcome::Infeasible(why)),
    };
    let grid = tiles.grid;
    let (n_keys, n_cols) = (grid.key_tiles(), grid.query_tiles());
    let chunks_wanted = match system.assignment {
        Assignment::Contiguous => n,
        Assignment::ZigZag if n > 1 => 2 * n,
        _ => n,
    };
    if n_keys < chunks_wanted || n_cols < chunks_wanted {
        let how = match system.assignment {
            Assignment::ZigZag => {
                "zig-zag assignment needs two chunks of at least one tile per chip"
            }
            _ => "each chip needs at least one tile",
        };
        return infeasible(format!(
            "{} keys and {} queries are {n_keys} key tiles of {} and {n_cols} query tiles of {}; {how}, {chunks_wanted} of each over {n} chips; use fewer chips or a longer sequence",
            grid.keys,
            problem.queries(),
            grid.key_tile,
            grid.query_tile
        ));
    }
    let stride = grid.stride.max(1);
    if grid.query_tile % stride != 0 && stride % grid.query_tile != 0 {
        return infeasible(format!(
            "a query tile of {} columns does not hold whole queries of {stride} columns each, so the queries cannot be cut into chunks at tile boundaries",
            grid.query_tile
        ));
    }
    let keys = Chunks::new(n_keys, n, system.assignment);
    let queries = Chunks::new(n_cols, n, system.assignment);
    let pairs = pair_work(&grid, tiles.region.as_ref(), &queries, &keys, n);
    let total_tiles = pairs.iter().sum();
    let wb = arch.word_bytes();
    // Tokens each chip holds on each axis (query columns, `stride` per query).
    let key_tokens = keys.held(grid.key_tile, grid.keys, n);
    let query_cols = queries.held(grid.query_tile, grid.columns, n);
    let max_keys = key_tokens.iter().copied().max().unwrap_or(0);
    let max_queries = query_cols
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .div_ceil(stride);
    // The dense pair: the largest key chunk set against the largest query chunk set.
    let block_tiles =
        max_keys.div_ceil(grid.key_tile) * (max_queries * stride).div_ceil(grid.query_tile);
    let too_large = || ScheduleError::TooLarge {
        given: format!("{} over {n} chips", problem.label),
    };
    let kv_bytes = |c: usize| {
        key_tokens[c]
            .checked_mul(words.kv)
            .and_then(|w| w.checked_mul(wb))
    };
    // The chip's sub-problem: its share of keys against its share of queries.
    let mut sub = problem.clone();
    sub.seq = max_keys;
    sub.sizes.insert("M".into(), max_keys);
    sub.sizes.insert("P".into(), max_queries);
    let (chip, chip_tiles) = match chip_schedule(cascade, system, &sub)? {
        Ok(x) => x,
        Err(why) => return Ok(SystemOutcome::Infeasible(why)),
    };
    let nu = n as usize;
    if !key_split {
        let ring = ring_steps(
            &pairs,
            n,
            system.exchange == Exchange::BidirectionalRing,
            &kv_bytes,
        )
        .ok_or_else(too_large)?;
        Ok(SystemOutcome::Scheduled(Box::new(SystemSchedule {
            system: system.name.clone(),
            chips: n,
            problem: problem.clone(),
            chip_schedule: chip,
            chip_tiles,
            total_tiles,
            block_tiles,
            block_bytes: ring.block_bytes,
            blocks_per_step: ring.per_step,
            steps: ring.steps,
            work: ring.work,
            receive: ring.receive,
            received: ring.received,
            source: ring.source,
            collectives: Vec::new(),
            combine: None,
        })))
    } else {
        // Every chip runs every query against its keys; column sums of the pair counts.
        let work: Vec<u64> = (0..nu)
            .map(|k| (0..nu).map(|c| pairs[c * nu + k]).sum())
            .collect();
        let (collectives, combine) =
            key_split_exchanges(problem, words, n, max_queries, wb).ok_or_else(too_large)?;
        Ok(SystemOutcome::Scheduled(Box::new(SystemSchedule {
            system: system.name.clone(),
            chips: n,
            problem: problem.clone(),
            chip_schedule: chip,
            chip_tiles,
            total_tiles,
            block_tiles,
            block_bytes: 0,
            blocks_per_step: 1,
            steps: 1,
            work,
            receive: vec![0; nu],
            received: vec![0; nu],
            source: (0..n).collect(),
            collectives,
            combine,
        })))
    }
}

/// A key split's exchanges: the all-gather of Q (a chip's `queries` of every head) before, the
/// reduce-scatter of partial states after, and the combine of the `n` partials of each of a
/// chip's rows; `None` when a size does not fit 64 bits.
fn key_split_exchanges(
    problem: &Problem,
    words: &TokenWords,
    n: u64,
    queries: u64,
    word_bytes: u64,
) -> Option<(Vec<Collective>, Option<Combine>)> {
    if n == 1 {
        return Some((Vec::new(), None));
    }
    let q_piece = queries.checked_mul(words.q)?.checked_mul(word_bytes)?;
    let rows = problem
        .queries()
        .div_ceil(n)
        .checked_mul(words.heads.checked_mul(problem.batch)?)?;
    let state_piece = rows.checked_mul(words.f + 2)?.checked_mul(word_bytes)?;
    let collectives = vec![
        Collective {
            name: "all-gather Q",
            when: When::Before,
            piece_bytes: q_piece,
        },
        Collective {
            name: "reduce-scatter partial states (max, normaliser, numerator)",
            when: When::After,
            piece_bytes: state_piece,
        },
    ];
    let combine = Combine {
        rows,
        partials: n,
        ops: merge_ops(words.f),
    };
    Some((collectives, Some(combine)))
}

/// The steps of a ring: what each chip computes and receives at each step.
struct RingSteps {
    steps: u64,
    per_step: u64,
    work: Vec<u64>,
    receive: Vec<u64>,
    received: Vec<u64>,
    source: Vec<u64>,
    block_bytes: u64,
}

/// At step `s` chip `c` computes against the block of chip `c − s` (and `c + s` on a
/// bidirectional ring, until the two meet), received before the step; `None` when a block's
/// bytes do not fit 64 bits.
fn ring_steps(
    pairs: &[u64],
    n: u64,
    bidirectional: bool,
    kv_bytes: &dyn Fn(usize) -> Option<u64>,
) -> Option<RingSteps> {
    let nu = n as usize;
    let (steps, per_step) = if bidirectional {
        (n / 2 + 1, 2)
    } else {
        (n, 1)
    };
    let s = steps as usize;
    let mut ring = RingSteps {
        steps,
        per_step,
        work: vec![0u64; nu * s],
        receive: vec![0u64; nu * s],
        received: vec![0u64; nu * s],
        source: vec![0u64; nu * s],
        block_bytes: 0,
    };
    for c in 0..nu {
        for step in 0..s {
            let behind = (c + nu - step % nu) % nu;
            let ahead = (c + step) % nu;
            let mut from = vec![behind];
            if per_step == 2 && ahead != behind {
                from.push(ahead);
            }
            let cell = c * s + step;
            ring.work[cell] = from.iter().map(|&k| pairs[c * nu + k]).sum();
            ring.source[cell] = behind as u64;
            if step > 0 {
                for &k in &from {
                    let bytes = kv_bytes(k)?;
                    ring.received[cell] += bytes;
                    if bytes > ring.receive[cell] {
                        ring.receive[cell] = bytes;
                        ring.source[cell] = k as u64;
                    }
                    ring.block_bytes = ring.block_bytes.max(bytes);
                }
            }
        }
    }
    Some(ring)
}

/// The ops of merging two partial states of one row, as the split-K combine of the library's
/// 2-pass local-max cascade writes it: `m = max(m1, m2)`, the two rescales `e^(m1−m)` and
/// `e^(m2−m)` (a subtract and an exp each), `l = l1·a + l2·b` and `n = n1·a + n2·b` over the F
/// numerator entries (a multiply and a multiply-accumulate each).
fn merge_ops(f: u64) -> BTreeMap<PointOp, u32> {
    let f = u32::try_from(f).unwrap_or(u32::MAX);
    BTreeMap::from([
        (PointOp::Kind(OpKind::Max), 1),
        (PointOp::Kind(OpKind::Add), 2),
        (PointOp::Kind(OpKind::Exp), 2),
        (PointOp::Kind(OpKind::Mul), f.saturating_add(1)),
        (PointOp::Kind(OpKind::Mac), f.saturating_add(1)),
    ])
}

//! Workloads: transformer models (heads and key/value heads, head dims, model and FFN dims, the
//! cascade their attention uses, their linear layers) and the problems they pose to the
//! scheduler: prefill at each sequence length, and decode against a KV cache at each length and
//! batch.
//!
//! A problem is rank sizes by name. Prefill gives `M = P = seq`; decode gives `M` = the cached
//! keys and `P` = the queries of one step. Query heads are `H` and key/value heads `G`; a
//! cascade that declares the head rank `H` takes them as ranks, any other treats every head as
//! an independent instance (batch × heads of them).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::arch::ConfigError;

/// `arch-configs/workloads/*.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloads {
    /// Requests per prefill point.
    pub batch: Option<i64>,
    /// Prefill lengths (M = P).
    pub seq: Option<Vec<i64>>,
    pub decode: Option<RawDecode>,
    pub models: Option<BTreeMap<String, RawModel>>,
}

/// Decode points: every cache length × every batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecode {
    /// Cached keys per request (M).
    pub kv: Option<Vec<i64>>,
    /// Requests decoded together; each has its own cache.
    pub batch: Option<Vec<i64>>,
    /// Queries per request per step (P), 1 unless speculative.
    pub queries: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)] // The fields are the paper's rank names.
pub struct RawModel {
    pub label: Option<String>,
    /// The cascade the model's attention uses (a library cascade or variant); the
    /// architecture's own when absent.
    pub cascade: Option<String>,
    /// The cascade of decode steps, when it differs (absorbed latent attention).
    pub decode_cascade: Option<String>,
    /// Query heads (H).
    pub heads: Option<i64>,
    /// Key/value heads (G); equal to `heads` when absent.
    pub kv_heads: Option<i64>,
    pub E: Option<i64>,
    pub F: Option<i64>,
    pub D: Option<i64>,
    pub S: Option<i64>,
    /// `plain` (two FFN matmuls) or `gated` (gate, up and down).
    pub ffn: Option<String>,
    /// Other rank sizes of the model's cascades (`W` for a window, `L`, `R` for MLA).
    pub sizes: Option<BTreeMap<String, i64>>,
    /// The attention projections per token as `[inner, outer]` pairs, when they are not
    /// Q, K, V and O from D, H·E and G·E.
    pub linear: Option<Vec<[i64; 2]>>,
    /// The projections of a decode step, when they differ.
    pub decode_linear: Option<Vec<[i64; 2]>>,
}

impl RawWorkloads {
    pub fn from_toml(text: &str) -> Result<RawWorkloads, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            message: e.to_string().trim_end().to_string(),
        })
    }
}

/// One transformer model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    name: String,
    label: String,
    cascade: Option<String>,
    decode_cascade: Option<String>,
    heads: u64,
    kv_heads: u64,
    e: u64,
    f: u64,
    d: u64,
    s: u64,
    gated: bool,
    sizes: BTreeMap<String, u64>,
    linear: Vec<(u64, u64)>,
    decode_linear: Vec<(u64, u64)>,
}

impl Model {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn heads(&self) -> u64 {
        self.heads
    }
    pub fn kv_heads(&self) -> u64 {
        self.kv_heads
    }
    /// The cascade of the model's attention in prefill, if the file names one.
    pub fn cascade(&self) -> Option<&str> {
        self.cascade.as_deref()
    }
    /// The cascade of a decode step: the decode cascade, else the prefill one.
    pub fn decode_cascade(&self) -> Option<&str> {
        self.decode_cascade.as_deref().or(self.cascade())
    }
}

/// Which part of inference a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The whole prompt at once: M = P.
    Prefill,
    /// One step of `P` queries per request against `M` cached keys.
    Decode,
}

/// The validated workload set: models, batch, the prefill lengths and the decode points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workloads {
    batch: u64,
    seq: Vec<u64>,
    decode: Option<Decode>,
    models: Vec<Model>,
}

/// Decode points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decode {
    pub kv: Vec<u64>,
    pub batch: Vec<u64>,
    pub queries: u64,
}

/// Largest batch, head count, dimension and length a workload may give: every product the
/// model forms of them stays countable.
const MAX_BATCH: i64 = 1 << 20;
const MAX_HEADS: i64 = 1 << 16;
const MAX_DIM: i64 = 1 << 24;
const MAX_SEQ: i64 = 1 << 40;

fn checked(v: Option<i64>, max: i64, field: String, errs: &mut Vec<ConfigError>) -> Option<u64> {
    match v {
        Some(v) if (1..=max).contains(&v) => Some(v as u64),
        Some(v) => {
            errs.push(ConfigError::Field {
                field,
                problem: format!("is {v}; it must be between 1 and {max}"),
            });
            None
        }
        None => {
            errs.push(ConfigError::Field {
                field,
                problem: "is missing".into(),
            });
            None
        }
    }
}

impl Workloads {
    pub fn new(raw: RawWorkloads) -> Result<Workloads, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let batch = checked(raw.batch, MAX_BATCH, "batch".into(), &mut errs).unwrap_or(1);
        let seq: Vec<u64> = raw
            .seq
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| checked(Some(s), MAX_SEQ, "seq".into(), &mut errs))
            .collect();
        if seq.is_empty() {
            errs.push(ConfigError::Field {
                field: "seq".into(),
                problem: "is empty; list sequence lengths".into(),
            });
        }
        let decode = raw.decode.map(|d| {
            let list = |v: Option<Vec<i64>>, max, field: &str, errs: &mut Vec<ConfigError>| {
                let v = v.unwrap_or_default();
                if v.is_empty() {
                    errs.push(ConfigError::Field {
                        field: field.into(),
                        problem: "is empty; list at least one".into(),
                    });
                }
                v.into_iter()
                    .filter_map(|x| checked(Some(x), max, field.into(), errs))
                    .collect::<Vec<u64>>()
            };
            Decode {
                kv: list(d.kv, MAX_SEQ, "decode.kv", &mut errs),
                batch: list(d.batch, MAX_BATCH, "decode.batch", &mut errs),
                queries: checked(
                    Some(d.queries.unwrap_or(1)),
                    MAX_BATCH,
                    "decode.queries".into(),
                    &mut errs,
                )
                .unwrap_or(1),
            }
        });
        let mut models = Vec::new();
        for (name, m) in raw.models.unwrap_or_default() {
            if let Some(model) = check_model(&name, m, &mut errs) {
                models.push(model);
            }
        }
        if models.is_empty() {
            errs.push(ConfigError::Field {
                field: "models".into(),
                problem: "is empty; add `[models.NAME]`".into(),
            });
        }
        if errs.is_empty() {
            Ok(Workloads {
                batch,
                seq,
                decode,
                models,
            })
        } else {
            Err(errs)
        }
    }

    pub fn batch(&self) -> u64 {
        self.batch
    }
    pub fn seq(&self) -> &[u64] {
        &self.seq
    }
    pub fn decode(&self) -> Option<&Decode> {
        self.decode.as_ref()
    }
    pub fn models(&self) -> &[Model] {
        &self.models
    }
    /// A model by name or label, case-insensitively.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name) || m.label.eq_ignore_ascii_case(name))
    }

    /// The problem one model poses in prefill at one sequence length (M = P = `seq`).
    pub fn problem(&self, model: &Model, seq: u64) -> Problem {
        model.problem(Scenario::Prefill, seq, seq, self.batch)
    }

    /// The problem of one decode step: `queries` per request against `kv` cached keys, for
    /// `batch` requests.
    pub fn decode_problem(&self, model: &Model, kv: u64, batch: u64) -> Problem {
        let queries = self.decode.as_ref().map_or(1, |d| d.queries);
        model.problem(Scenario::Decode, kv, queries, batch)
    }
}

fn check_model(name: &str, m: RawModel, errs: &mut Vec<ConfigError>) -> Option<Model> {
    let at = |f: &str| format!("models.{name}.{f}");
    let before = errs.len();
    let heads = checked(m.heads, MAX_HEADS, at("heads"), errs);
    let kv_heads = match m.kv_heads {
        None => heads,
        v => checked(v, MAX_HEADS, at("kv_heads"), errs),
    };
    if let (Some(h), Some(g)) = (heads, kv_heads)
        && (g > h || h % g != 0)
    {
        errs.push(ConfigError::Field {
            field: at("kv_heads"),
            problem: format!("is {g}; the {h} query heads must split evenly over it"),
        });
    }
    let dim = |v, f: &str, errs: &mut Vec<ConfigError>| checked(v, MAX_DIM, at(f), errs);
    let (e, f, d, s) = (
        dim(m.E, "E", errs),
        dim(m.F, "F", errs),
        dim(m.D, "D", errs),
        dim(m.S, "S", errs),
    );
    let gated = match m.ffn.as_deref() {
        None | Some("plain") => false,
        Some("gated") => true,
        Some(other) => {
            errs.push(ConfigError::Field {
                field: at("ffn"),
                problem: format!("is `{other}`; use \"plain\" or \"gated\""),
            });
            false
        }
    };
    let mut sizes = BTreeMap::new();
    for (rank, v) in m.sizes.unwrap_or_default() {
        if let Some(v) = checked(Some(v), MAX_SEQ, at(&format!("sizes.{rank}")), errs) {
            sizes.insert(rank, v);
        }
    }
    let pairs = |v: Option<Vec<[i64; 2]>>, f: &str, errs: &mut Vec<ConfigError>| {
        v.map(|list| {
            list.into_iter()
                .enumerate()
                .filter_map(|(i, [k, n])| {
                    let field = at(&format!("{f}[{i}]"));
                    Some((
                        checked(Some(k), MAX_DIM, field.clone(), errs)?,
                        checked(Some(n), MAX_DIM, field, errs)?,
                    ))
                })
                .collect::<Vec<_>>()
        })
    };
    for (field, cascade) in [
        ("cascade", &m.cascade),
        ("decode_cascade", &m.decode_cascade),
    ] {
        if cascade.as_deref().is_some_and(|c| c.trim().is_empty()) {
            errs.push(ConfigError::Field {
                field: at(field),
                problem: "is empty; name a library cascade or variant, or leave the field out"
                    .into(),
            });
        }
    }
    let linear = pairs(m.linear, "linear", errs);
    let decode_linear = pairs(m.decode_linear, "decode_linear", errs);
    if errs.len() != before {
        return None;
    }
    let (heads, kv_heads, e, f, d, s) = (heads?, kv_heads?, e?, f?, d?, s?);
    // Q, K, V and O by default: the query heads' Q and O, the key/value heads' K and V.
    let linear = linear.unwrap_or_else(|| {
        vec![
            (d, heads * e),
            (d, kv_heads * e),
            (d, kv_heads * f),
            (heads * f, d),
        ]
    });
    Some(Model {
        label: m.label.unwrap_or_else(|| name.to_string()),
        name: name.to_string(),
        cascade: m.cascade,
        decode_cascade: m.decode_cascade,
        heads,
        kv_heads,
        e,
        f,
        d,
        s,
        gated,
        sizes,
        decode_linear: decode_linear.unwrap_or_else(|| linear.clone()),
        linear,
    })
}

impl Model {
    /// The linear layers of one token: the attention projections, then the FFN (gate and up,
    /// or up alone, D × S; down S × D).
    fn matmuls(&self, scenario: Scenario) -> Vec<(u64, u64)> {
        let mut out = match scenario {
            Scenario::Prefill => self.linear.clone(),
            Scenario::Decode => self.decode_linear.clone(),
        };
        out.push((self.d, self.s));
        if self.gated {
            out.push((self.d, self.s));
        }
        out.push((self.s, self.d));
        out
    }

    fn problem(&self, scenario: Scenario, m: u64, p: u64, batch: u64) -> Problem {
        let mut sizes = self.sizes.clone();
        sizes.insert("E".to_string(), self.e);
        sizes.insert("F".to_string(), self.f);
        sizes.insert("M".to_string(), m);
        sizes.insert("P".to_string(), p);
        sizes.insert(HEAD_RANK.to_string(), self.heads);
        sizes.insert("G".to_string(), self.kv_heads);
        let label = match scenario {
            Scenario::Prefill => self.label.clone(),
            Scenario::Decode => format!("{} decode b{batch}", self.label),
        };
        let cascade = match scenario {
            Scenario::Prefill => self.cascade.clone(),
            Scenario::Decode => self.decode_cascade().map(str::to_string),
        };
        Problem {
            label,
            scenario,
            cascade,
            seq: m,
            batch,
            heads: self.heads,
            model_dim: self.d,
            ffn_dim: self.s,
            head_dim: self.e,
            linear: self.matmuls(scenario),
            sizes,
            block_masks: BTreeMap::new(),
        }
    }
}

/// One attention layer to schedule: rank sizes by name, plus what the linear layers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The model, with the decode batch for a decode step (`Llama-3-8B decode b16`).
    pub label: String,
    pub scenario: Scenario,
    /// The cascade the model's attention uses, if the workload names one.
    pub cascade: Option<String>,
    /// The key rank's length: the sequence in prefill, the cache in decode.
    pub seq: u64,
    pub batch: u64,
    pub heads: u64,
    /// D: the model dimension.
    pub model_dim: u64,
    /// S: the FFN hidden dimension.
    pub ffn_dim: u64,
    /// E: the head dimension of the projections.
    pub head_dim: u64,
    /// The linear layers of one token, as (inner, outer) dimensions of each weight.
    pub linear: Vec<(u64, u64)>,
    /// Sizes of the cascade's ranks by name. Batch is implicit on every tensor, and so are the
    /// heads unless the cascade declares a rank `H` (then the sizes give `H` and, for grouped
    /// heads, `G`).
    pub sizes: BTreeMap<String, u64>,
    /// Which blocks of an additive mask input hold `-inf` everywhere, by the input's name.
    pub block_masks: BTreeMap<String, BlockMask>,
}

/// The rank through which a cascade takes its attention heads when it does not leave them
/// implicit.
pub const HEAD_RANK: &str = "H";

impl Problem {
    /// Independent attention instances when every head is one: batch × heads, or `None` when
    /// the product does not fit 64 bits.
    pub fn instances(&self) -> Option<u64> {
        self.batch.checked_mul(self.heads)
    }

    /// Independent attention instances of `cascade`: batch × heads, or batch alone when the
    /// cascade declares the head rank `H` itself.
    pub fn instances_for(&self, cascade: &cascade_ir::Cascade) -> Option<u64> {
        if cascade.rank_by_name(HEAD_RANK).is_some() {
            Some(self.batch)
        } else {
            self.instances()
        }
    }

    /// Queries per request (P).
    pub fn queries(&self) -> u64 {
        self.sizes.get("P").copied().unwrap_or(self.seq)
    }
}

/// A block mask given as data: which (key block, query block) pairs attend (`true`) and which
/// hold `-inf` on every point (`false`), for an input indexed by the blocks of two split ranks
/// (`BM[MB,PB]` with `split M -> MB M0`, `split P -> PB P0`). BigBird-style and block-sparse
/// layouts are such bitmaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMask {
    key_blocks: u64,
    query_blocks: u64,
    /// Key-block major: `bits[kb * query_blocks + qb]`.
    bits: Vec<bool>,
}

/// The most blocks a block mask may hold (2^24): scheduling keeps a prefix sum of 8 bytes per
/// block, so a mask takes at most about [`BlockMask::BYTES_PER_BLOCK`] × this in memory.
pub const MAX_MASK_BLOCKS: u64 = 1 << 24;

impl BlockMask {
    /// Memory per block: the bit and the scheduler's prefix sum.
    pub const BYTES_PER_BLOCK: u64 = 9;

    /// A bitmap of `key_blocks × query_blocks` entries, key-block major, at most
    /// [`MAX_MASK_BLOCKS`] of them.
    pub fn new(key_blocks: u64, query_blocks: u64, bits: Vec<bool>) -> Result<BlockMask, String> {
        if key_blocks == 0 || query_blocks == 0 {
            return Err(format!(
                "a block mask needs at least one key block and one query block, not {key_blocks} × {query_blocks}"
            ));
        }
        let n = key_blocks.checked_mul(query_blocks);
        if n.is_none_or(|n| n > MAX_MASK_BLOCKS) {
            return Err(format!(
                "a {key_blocks} × {query_blocks} block mask has more than {MAX_MASK_BLOCKS} blocks (2^24), the most a block mask may hold; use larger blocks"
            ));
        }
        if n != Some(bits.len() as u64) || bits.is_empty() {
            return Err(format!(
                "a {key_blocks} × {query_blocks} block mask needs {} entries, not {}",
                n.map_or_else(|| "more".to_string(), |n| n.to_string()),
                bits.len()
            ));
        }
        Ok(BlockMask {
            key_blocks,
            query_blocks,
            bits,
        })
    }

    pub fn key_blocks(&self) -> u64 {
        self.key_blocks
    }

    pub fn query_blocks(&self) -> u64 {
        self.query_blocks
    }

    /// Whether key block `kb` and query block `qb` attend; outside the bitmap, no.
    pub fn attends(&self, kb: u64, qb: u64) -> bool {
        kb < self.key_blocks
            && qb < self.query_blocks
            && self.bits[(kb * self.query_blocks + qb) as usize]
    }

    /// The fraction of block pairs that attend.
    pub fn density(&self) -> f64 {
        self.bits.iter().filter(|&&b| b).count() as f64 / self.bits.len() as f64
    }
}

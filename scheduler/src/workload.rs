//! Workloads: transformer models (batch, heads, head dims, model and FFN dims) and the problem
//! one model at one sequence length poses to the scheduler.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::arch::ConfigError;

/// `arch-configs/workloads/*.toml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkloads {
    pub batch: Option<i64>,
    pub seq: Option<Vec<i64>>,
    pub models: Option<BTreeMap<String, RawModel>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case)] // The fields are the paper's rank names.
pub struct RawModel {
    pub label: Option<String>,
    pub heads: Option<i64>,
    pub E: Option<i64>,
    pub F: Option<i64>,
    pub D: Option<i64>,
    pub S: Option<i64>,
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
    heads: u64,
    e: u64,
    f: u64,
    d: u64,
    s: u64,
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
}

/// The validated workload set: models, batch and the default sequence lengths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workloads {
    batch: u64,
    seq: Vec<u64>,
    models: Vec<Model>,
}

impl Workloads {
    pub fn new(raw: RawWorkloads) -> Result<Workloads, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let positive = |v: Option<i64>, field: String, errs: &mut Vec<ConfigError>| match v {
            Some(v) if v > 0 => v as u64,
            Some(v) => {
                errs.push(ConfigError::Field {
                    field,
                    problem: format!("is {v}; it must be at least 1"),
                });
                0
            }
            None => {
                errs.push(ConfigError::Field {
                    field,
                    problem: "is missing".into(),
                });
                0
            }
        };
        let batch = positive(raw.batch, "batch".into(), &mut errs);
        let seq: Vec<u64> = raw
            .seq
            .unwrap_or_default()
            .into_iter()
            .map(|s| positive(Some(s), "seq".into(), &mut errs))
            .collect();
        if seq.is_empty() {
            errs.push(ConfigError::Field {
                field: "seq".into(),
                problem: "is empty; list sequence lengths".into(),
            });
        }
        let mut models = Vec::new();
        for (name, m) in raw.models.unwrap_or_default() {
            let at = |f: &str| format!("models.{name}.{f}");
            models.push(Model {
                label: m.label.unwrap_or_else(|| name.clone()),
                heads: positive(m.heads, at("heads"), &mut errs),
                e: positive(m.E, at("E"), &mut errs),
                f: positive(m.F, at("F"), &mut errs),
                d: positive(m.D, at("D"), &mut errs),
                s: positive(m.S, at("S"), &mut errs),
                name,
            });
        }
        if models.is_empty() {
            errs.push(ConfigError::Field {
                field: "models".into(),
                problem: "is empty; add `[models.NAME]`".into(),
            });
        }
        if errs.is_empty() {
            Ok(Workloads { batch, seq, models })
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
    pub fn models(&self) -> &[Model] {
        &self.models
    }
    /// A model by name or label, case-insensitively.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name) || m.label.eq_ignore_ascii_case(name))
    }

    /// The problem one model poses at one sequence length (M = P = `seq`).
    pub fn problem(&self, model: &Model, seq: u64) -> Problem {
        let mut sizes = BTreeMap::new();
        sizes.insert("E".to_string(), model.e);
        sizes.insert("F".to_string(), model.f);
        sizes.insert("M".to_string(), seq);
        sizes.insert("P".to_string(), seq);
        Problem {
            label: model.label.clone(),
            seq,
            batch: self.batch,
            heads: model.heads,
            model_dim: model.d,
            ffn_dim: model.s,
            head_dim: model.e,
            sizes,
            block_masks: BTreeMap::new(),
        }
    }
}

/// One attention layer to schedule: rank sizes by name, plus what the linear layers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub label: String,
    pub seq: u64,
    pub batch: u64,
    pub heads: u64,
    /// D: the model dimension.
    pub model_dim: u64,
    /// S: the FFN hidden dimension.
    pub ffn_dim: u64,
    /// E: the head dimension of the projections.
    pub head_dim: u64,
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

impl BlockMask {
    /// A bitmap of `key_blocks × query_blocks` entries, key-block major.
    pub fn new(key_blocks: u64, query_blocks: u64, bits: Vec<bool>) -> Result<BlockMask, String> {
        let n = key_blocks.checked_mul(query_blocks);
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

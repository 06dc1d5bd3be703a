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
    /// Sizes of the cascade's ranks by name; batch and heads are implicit on every tensor.
    pub sizes: BTreeMap<String, u64>,
}

impl Problem {
    /// Independent attention instances: batch × heads.
    pub fn instances(&self) -> u64 {
        self.batch * self.heads
    }
}

//! The fused kernel's arguments: one `Args` struct passed by value (every rank size, the batch
//! and head counts, the tensors, each addressed tensor's strides in elements and the folded
//! score constant), what the launcher fills it from, and how the kernel finds a head's rows.
//!
//! Strides are per batch entry, per query or key step and per head variable; the launcher
//! derives them from the cascade's layout (`T[R0,R1,…]` with `R0` fastest), so `Q[E,P,H]`
//! (BHSD) and `Q[E,H,P]` (BSHD) differ only in these numbers.

use cascade_ir::{Cascade, IndexExpr, RankId, TensorKind};

use crate::TargetDialect;
use crate::pattern::layout_index;
use crate::pattern::{Attention, TensorUse};
use crate::sizes;

/// Where one addressed tensor's rows of a head start and how far apart they are.
#[derive(Debug, Clone)]
pub struct Rows {
    /// The tensor's pointer at batch entry `bz` and the heads `hv_*` (kernel C).
    pub base: String,
    /// Elements between consecutive query (or key) rows.
    pub seq: String,
}

/// The launcher side of the ABI and the kernel's view of it.
#[derive(Debug, Clone)]
pub struct Abi {
    pub abi_params: String,
    /// The `_args` helper's parameters (the ABI's without workspace and stream), the same as
    /// arguments, and as the workspace query passes them (null pointers).
    pub core_params: String,
    pub core_args: String,
    pub null_args: String,
    /// `int batch, long long E, …`.
    pub size_params: String,
    /// Where the launcher refuses the shape: a negative batch, features past the kernel's
    /// head dimension or not a whole number of copy granules.
    pub shape_check: String,
    pub size_setup: Vec<String>,
    pub args_fields: Vec<String>,
    /// Statements filling `Args a` from the launcher's arguments and sizes.
    pub args_setup: Vec<String>,
    /// Conditions on `a` under which every row is 16-byte aligned (empty on the C++ target).
    pub aligned: Vec<String>,
    pub head_decode: Vec<String>,
    pub q: Rows,
    pub k: Rows,
    pub v: Rows,
    /// Every output by name, with its rows.
    pub outputs: Vec<(String, Rows)>,
    /// The `Args` stride fields in the order the strided launcher takes them, that order in
    /// words, and its parameters.
    pub stride_fields: Vec<String>,
    pub stride_doc: String,
    pub strided_params: String,
}

pub fn abi(
    c: &Cascade,
    att: &Attention,
    d: &TargetDialect,
    granule: u32,
    launch_scale: Option<&str>,
) -> Abi {
    let mut fields: Vec<String> = c
        .ranks
        .iter()
        .map(|r| format!("long long s_{};", r.name))
        .collect();
    fields.extend([
        "long long batch, n_heads, n_splits, keys_per_split;".to_string(),
        "float score_scale;".to_string(),
        format!(
            "float {};",
            c.ranks
                .iter()
                .map(|r| format!("inv_sqrt_{}", r.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "float* ws;".to_string(),
    ]);
    let mut setup: Vec<String> = c
        .ranks
        .iter()
        .flat_map(|r| {
            [
                format!("a.s_{n} = s_{n};", n = r.name),
                format!(
                    "a.inv_sqrt_{n} = 1.0f / sqrtf(static_cast<float>(s_{n}));",
                    n = r.name
                ),
            ]
        })
        .collect();
    setup.push("a.batch = batch;".into());
    let head_sizes: Vec<String> = att
        .ranks
        .heads
        .iter()
        .map(|&h| format!("s_{}", c.rank(h).name))
        .collect();
    setup.push(format!(
        "a.n_heads = {};",
        if head_sizes.is_empty() {
            "1LL".to_string()
        } else {
            head_sizes.join(" * ")
        }
    ));
    for t in c.tensors.iter().filter(|t| t.kind == TensorKind::Input) {
        fields.push(format!("const elem_t* in_{};", t.name));
        setup.push(format!(
            "a.in_{n} = static_cast<const elem_t*>({n});",
            n = t.name
        ));
    }
    for &o in &c.outputs {
        let n = &c.tensor(o).name;
        fields.push(format!("elem_t* out_{n};"));
        setup.push(format!("a.out_{n} = static_cast<elem_t*>({n});"));
    }
    let mut aligned = Vec::new();
    let mut strided: Vec<String> = Vec::new();
    let mut stride_fields: Vec<String> = Vec::new();
    let mut rows_of = |u: &TensorUse, seq: RankId, pointer: String| -> Rows {
        let name = c.tensor(u.tensor).name.clone();
        if !strided.contains(&name) {
            strided.push(name.clone());
            let st = strides(c, u, seq, &att.ranks.heads);
            fields.push(format!(
                "long long st_{name}_batch, st_{name}_seq{};",
                att.ranks
                    .heads
                    .iter()
                    .map(|&h| format!(", st_{name}_{}", c.var_name(h)))
                    .collect::<String>()
            ));
            setup.push(format!("a.st_{name}_batch = {};", st.batch));
            setup.push(format!("a.st_{name}_seq = {};", st.seq));
            stride_fields.push(format!("st_{name}_batch"));
            stride_fields.push(format!("st_{name}_seq"));
            for (h, s) in att.ranks.heads.iter().zip(&st.heads) {
                setup.push(format!("a.st_{name}_{} = {s};", c.var_name(*h)));
                stride_fields.push(format!("st_{name}_{}", c.var_name(*h)));
            }
            if granule > 1 {
                aligned.push(format!("reinterpret_cast<uintptr_t>({pointer}) % 16 == 0"));
                for s in std::iter::once("batch".to_string())
                    .chain(std::iter::once("seq".to_string()))
                    .chain(att.ranks.heads.iter().map(|&h| c.var_name(h)))
                {
                    aligned.push(format!("a.st_{name}_{s} % {granule} == 0"));
                }
            }
        }
        let mut base = format!("{pointer} + bz * a.st_{name}_batch");
        for &h in &att.ranks.heads {
            let v = c.var_name(h);
            base.push_str(&format!(" + hv_{v} * a.st_{name}_{v}"));
        }
        Rows {
            base,
            seq: format!("a.st_{name}_seq"),
        }
    };
    let name = |u: &TensorUse| c.tensor(u.tensor).name.clone();
    let m = att.ranks.key.m;
    let q = rows_of(&att.q, att.ranks.p, format!("a.in_{}", name(&att.q)));
    let k = rows_of(&att.k, m, format!("a.in_{}", name(&att.k)));
    let v = rows_of(&att.v, m, format!("a.in_{}", name(&att.v)));
    let outputs = att
        .outputs
        .iter()
        .map(|o| {
            let u = TensorUse {
                tensor: o.tensor,
                indices: o.indices.clone(),
            };
            let n = c.tensor(o.tensor).name.clone();
            (n.clone(), rows_of(&u, att.ranks.p, format!("a.out_{n}")))
        })
        .collect();
    if let Some(scale) = launch_scale {
        setup.push(format!("a.score_scale = {scale};"));
    }
    let abi_params = sizes::abi_params(c, d);
    let core: Vec<&str> = abi_params
        .split(", ")
        .filter(|p| {
            !p.starts_with("void* workspace")
                && !p.starts_with("unsigned long long workspace")
                && !p.starts_with("void* stream")
        })
        .collect();
    let arg_name = |p: &str| p.rsplit(' ').next().unwrap_or_default().to_string();
    let null_args: Vec<String> = core
        .iter()
        .map(|p| {
            if p.contains('*') {
                "nullptr".to_string()
            } else {
                arg_name(p)
            }
        })
        .collect();
    let (e, f) = (&c.rank(att.ranks.e).name, &c.rank(att.ranks.f).name);
    let mut checks = vec![
        "batch < 0".to_string(),
        format!("s_{e} > HEAD_DIM"),
        format!("s_{f} > HEAD_DIM"),
    ];
    if granule > 1 {
        checks.push(format!("s_{e} % {granule} != 0"));
        checks.push(format!("s_{f} % {granule} != 0"));
    }
    // The head index `h` in mixed radix, the last head variable fastest.
    let mut decode = Vec::new();
    if att.ranks.heads.is_empty() {
        decode.push("(void)h;".to_string());
    } else {
        decode.push("long long rem_h = h;".to_string());
        for (i, &h) in att.ranks.heads.iter().rev().enumerate() {
            let (v, s) = (c.var_name(h), &c.rank(h).name);
            if i + 1 == att.ranks.heads.len() {
                decode.push(format!("const long long hv_{v} = rem_h;"));
            } else {
                decode.push(format!(
                    "const long long hv_{v} = rem_h % a.s_{s}; rem_h /= a.s_{s};"
                ));
            }
        }
    }
    let per_tensor = std::iter::once("batch entry".to_string())
        .chain(std::iter::once("position".to_string()))
        .chain(
            att.ranks
                .heads
                .iter()
                .map(|&h| format!("head variable {}", c.var_name(h))),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let tensors: Vec<String> = stride_fields
        .iter()
        .filter_map(|f| {
            f.strip_suffix("_batch")?
                .strip_prefix("st_")
                .map(String::from)
        })
        .collect();
    let stride_doc = format!(
        "strides[] holds, for {} in that order, the step per {per_tensor}",
        tensors.join(", ")
    );
    let strided_params = core
        .iter()
        .map(|p| p.to_string())
        .chain(std::iter::once("const long long* strides".to_string()))
        .chain(d.workspace_params.map(String::from))
        .chain(d.stream_param.map(String::from))
        .collect::<Vec<_>>()
        .join(", ");
    Abi {
        stride_fields,
        stride_doc,
        strided_params,
        core_params: core.join(", "),
        core_args: core
            .iter()
            .map(|p| arg_name(p))
            .collect::<Vec<_>>()
            .join(", "),
        null_args: null_args.join(", "),
        shape_check: checks.join(" || "),
        abi_params,
        size_params: sizes::size_params(c),
        size_setup: sizes::size_setup(c, &|r| format!("s_{}", c.rank(r).name), "const long long "),
        args_fields: fields,
        args_setup: setup,
        aligned,
        head_decode: decode,
        q,
        k,
        v,
        outputs,
    }
}

/// A tensor's strides in the cascade's layout: per batch entry, per step of `seq`, per head.
struct Strides {
    batch: String,
    seq: String,
    heads: Vec<String>,
}

fn strides(c: &Cascade, u: &TensorUse, seq: RankId, heads: &[RankId]) -> Strides {
    let ranks = &c.tensor(u.tensor).ranks;
    let size = |r: RankId| format!("s_{}", c.rank(r).name);
    let dim_stride = |d: usize| -> String {
        if d == 0 {
            "1LL".into()
        } else {
            format!(
                "({})",
                ranks[..d]
                    .iter()
                    .map(|&r| size(r))
                    .collect::<Vec<_>>()
                    .join(" * ")
            )
        }
    };
    let batch = if ranks.is_empty() {
        "1LL".into()
    } else {
        format!(
            "({})",
            ranks
                .iter()
                .map(|&r| size(r))
                .collect::<Vec<_>>()
                .join(" * ")
        )
    };
    let mut seq_stride = "0LL".to_string();
    let mut head_terms: Vec<Vec<String>> = vec![Vec::new(); heads.len()];
    for (d, (r, idx)) in ranks.iter().zip(&u.indices).enumerate() {
        if *idx == IndexExpr::Var(seq) {
            seq_stride = dim_stride(d);
            continue;
        }
        match layout_index(c, *r, idx) {
            Some(crate::pattern::DimIndex::Var(h)) => {
                if let Some(i) = heads.iter().position(|x| *x == h) {
                    head_terms[i].push(dim_stride(d));
                }
            }
            Some(crate::pattern::DimIndex::Split(outer, inner)) => {
                if let Some(i) = heads.iter().position(|x| *x == outer) {
                    head_terms[i].push(format!("{} * {}", size(inner), dim_stride(d)));
                }
                if let Some(i) = heads.iter().position(|x| *x == inner) {
                    head_terms[i].push(dim_stride(d));
                }
            }
            None => {}
        }
    }
    Strides {
        batch,
        seq: seq_stride,
        heads: head_terms
            .into_iter()
            .map(|t| {
                if t.is_empty() {
                    "0LL".to_string()
                } else {
                    t.join(" + ")
                }
            })
            .collect(),
    }
}

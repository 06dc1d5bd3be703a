//! The fused lowering: a cascade recognised as attention ([`crate::pattern::Attention`])
//! becomes one FlashAttention-2-style kernel (two, a split kernel and a combine kernel, for the
//! split-K form). [`plan`] computes every tile size, buffer size and C fragment of it in
//! stages: the tiles and occupancy ([`occupancy`]), the fragment ownership of the matrix path
//! ([`frag`]), the mask's atoms and tile classification, the score and epilogue code
//! ([`exprs`]) and the ABI ([`abi`]).

mod abi;
mod exprs;
mod frag;
mod occupancy;

pub use frag::FragLayout;
pub use occupancy::suggest;

use cascade_ir::Cascade;

use crate::cexpr;
use crate::dialect::MatrixPath;
use crate::pattern::{Attention, Form, Weights};
use crate::tiles::{self, MaskRanks};
use crate::{GpuSchedule, Result, TargetDialect};

/// One element output: where its rows start and the statement computing its value `ov`.
#[derive(Debug, Clone)]
pub struct ElemOutput {
    pub name: String,
    pub rows: abi::Rows,
    pub value: String,
}

/// The template context of the fused kernel: numbers and C text only.
#[derive(Debug, Clone)]
pub struct FusedPlan {
    pub kernel: String,
    pub combine_kernel: String,
    pub launcher: String,
    /// What the recogniser found (for the summary): the form and the weights.
    pub form: String,
    pub head_dim: u32,
    pub block_m: u32,
    pub block_n: u32,
    pub warps: u32,
    pub threads: u32,
    /// `__launch_bounds__`' minimum resident blocks, from the occupancy estimate.
    pub min_blocks_per_sm: u32,
    pub registers: u32,
    pub rows_per_warp: u32,
    pub stages: u32,
    /// Row pitch of the shared-memory tiles in elements (padded by 16 bytes against bank conflicts).
    pub smem_ld: u32,
    pub frag: FragLayout,
    /// 16-byte chunks per tile row and elements per chunk (the `cp.async` granule).
    pub chunks_per_row: u32,
    pub elems_per_chunk: u32,
    pub q_smem_elems: u32,
    pub kv_stage_elems: u32,
    /// Scratch for the scalar path's weights (floats); 0 on the matrix paths.
    pub p_smem_floats: u32,
    pub smem_bytes: u32,
    /// The matrix path: tensor cores (`mma`), matrix cores (`mfma`) or scalar FMAs.
    pub mma: bool,
    pub mfma: bool,
    pub matrix_path: String,
    /// The PTX text of the MMA instruction (empty off the `mma` path).
    pub mma_asm: String,
    /// MMA operands come from shared memory through `ldmatrix` (else 32/16-bit loads).
    pub ldmatrix: bool,
    /// The query fragments stay in registers through the key loop (else reloaded per tile).
    pub q_in_registers: bool,
    pub ldsm_asm: String,
    pub ldsm_trans_asm: String,
    /// Softmax weights (else the scores are the weights); the split-K kernel pair.
    pub softmax: bool,
    pub split: bool,
    /// Sizes of the atom and per-row value arrays (at least 1).
    pub n_atoms: usize,
    pub n_rowv: usize,
    pub n_rowe: usize,
    pub args_fields: Vec<String>,
    pub head_decode: Vec<String>,
    /// `, long long hv_*` parameters and `, hv_*` arguments of the tile classifier.
    pub head_params: String,
    pub head_args: String,
    pub q_rows: abi::Rows,
    pub k_rows: abi::Rows,
    pub v_rows: abi::Rows,
    /// The sizes of the queries, keys and the two feature dimensions in the kernel (`a.s_*`),
    /// the feature size in the launcher, and the key and query rank names.
    pub n_queries: String,
    pub n_keys: String,
    pub e_size: String,
    pub f_size: String,
    pub launch_f_size: String,
    pub key_rank: String,
    pub query_rank: String,
    /// The tile classifier's body: atom states, then the tile's class.
    pub classify: Vec<String>,
    pub row_setup: Vec<String>,
    pub score_fast: Vec<String>,
    pub score_general: Vec<String>,
    pub epilogue_row: Vec<String>,
    pub row_stores: Vec<String>,
    pub elem_outputs: Vec<ElemOutput>,
    /// The launcher: its parameters, the `_args` helper's, sizes and checks.
    pub abi_params: String,
    pub core_params: String,
    pub core_args: String,
    pub null_args: String,
    pub size_params: String,
    pub size_setup: Vec<String>,
    pub shape_check: String,
    pub args_setup: Vec<String>,
    pub aligned: String,
    /// The strided launcher: its parameters, the stride fields it sets in order, that order.
    pub strided_params: String,
    pub stride_fields: Vec<String>,
    pub stride_doc: String,
    /// The Einsum each kernel step implements, for the comments.
    pub roles: Vec<String>,
    /// C definitions of the operator table's helper functions.
    pub op_helpers: Vec<String>,
}

pub fn plan(c: &Cascade, att: &Attention, s: &GpuSchedule, d: &TargetDialect) -> Result<FusedPlan> {
    let ty = TargetDialect::types(d.target, s.dtype);
    let tiles = occupancy::Tiles::new(s, d)?;
    let frag = FragLayout::of(tiles.matrix, s.head_dim, s.block_n);
    let score = exprs::score_code(c, att, s.causal)?;
    let epilogue = exprs::epilogue_code(c, att)?;
    let granule = (d.row_granule_bytes / tiles.elem).max(1);
    let abi = abi::abi(c, att, d, granule, score.launch_scale.as_deref());
    let names = exprs::KernelNames {
        c,
        att,
        size_prefix: "a.s_",
    };
    let classify = classify_lines(c, att, &score, &names);
    let symbol = format!("cascade_{}", c.name);
    let size = |r: cascade_ir::RankId| format!("a.s_{}", c.rank(r).name);
    let ranks = &att.ranks;
    let heads: Vec<String> = ranks.heads.iter().map(|&h| c.var_name(h)).collect();
    let f = &c.rank(ranks.f).name;
    let mma = tiles.matrix == MatrixPath::MmaM16n8k16;
    let roles = att
        .roles
        .iter()
        .map(|re| {
            format!(
                "{}: {}",
                re.role,
                cascade_ir::dsl::print_einsum(c, re.einsum)
            )
        })
        .collect();
    let (elem_outputs, row_stores) = outputs(c, &epilogue, &abi);
    Ok(FusedPlan {
        kernel: format!("{symbol}_fused"),
        combine_kernel: format!("{symbol}_combine"),
        launcher: symbol,
        form: match att.weights {
            Weights::Softmax => att.form.name().to_string(),
            Weights::Direct { normalised: true } => format!("{}, normalised", att.form.name()),
            Weights::Direct { normalised: false } => att.form.name().to_string(),
        },
        head_dim: s.head_dim,
        block_m: s.block_m,
        block_n: s.block_n,
        warps: s.warps,
        threads: tiles.threads,
        min_blocks_per_sm: tiles.min_blocks_per_sm,
        registers: tiles.registers,
        rows_per_warp: tiles.rows_per_warp,
        stages: s.stages,
        smem_ld: tiles.smem_ld,
        frag,
        chunks_per_row: s.head_dim * tiles.elem / 16,
        elems_per_chunk: 16 / tiles.elem,
        q_smem_elems: tiles.q_smem_elems,
        kv_stage_elems: tiles.kv_stage_elems,
        p_smem_floats: tiles.p_smem_floats,
        smem_bytes: tiles.smem_bytes,
        mma,
        mfma: tiles.matrix == MatrixPath::Mfma16x16x16,
        matrix_path: match tiles.matrix {
            MatrixPath::MmaM16n8k16 => format!("mma.sync.m16n8k16.{}", ty.mma_ptx_type),
            other => other.name().to_string(),
        },
        mma_asm: if mma {
            format!(
                "mma.sync.aligned.m16n8k16.row.col.f32.{t}.{t}.f32 {{%0,%1,%2,%3}}, {{%4,%5,%6,%7}}, {{%8,%9}}, {{%0,%1,%2,%3}};\\n",
                t = ty.mma_ptx_type
            )
        } else {
            String::new()
        },
        ldmatrix: mma && s.ldmatrix,
        q_in_registers: tiles.q_in_registers,
        ldsm_asm: "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\\n".into(),
        ldsm_trans_asm: "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\\n"
            .into(),
        softmax: att.weights == Weights::Softmax,
        split: att.form == Form::SplitK,
        n_atoms: score.atoms.len().max(1),
        n_rowv: score.n_rowv.max(1),
        n_rowe: epilogue.n_rowe.max(1),
        args_fields: abi.args_fields.clone(),
        head_decode: abi.head_decode.clone(),
        head_params: heads
            .iter()
            .map(|h| format!(", long long hv_{h}"))
            .collect(),
        head_args: heads.iter().map(|h| format!(", hv_{h}")).collect(),
        q_rows: abi.q.clone(),
        k_rows: abi.k.clone(),
        v_rows: abi.v.clone(),
        n_queries: size(ranks.p),
        n_keys: size(ranks.key.m),
        e_size: size(ranks.e),
        f_size: size(ranks.f),
        launch_f_size: format!("a.s_{f}"),
        key_rank: c.rank(ranks.key.m).name.clone(),
        query_rank: c.rank(ranks.p).name.clone(),
        classify,
        row_setup: score.row_setup.clone(),
        score_fast: score.fast.clone(),
        score_general: score.general.clone(),
        epilogue_row: epilogue.row_setup.clone(),
        row_stores,
        elem_outputs,
        abi_params: abi.abi_params.clone(),
        core_params: abi.core_params.clone(),
        core_args: abi.core_args.clone(),
        null_args: abi.null_args.clone(),
        size_params: abi.size_params.clone(),
        size_setup: abi.size_setup.clone(),
        shape_check: abi.shape_check.clone(),
        args_setup: abi.args_setup.clone(),
        strided_params: abi.strided_params.clone(),
        stride_fields: abi.stride_fields.clone(),
        stride_doc: abi.stride_doc.clone(),
        aligned: if abi.aligned.is_empty() {
            "true".into()
        } else {
            abi.aligned.join(" && ")
        },
        roles,
        op_helpers: cexpr::c_helpers().into_iter().map(String::from).collect(),
    })
}

/// Each element output's rows and value, and the statements storing the per-row outputs.
fn outputs(
    c: &Cascade,
    epilogue: &exprs::EpilogueCode,
    abi: &abi::Abi,
) -> (Vec<ElemOutput>, Vec<String>) {
    let rows_of = |name: &str| {
        abi.outputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .expect("every output has rows")
    };
    let elem = epilogue
        .elem
        .iter()
        .map(|(t, value)| {
            let name = c.tensor(*t).name.clone();
            ElemOutput {
                rows: rows_of(&name),
                name,
                value: value.clone(),
            }
        })
        .collect();
    let rows = epilogue
        .rows
        .iter()
        .map(|(t, value)| {
            let rows = rows_of(&c.tensor(*t).name);
            format!(
                "if (row_ok && frag_row_leader(lane)) {{ elem_t* dst = {}; dst[row_p * {}] = from_f({value}); }}",
                rows.base, rows.seq
            )
        })
        .collect();
    (elem, rows)
}

/// The tile classifier's body: each atom's state over the tile from interval bounds, then the
/// tile's class from the presence formula.
fn classify_lines(
    c: &Cascade,
    att: &Attention,
    score: &exprs::ScoreCode,
    names: &exprs::KernelNames,
) -> Vec<String> {
    let key = att.ranks.key;
    let r = MaskRanks {
        m: key.m,
        split: key.split,
        p: att.ranks.p,
        query_split: att.ranks.query_split,
        exact: att.ranks.heads.clone(),
    };
    let describe = |k: &cascade_ir::Compare| cascade_ir::dsl::print_compare(c, k);
    let mut lines = tiles::atom_states(&score.atoms, r, names, &describe);
    lines.push(format!("const int presence = {};", score.kleene));
    lines.push("if (presence == TILE_SKIP) return CLASS_SKIP;".into());
    let all: Vec<String> = std::iter::once("k_hi < k_end".to_string())
        .chain((0..score.atoms.len()).map(|k| format!("st[{k}] == TILE_FULL")))
        .collect();
    lines.push(format!(
        "return ({}) ? CLASS_FAST : CLASS_GENERAL;",
        all.join(" && ")
    ));
    lines
}

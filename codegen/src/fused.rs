//! The fused lowering: a recognised online-softmax cascade becomes one FlashAttention-2-style
//! kernel. This computes every tile size, buffer size and C expression of that kernel.

use cascade_ir::{
    Access, Cascade, Compare, CompareOp, Expr, ExprId, IndexExpr, RankId, TensorId, TensorKind,
};

use crate::cexpr::{self, Names};
use crate::pattern::OnlineSoftmax;
use crate::tiles::{self, MaskRanks};
use crate::{CodegenError, GpuSchedule, Result, TargetDialect, TypeDialect, sizes};

/// The template context of the fused kernel: numbers and C text only.
#[derive(Debug, Clone)]
pub struct FusedPlan {
    pub kernel: String,
    pub launcher: String,
    pub head_dim: u32,
    pub block_m: u32,
    pub block_n: u32,
    pub warps: u32,
    pub threads: u32,
    /// `__launch_bounds__`'s minimum resident blocks: 1 lets the compiler use every register
    /// a thread may have (the accumulators need ~130-180), which avoids spills.
    pub min_blocks_per_sm: u32,
    pub rows_per_warp: u32,
    pub stages: u32,
    /// Row pitch of the shared-memory tiles in elements (padded by 16 bytes against bank conflicts).
    pub smem_ld: u32,
    /// 8-column MMA tiles of scores (`block_n / 8`) and of the output (`head_dim / 8`).
    pub s_tiles: u32,
    pub o_tiles: u32,
    /// 16-deep MMA steps of the two products.
    pub qk_ksteps: u32,
    pub pv_ksteps: u32,
    /// 16-byte chunks per tile row and elements per chunk (the `cp.async` granule).
    pub chunks_per_row: u32,
    pub elems_per_chunk: u32,
    pub q_smem_elems: u32,
    pub kv_stage_elems: u32,
    /// Scratch for the portable path's probabilities (floats); 0 on the MMA path.
    pub p_smem_floats: u32,
    pub smem_bytes: u32,
    /// `mma.sync.m16n8k16` operands come from registers; otherwise the SIMT path.
    pub mma: bool,
    pub matrix_path: String,
    /// The PTX text of the MMA instruction (empty on the portable path).
    pub mma_asm: String,
    /// MMA operands come from shared memory through `ldmatrix` (else 32/16-bit loads).
    pub ldmatrix: bool,
    pub ldsm_asm: String,
    pub ldsm_trans_asm: String,
    /// Every filter, the optional causal mask and the key bound, as one C condition.
    pub mask_elem: String,
    /// Body of the function that classifies a key tile for a query tile (skip/partial/full).
    pub tile_state: Vec<String>,
    pub score_scale: String,
    /// The bias of one score (`0.0f` without one) and the score as the cascade forms it.
    pub bias_load: String,
    pub score_expr: String,
    /// Expressions of the cascade's scalar Einsums over the kernel's locals.
    pub rm_update: String,
    pub sln_expr: String,
    pub prm_expr: String,
    pub rd_update: String,
    pub rnv_rescale: String,
    pub out_expr: String,
    /// Extra kernel parameters (params and split sizes) as declarations, and as arguments
    /// inside the kernel's helpers.
    pub param_decls: String,
    pub param_args: String,
    pub abi_params: String,
    /// Launcher statements binding every rank size (`s_*`) from the ABI arguments.
    pub size_setup: Vec<String>,
    pub shape_check: String,
    pub n_queries: String,
    pub n_keys: String,
    pub kernel_args: String,
    /// Arguments of the C++ target's per-batch call (pointers offset by batch entry `b`).
    pub cpp_args: String,
    /// The Einsum each kernel step implements, for the comments.
    pub roles: Vec<String>,
    /// C definitions of the operator table's helper functions.
    pub op_helpers: Vec<String>,
}

/// How the fused kernel names index variables and sizes: the key `m` is `key` (so `m1` and
/// `m0` are its quotient and remainder by the cascade's `M0`, whatever the kernel's tile), `p`
/// is `row`, and sizes other than the head dimension, key and query counts are the kernel's
/// `p_*` parameters.
struct FusedNames<'a> {
    c: &'a Cascade,
    m: &'a OnlineSoftmax,
    key: String,
    row: String,
}

impl Names for FusedNames<'_> {
    fn var(&self, r: RankId) -> String {
        let m = self.m;
        if r == m.m {
            self.key.clone()
        } else if r == m.m1 {
            format!("({} / {})", self.key, self.size(m.m0))
        } else if r == m.m0 {
            format!("({} % {})", self.key, self.size(m.m0))
        } else if r == m.p {
            self.row.clone()
        } else {
            // The recogniser admits no other variable in the kernel's expressions.
            format!("/*unbound {}*/0LL", self.c.var_name(r))
        }
    }

    fn size(&self, r: RankId) -> String {
        let m = self.m;
        if r == m.e || r == m.f {
            "HEAD_DIM".into()
        } else if r == m.m {
            "n_keys".into()
        } else if r == m.p {
            "n_queries".into()
        } else {
            format!("p_{}", self.c.rank(r).name)
        }
    }
}

pub fn plan(
    c: &Cascade,
    m: &OnlineSoftmax,
    s: &GpuSchedule,
    d: &TargetDialect,
) -> Result<FusedPlan> {
    let ty = TargetDialect::types(d.target, s.dtype);
    let tiles = Tiles::new(s, d, &ty)?;
    let elem_names = FusedNames {
        c,
        m,
        key: "((tile * BLOCK_N) + col)".into(),
        row: "row_p".into(),
    };
    let (mask_elem, tile_state) = mask(c, m, s, &elem_names);
    let exprs = Expressions::new(c, m, &elem_names)?;
    let abi = Abi::new(c, m, d);
    let roles = m
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
    let symbol = format!("cascade_{}", c.name);
    let mma = tiles.mma;
    Ok(FusedPlan {
        kernel: format!("{symbol}_fused"),
        launcher: symbol,
        head_dim: s.head_dim,
        block_m: s.block_m,
        block_n: s.block_n,
        warps: s.warps,
        threads: tiles.threads,
        min_blocks_per_sm: 1,
        rows_per_warp: tiles.rows_per_warp,
        stages: s.stages,
        smem_ld: tiles.smem_ld,
        s_tiles: s.block_n / 8,
        o_tiles: s.head_dim / 8,
        qk_ksteps: s.head_dim / 16,
        pv_ksteps: s.block_n / 16,
        chunks_per_row: s.head_dim * tiles.elem / 16,
        elems_per_chunk: 16 / tiles.elem,
        q_smem_elems: tiles.q_smem_elems,
        kv_stage_elems: tiles.kv_stage_elems,
        p_smem_floats: tiles.p_smem_floats,
        smem_bytes: tiles.smem_bytes,
        mma,
        matrix_path: if mma {
            format!("mma.sync.m16n8k16.{}", ty.mma_ptx_type)
        } else {
            d.plain_matrix_path.into()
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
        ldsm_asm: "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\\n".into(),
        ldsm_trans_asm: "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\\n"
            .into(),
        mask_elem,
        tile_state,
        score_scale: exprs.score_scale,
        rm_update: exprs.rm_update,
        sln_expr: exprs.sln_expr,
        prm_expr: exprs.prm_expr,
        rd_update: exprs.rd_update,
        rnv_rescale: exprs.rnv_rescale,
        out_expr: exprs.out_expr,
        bias_load: exprs.bias_load,
        score_expr: exprs.score_expr,
        param_decls: abi.param_decls,
        param_args: abi.param_args,
        abi_params: abi.abi_params,
        size_setup: abi.size_setup,
        shape_check: abi.shape_check,
        n_queries: abi.n_queries,
        n_keys: abi.n_keys,
        kernel_args: abi.kernel_args,
        cpp_args: abi.cpp_args,
        roles,
        op_helpers: cexpr::c_helpers().into_iter().map(String::from).collect(),
    })
}

/// The schedule's tiles, checked against the target, and the buffer sizes they imply.
struct Tiles {
    elem: u32,
    rows_per_warp: u32,
    threads: u32,
    smem_ld: u32,
    q_smem_elems: u32,
    kv_stage_elems: u32,
    p_smem_floats: u32,
    smem_bytes: u32,
    mma: bool,
}

impl Tiles {
    fn new(s: &GpuSchedule, d: &TargetDialect, ty: &TypeDialect) -> Result<Tiles> {
        let bad = |field, reason: String| Err(CodegenError::Schedule { field, reason });
        let target = d.target;
        if s.head_dim == 0 || !s.head_dim.is_multiple_of(16) {
            return bad(
                "head_dim",
                format!("{} is not a positive multiple of 16", s.head_dim),
            );
        }
        if s.warps == 0 {
            return bad("warps", "must be at least 1".into());
        }
        let rows_per_warp = d.rows_per_warp();
        if d.lockstep_warps {
            let rows = s.warps.saturating_mul(rows_per_warp);
            if s.block_m != rows {
                return bad(
                    "block_m",
                    format!(
                        "{} must be warps × {rows_per_warp} = {rows} on {target} (each warp owns {rows_per_warp} query rows)",
                        s.block_m
                    ),
                );
            }
            if s.stages != 2 {
                return bad(
                    "stages",
                    format!("{}: only double buffering (2) is implemented", s.stages),
                );
            }
        } else if s.block_m == 0 {
            return bad("block_m", "must be at least 1".into());
        }
        let elem = s.dtype.bytes();
        let mma = !ty.mma_ptx_type.is_empty();
        let too_big = || CodegenError::Schedule {
            field: "block_n",
            reason: format!(
                "block_m={} block_n={} head_dim={} need more memory than a 32-bit size holds",
                s.block_m, s.block_n, s.head_dim
            ),
        };
        // A head dimension whose byte size overflows is too big for every tile.
        s.head_dim.checked_mul(elem).ok_or_else(too_big)?;
        let smem_ld = s.head_dim.checked_add(16 / elem).ok_or_else(too_big)?;
        let q_smem_elems = s.block_m.checked_mul(smem_ld).ok_or_else(too_big)?;
        let kv_stage_elems = s.block_n.checked_mul(smem_ld).ok_or_else(too_big)?;
        let p_smem_floats = if mma {
            0
        } else {
            s.block_m.checked_mul(s.block_n).ok_or_else(too_big)?
        };
        let smem_bytes = (u64::from(q_smem_elems)
            + 2 * u64::from(s.stages) * u64::from(kv_stage_elems))
            * u64::from(elem)
            + 4 * u64::from(p_smem_floats);
        let smem_bytes = u32::try_from(smem_bytes).map_err(|_| too_big())?;
        if smem_bytes > d.max_smem_bytes {
            return bad(
                "block_n",
                format!(
                    "the tiles need {smem_bytes} bytes of shared memory, more than {target}'s {}; use smaller block_n or block_m",
                    d.max_smem_bytes
                ),
            );
        }
        Ok(Tiles {
            elem,
            rows_per_warp,
            threads: s.warps.checked_mul(d.warp_size).ok_or_else(too_big)?,
            smem_ld,
            q_smem_elems,
            kv_stage_elems,
            p_smem_floats,
            smem_bytes,
            mma,
        })
    }
}

/// The per-score visibility test and the tile classifier: the cascade's filters, the optional
/// causal mask and the ragged last key tile.
fn mask(
    c: &Cascade,
    m: &OnlineSoftmax,
    s: &GpuSchedule,
    names: &FusedNames,
) -> (String, Vec<String>) {
    let r = MaskRanks {
        m: m.m,
        m1: m.m1,
        m0: m.m0,
        p: m.p,
    };
    let mut conds: Vec<Compare> = m.mask.iter().map(|k| tiles::with_keys(k, r)).collect();
    if s.causal {
        conds.push(Compare {
            lhs: IndexExpr::Var(m.m),
            op: CompareOp::Le,
            rhs: IndexExpr::Var(m.p),
        });
    }
    conds.push(Compare {
        lhs: IndexExpr::Var(m.m),
        op: CompareOp::Lt,
        rhs: IndexExpr::Size(m.m),
    });
    let mask_elem = conds
        .iter()
        .map(|k| cexpr::compare(k, names))
        .collect::<Vec<_>>()
        .join(" && ");
    let describe = |k: &Compare| cascade_ir::dsl::print_compare(c, k);
    let tile_state = tiles::tile_state(&conds, r, names, &names.size(m.m0), &describe);
    (mask_elem, tile_state)
}

/// The kernel's scalar steps, rendered from the cascade's own expressions.
struct Expressions {
    score_scale: String,
    bias_load: String,
    score_expr: String,
    rm_update: String,
    sln_expr: String,
    prm_expr: String,
    rd_update: String,
    rnv_rescale: String,
    out_expr: String,
}

impl Expressions {
    fn new(c: &Cascade, m: &OnlineSoftmax, names: &FusedNames) -> Result<Expressions> {
        let at =
            |a: &Access, t: TensorId, idx: IndexExpr| a.tensor == t && a.indices.contains(&idx);
        let cur = IndexExpr::Var(m.m1);
        let next = IndexExpr::Add(Box::new(IndexExpr::Var(m.m1)), Box::new(IndexExpr::Lit(1)));
        let fin = IndexExpr::Size(m.m1);
        let local = |a: &Access| -> Option<String> {
            let name = if a.tensor == m.t_s {
                "s_val"
            } else if a.tensor == m.t_qk {
                "s_qk"
            } else if Some(a.tensor) == m.t_bias_tile {
                "bias_val"
            } else if a.tensor == m.t_lm {
                "lm"
            } else if at(a, m.t_rm, cur.clone()) {
                "rm_old"
            } else if at(a, m.t_rm, next.clone()) {
                "rm_new"
            } else if a.tensor == m.t_sld {
                "sld"
            } else if a.tensor == m.t_prm {
                "prm"
            } else if at(a, m.t_rd, cur.clone()) {
                "rd_old"
            } else if at(a, m.t_rnv, cur.clone()) {
                "o_old"
            } else if at(a, m.t_rd, fin.clone()) {
                "rd_fin"
            } else if at(a, m.t_rnv, fin.clone()) {
                "o_fin"
            } else if a.tensor == m.t_slnv {
                "pv"
            } else {
                return None;
            };
            Some(name.into())
        };
        let r = |id: ExprId| {
            render_plain(c, id, &local, names).map_err(|t| CodegenError::Unsupported {
                cascade: c.name.clone(),
                reason: format!(
                    "the fused kernel has no value for `{t}` in `{}`; use --no-fuse",
                    cascade_ir::dsl::print_einsum(c, m.e_out)
                ),
            })
        };
        let value = |e: cascade_ir::EinsumId| c.einsum(e).value;
        Ok(Expressions {
            score_scale: match &m.scale {
                Some(k) => cexpr::constant(k, names),
                None => "1.0f".into(),
            },
            bias_load: match m.bias {
                Some(_) => "((key < n_keys && row_p < n_queries) ? to_f(bias[row_p * n_keys + key]) : 0.0f)".into(),
                None => "0.0f".into(),
            },
            score_expr: match m.e_bias {
                Some(e) => r(value(e))?,
                None => "s_qk".into(),
            },
            rm_update: r(value(m.e_rm))?,
            sln_expr: r(value(m.e_sln))?,
            prm_expr: r(value(m.e_prm))?,
            rd_update: r(value(m.e_rd))?,
            rnv_rescale: r(m.x_rnv_rescale)?,
            out_expr: r(value(m.e_out))?,
        })
    }
}

/// The launcher's ABI (the same as the generic lowering's for this cascade) and how its sizes
/// reach the kernel.
struct Abi {
    abi_params: String,
    size_setup: Vec<String>,
    shape_check: String,
    n_queries: String,
    n_keys: String,
    param_decls: String,
    param_args: String,
    kernel_args: String,
    cpp_args: String,
}

impl Abi {
    fn new(c: &Cascade, m: &OnlineSoftmax, d: &TargetDialect) -> Abi {
        let local = |r: RankId| format!("s_{}", c.rank(r).name);
        let mut abi: Vec<String> = c
            .tensors
            .iter()
            .filter(|t| t.kind == TensorKind::Input)
            .map(|t| format!("const void* {}", t.name))
            .collect();
        abi.extend(
            c.outputs
                .iter()
                .map(|&o| format!("void* {}", c.tensor(o).name)),
        );
        abi.push("int batch".into());
        abi.extend(
            sizes::abi_sizes(c)
                .iter()
                .map(|&r| format!("long long {}", c.rank(r).name)),
        );
        abi.extend(d.stream_param.map(String::from));
        let extra = sizes::fused_kernel_sizes(c);
        let list = |f: &dyn Fn(RankId) -> String| extra.iter().map(|&r| f(r)).collect::<String>();
        let ptr =
            |t: TensorId, konst: &str| format!("static_cast<{konst}elem_t*>({})", c.tensor(t).name);
        let (np, nm) = (local(m.p), local(m.m));
        let extra_args = list(&|r| format!(", {}", local(r)));
        let bias_ptr = m.bias.map_or("nullptr".to_string(), |b| ptr(b, "const "));
        let cpp_bias = m.bias.map_or("nullptr".to_string(), |b| {
            format!("{} + b * {np} * {nm}", ptr(b, "const "))
        });
        Abi {
            abi_params: abi.join(", "),
            size_setup: sizes::size_setup(c, &local, "const long long "),
            shape_check: format!(
                "batch < 0 || {} != HEAD_DIM || {} != HEAD_DIM",
                local(m.e),
                local(m.f)
            ),
            param_decls: list(&|r| format!(", long long p_{}", c.rank(r).name)),
            param_args: list(&|r| format!(", p_{}", c.rank(r).name)),
            kernel_args: format!(
                "{}, {}, {}, {}, {bias_ptr}, {np}, {nm}{extra_args}",
                ptr(m.q, "const "),
                ptr(m.k, "const "),
                ptr(m.v, "const "),
                ptr(m.out, ""),
            ),
            cpp_args: format!(
                "{} + b * {np} * HEAD_DIM, {} + b * {nm} * HEAD_DIM, {} + b * {nm} * HEAD_DIM, {} + b * {np} * HEAD_DIM, {cpp_bias}, {np}, {nm}{extra_args}",
                ptr(m.q, "const "),
                ptr(m.k, "const "),
                ptr(m.v, "const "),
                ptr(m.out, ""),
            ),
            n_queries: np,
            n_keys: nm,
        }
    }
}

/// Renders a value with accesses replaced by kernel locals; an unmapped tensor defined by one
/// Einsum (like `SPD = RD·PRM`) is inlined. `Err` names a tensor that is neither.
fn render_plain(
    c: &Cascade,
    id: ExprId,
    map: &dyn Fn(&Access) -> Option<String>,
    names: &dyn Names,
) -> std::result::Result<String, String> {
    let r = |e: ExprId| render_plain(c, e, map, names);
    Ok(match c.expr(id) {
        Expr::Access(a) => match map(a) {
            Some(s) => s,
            None => {
                let defs: Vec<_> = c
                    .einsums
                    .iter()
                    .filter(|e| e.output.tensor == a.tensor)
                    .collect();
                match defs[..] {
                    [def] => r(def.value)?,
                    _ => return Err(c.tensor(a.tensor).name.clone()),
                }
            }
        },
        Expr::Const(k) => cexpr::constant(k, names),
        Expr::Unary(op, a) => cexpr::unary(*op, &r(*a)?),
        Expr::Binary { op, lhs, rhs, .. } => cexpr::binary(*op, &r(*lhs)?, &r(*rhs)?),
    })
}

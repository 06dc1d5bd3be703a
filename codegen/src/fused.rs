//! The fused lowering: a recognised online-softmax cascade becomes one FlashAttention-2-style
//! kernel. This computes every tile size, buffer size and C expression of that kernel.

use cascade_ir::{Access, Cascade, Compare, CompareOp, Expr, ExprId, IndexExpr, RankId, TensorId};

use crate::cexpr::{self, Names};
use crate::pattern::OnlineSoftmax;
use crate::{CodegenError, GpuSchedule, Result, Target, TargetDialect};

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
    /// Extra kernel parameters (`param` ranks) as declarations, and the launcher's arguments.
    pub param_decls: String,
    pub param_args: String,
    pub abi_params: String,
    pub shape_check: String,
    pub n_queries: String,
    pub n_keys: String,
    pub kernel_args: String,
    /// Arguments of the C++ target's per-batch call (pointers offset by batch entry `b`).
    pub cpp_args: String,
    /// The Einsum each kernel step implements, for the comments.
    pub roles: Vec<String>,
}

struct FusedNames<'a> {
    c: &'a Cascade,
    m: &'a OnlineSoftmax,
    /// C text of `m0` and `p` (the element or a tile corner).
    m0: String,
    p: String,
}

impl Names for FusedNames<'_> {
    fn var(&self, r: RankId) -> String {
        if r == self.m.m1 {
            "tile".into()
        } else if r == self.m.m0 {
            self.m0.clone()
        } else if r == self.m.p {
            self.p.clone()
        } else {
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
        } else if r == m.m0 {
            "BLOCK_N".into()
        } else if r == m.m1 {
            "((n_keys + BLOCK_N - 1) / BLOCK_N)".into()
        } else {
            format!("p_{}", self.c.rank(r).name)
        }
    }
}

pub fn plan(c: &Cascade, m: &OnlineSoftmax, s: &GpuSchedule, target: Target) -> Result<FusedPlan> {
    let d = TargetDialect::of(target);
    let ty = TargetDialect::types(target, s.dtype);
    let bad = |field, reason: String| Err(CodegenError::Schedule { field, reason });
    if s.head_dim == 0 || !s.head_dim.is_multiple_of(16) {
        return bad(
            "head_dim",
            format!("{} is not a positive multiple of 16", s.head_dim),
        );
    }
    let rows_per_warp = if d.warp_size >= 32 {
        16 * d.warp_size / 32
    } else {
        16
    };
    if target != Target::Cpp {
        if s.block_m != s.warps * rows_per_warp {
            return bad(
                "block_m",
                format!(
                    "{} must be warps × {rows_per_warp} = {} on {target} (each warp owns {rows_per_warp} query rows)",
                    s.block_m,
                    s.warps * rows_per_warp
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
    let smem_ld = s.head_dim + 16 / elem;
    let mma = !ty.mma_ptx_type.is_empty();
    let q_smem_elems = s.block_m * smem_ld;
    let kv_stage_elems = s.block_n * smem_ld;
    let p_smem_floats = if mma { 0 } else { s.block_m * s.block_n };
    let smem_bytes = (q_smem_elems + 2 * s.stages * kv_stage_elems) * elem + 4 * p_smem_floats;
    if target != Target::Cpp && smem_bytes > d.max_smem_bytes {
        return bad(
            "block_n",
            format!(
                "the tiles need {smem_bytes} bytes of shared memory, more than {target}'s {}; use smaller block_n or block_m",
                d.max_smem_bytes
            ),
        );
    }

    // Conditions: the cascade's filters, the optional causal mask, and the ragged last tile.
    let key = || {
        IndexExpr::Add(
            Box::new(IndexExpr::Mul(
                Box::new(IndexExpr::Var(m.m1)),
                Box::new(IndexExpr::Size(m.m0)),
            )),
            Box::new(IndexExpr::Var(m.m0)),
        )
    };
    let mut conds = m.mask.clone();
    for cond in &conds {
        let mut vars = Vec::new();
        cond.lhs.collect_vars(&mut vars);
        cond.rhs.collect_vars(&mut vars);
        if let Some(v) = vars.iter().find(|v| ![m.m1, m.m0, m.p].contains(v)) {
            return Err(CodegenError::Unsupported {
                cascade: c.name.clone(),
                reason: format!(
                    "a score filter uses `{}`; the fused kernel masks over m1, m0 and p only",
                    c.var_name(*v)
                ),
            });
        }
    }
    if s.causal {
        conds.push(Compare {
            lhs: key(),
            op: CompareOp::Le,
            rhs: IndexExpr::Var(m.p),
        });
    }
    conds.push(Compare {
        lhs: key(),
        op: CompareOp::Lt,
        rhs: IndexExpr::Size(m.m),
    });
    let names = |m0: &str, p: &str| FusedNames {
        c,
        m,
        m0: m0.into(),
        p: p.into(),
    };
    let elem_names = names("col", "row_p");
    let mask_elem = conds
        .iter()
        .map(|k| cexpr::compare(k, &elem_names))
        .collect::<Vec<_>>()
        .join(" && ");
    let mut tile_state = vec!["bool full = true;".to_string()];
    for cond in &conds {
        if !affine(&cond.lhs) || !affine(&cond.rhs) {
            tile_state.push("full = false;  // not affine: no corner test".into());
            continue;
        }
        let corners: Vec<String> = [
            ("0LL", "p_lo"),
            ("0LL", "p_hi"),
            ("(BLOCK_N - 1LL)", "p_lo"),
            ("(BLOCK_N - 1LL)", "p_hi"),
        ]
        .iter()
        .map(|(m0, p)| cexpr::compare(cond, &names(m0, p)))
        .collect();
        tile_state.push(format!(
            "{{  // {}\n    const bool c0 = {}, c1 = {}, c2 = {}, c3 = {};\n    if (!(c0 || c1 || c2 || c3)) return TILE_SKIP;\n    full = full && c0 && c1 && c2 && c3;\n  }}",
            cond_text(c, cond),
            corners[0],
            corners[1],
            corners[2],
            corners[3]
        ));
    }
    tile_state.push("return full ? TILE_FULL : TILE_PARTIAL;".into());

    // The scalar steps, rendered from the cascade's own expressions.
    let at = |a: &Access, t: TensorId, idx: IndexExpr| a.tensor == t && a.indices.contains(&idx);
    let cur = IndexExpr::Var(m.m1);
    let next = IndexExpr::Add(Box::new(IndexExpr::Var(m.m1)), Box::new(IndexExpr::Lit(1)));
    let fin = IndexExpr::Size(m.m1);
    let map = |a: &Access| -> Option<String> {
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
    let r = |id: ExprId| render_plain(c, id, &map, &elem_names);
    let value = |e: cascade_ir::EinsumId| c.einsum(e).value;
    let score_scale = match &m.scale {
        Some(k) => cexpr::constant(k, &elem_names),
        None => "1.0f".into(),
    };

    let symbol = format!("cascade_{}", c.name);
    let inputs: Vec<_> = c
        .tensors
        .iter()
        .filter(|t| t.kind == cascade_ir::TensorKind::Input)
        .collect();
    let sizes = crate::generic::abi_sizes(c);
    let mut abi = Vec::new();
    for t in &inputs {
        abi.push(format!("const void* {}", t.name));
    }
    for &o in &c.outputs {
        abi.push(format!("void* {}", c.tensor(o).name));
    }
    abi.push("int batch".into());
    for &rk in &sizes {
        abi.push(format!("long long {}", c.rank(rk).name));
    }
    if target != Target::Cpp {
        abi.push("void* stream_ptr".into());
    }
    let params: Vec<RankId> = sizes
        .iter()
        .copied()
        .filter(|&rk| c.rank(rk).is_param)
        .collect();
    let param_decls: String = params
        .iter()
        .map(|&rk| format!(", long long p_{}", c.rank(rk).name))
        .collect();
    let param_args: String = params
        .iter()
        .map(|&rk| format!(", p_{}", c.rank(rk).name))
        .collect();
    let name_of = |t: TensorId| c.tensor(t).name.clone();
    let mut checks = vec!["batch < 0".to_string()];
    for &rk in &sizes {
        let n = &c.rank(rk).name;
        if rk == m.e || rk == m.f {
            checks.push(format!("{n} != HEAD_DIM"));
        } else if !c.rank(rk).is_param {
            checks.push(format!("{n} < 0"));
        }
    }
    let ptr = |t: TensorId, konst: &str| format!("static_cast<{konst}elem_t*>({})", name_of(t));
    let bias_ptr = m.bias.map_or("nullptr".to_string(), |b| ptr(b, "const "));
    let kernel_args = format!(
        "{}, {}, {}, {}, {bias_ptr}, {}, {}{}",
        ptr(m.q, "const "),
        ptr(m.k, "const "),
        ptr(m.v, "const "),
        ptr(m.out, ""),
        c.rank(m.p).name,
        c.rank(m.m).name,
        params
            .iter()
            .map(|&rk| format!(", {}", c.rank(rk).name))
            .collect::<String>()
    );
    let (np, nm) = (c.rank(m.p).name.clone(), c.rank(m.m).name.clone());
    let cpp_bias = m.bias.map_or("nullptr".to_string(), |b| {
        format!("{} + b * {np} * {nm}", ptr(b, "const "))
    });
    let cpp_args = format!(
        "{} + b * {np} * HEAD_DIM, {} + b * {nm} * HEAD_DIM, {} + b * {nm} * HEAD_DIM, {} + b * {np} * HEAD_DIM, {cpp_bias}, n_queries, n_keys{}",
        ptr(m.q, "const "),
        ptr(m.k, "const "),
        ptr(m.v, "const "),
        ptr(m.out, ""),
        params
            .iter()
            .map(|&rk| format!(", {}", c.rank(rk).name))
            .collect::<String>()
    );
    let bias_load = match m.bias {
        Some(_) => {
            "((key < n_keys && row_p < n_queries) ? to_f(bias[row_p * n_keys + key]) : 0.0f)"
                .to_string()
        }
        None => "0.0f".to_string(),
    };
    let score_expr = match m.e_bias {
        Some(e) => r(value(e)),
        None => "s_qk".to_string(),
    };
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
    Ok(FusedPlan {
        kernel: format!("{symbol}_fused"),
        launcher: symbol,
        head_dim: s.head_dim,
        block_m: s.block_m,
        block_n: s.block_n,
        warps: s.warps,
        threads: s.warps * d.warp_size,
        min_blocks_per_sm: 1,
        rows_per_warp,
        stages: s.stages,
        smem_ld,
        s_tiles: s.block_n / 8,
        o_tiles: s.head_dim / 8,
        qk_ksteps: s.head_dim / 16,
        pv_ksteps: s.block_n / 16,
        chunks_per_row: s.head_dim * elem / 16,
        elems_per_chunk: 16 / elem,
        q_smem_elems,
        kv_stage_elems,
        p_smem_floats,
        smem_bytes,
        mma,
        matrix_path: if mma {
            format!("mma.sync.m16n8k16.{}", ty.mma_ptx_type)
        } else if target == Target::Cpp {
            "scalar".into()
        } else {
            "simt".into()
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
        score_scale,
        rm_update: r(value(m.e_rm)),
        sln_expr: r(value(m.e_sln)),
        prm_expr: r(value(m.e_prm)),
        rd_update: r(value(m.e_rd)),
        rnv_rescale: r(m.x_rnv_rescale),
        out_expr: r(value(m.e_out)),
        param_decls,
        param_args,
        abi_params: abi.join(", "),
        shape_check: checks.join(" || "),
        n_queries: c.rank(m.p).name.clone(),
        n_keys: c.rank(m.m).name.clone(),
        kernel_args,
        cpp_args,
        bias_load,
        score_expr,
        roles,
    })
}

fn cond_text(c: &Cascade, k: &Compare) -> String {
    struct Plain<'a>(&'a Cascade);
    impl Names for Plain<'_> {
        fn var(&self, r: RankId) -> String {
            self.0.var_name(r)
        }
        fn size(&self, r: RankId) -> String {
            self.0.rank(r).name.clone()
        }
    }
    cexpr::compare(k, &Plain(c))
}

/// Affine: no product of two terms that both contain a variable.
fn affine(e: &IndexExpr) -> bool {
    match e {
        IndexExpr::Var(_) | IndexExpr::Size(_) | IndexExpr::Lit(_) => true,
        IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => affine(a) && affine(b),
        IndexExpr::Mul(a, b) => {
            let (mut va, mut vb) = (Vec::new(), Vec::new());
            a.collect_vars(&mut va);
            b.collect_vars(&mut vb);
            affine(a) && affine(b) && (va.is_empty() || vb.is_empty())
        }
    }
}

/// Renders a value with accesses replaced by kernel locals; an unmapped tensor defined by one
/// Einsum (like `SPD = RD·PRM`) is inlined.
fn render_plain(
    c: &Cascade,
    id: ExprId,
    map: &dyn Fn(&Access) -> Option<String>,
    names: &dyn Names,
) -> String {
    match c.expr(id) {
        Expr::Access(a) => match map(a) {
            Some(s) => s,
            None => {
                let defs: Vec<_> = c
                    .einsums
                    .iter()
                    .filter(|e| e.output.tensor == a.tensor)
                    .collect();
                match defs[..] {
                    [def] => render_plain(c, def.value, map, names),
                    _ => format!("/*{}*/0.0f", c.tensor(a.tensor).name),
                }
            }
        },
        Expr::Const(k) => cexpr::constant(k, names),
        Expr::Unary(op, a) => cexpr::unary(*op, &render_plain(c, *a, map, names)),
        Expr::Binary { op, lhs, rhs, .. } => cexpr::binary(
            *op,
            &render_plain(c, *lhs, map, names),
            &render_plain(c, *rhs, map, names),
        ),
    }
}

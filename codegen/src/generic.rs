//! The generic lowering: any valid cascade becomes one kernel per Einsum over global memory.
//!
//! Every intermediate tensor is a float buffer plus a presence byte per point. Each Einsum's
//! kernel runs one thread (or loop iteration) per point of its output variables and loops over
//! its reduced variables, combining present values only; a fiber with none stays absent.
//! Iterative ranks are host loops: the Einsums whose space holds the rank run once per value
//! until the stop condition holds. Absent output points are written as 0.

use cascade_ir::{
    Access, BinaryOp, Cascade, Constant, EinsumId, Expr, ExprId, IndexExpr, Merge, RankId,
    ReduceOp, Section, TensorId, TensorKind, UnaryOp,
};

use crate::cexpr::{self, Names};
use crate::{CodegenError, GpuSchedule, Result, Target, TargetDialect};

/// One kernel of the generic lowering.
#[derive(Debug, Clone)]
pub struct GenericKernel {
    pub name: String,
    /// The Einsum it computes, as DSL text.
    pub comment: String,
    /// Statements that decode `idx` into the output variables.
    pub decode: Vec<String>,
    /// Statements that compute and store one point.
    pub body: Vec<String>,
}

/// An intermediate buffer: its name and its element count as C over `c.s_*`.
#[derive(Debug, Clone)]
pub struct Buffer {
    pub name: String,
    pub elems: String,
}

/// The template context of the generic lowering.
#[derive(Debug, Clone)]
pub struct GenericPlan {
    pub launcher: String,
    pub abi_params: String,
    pub why_not_fused: String,
    /// C definitions of the operator table's helper functions.
    pub op_helpers: Vec<String>,
    /// C declarations of the context struct's fields.
    pub ctx_fields: Vec<String>,
    /// Launcher statements that derive every rank size from the arguments.
    pub size_setup: Vec<String>,
    pub buffers: Vec<Buffer>,
    /// Per-batch pointer set-up of inputs and outputs.
    pub io_setup: Vec<String>,
    pub kernels: Vec<GenericKernel>,
    /// The host schedule: launches and iterative loops, in order.
    pub host_steps: Vec<String>,
    pub threads: u32,
}

/// Sizes the launcher takes: ranks that are not part of a split, and params, in declaration order.
pub fn abi_sizes(c: &Cascade) -> Vec<RankId> {
    let children: Vec<RankId> = c
        .ranks
        .iter()
        .filter_map(|r| r.split)
        .flat_map(|(a, b)| [a, b])
        .collect();
    (0..c.ranks.len() as u32)
        .map(RankId)
        .filter(|r| !children.contains(r))
        .collect()
}

struct GenericNames<'a> {
    c: &'a Cascade,
    iterative: Option<RankId>,
}

impl Names for GenericNames<'_> {
    fn var(&self, r: RankId) -> String {
        if Some(r) == self.iterative {
            "it".into()
        } else {
            format!("v_{}", self.c.var_name(r))
        }
    }
    fn size(&self, r: RankId) -> String {
        format!("c.s_{}", self.c.rank(r).name)
    }
}

pub fn plan(
    c: &Cascade,
    s: &GpuSchedule,
    target: Target,
    why_not_fused: String,
) -> Result<GenericPlan> {
    let unsupported = |reason: String| CodegenError::Unsupported {
        cascade: c.name.clone(),
        reason,
    };
    let d = TargetDialect::of(target);
    let iterative = c.iterative_ranks();
    if iterative.len() > 1 {
        return Err(unsupported(
            "the generic lowering handles one iterative rank".into(),
        ));
    }
    let iter_rank = iterative.first().copied();
    let names = GenericNames {
        c,
        iterative: iter_rank,
    };
    let size = |r: RankId| names.size(r);

    // Extents: state tensors written at `r+k` hold k more points along r.
    let extents: Vec<Vec<String>> = c
        .tensors
        .iter()
        .enumerate()
        .map(|(ti, t)| {
            t.ranks
                .iter()
                .enumerate()
                .map(|(pos, &r)| {
                    let shift = c
                        .einsums
                        .iter()
                        .filter(|e| e.output.tensor.index() == ti)
                        .filter_map(|e| match e.output.indices.get(pos) {
                            Some(IndexExpr::Add(a, b)) => match (&**a, &**b) {
                                (IndexExpr::Var(v), IndexExpr::Lit(k)) if *v == r && *k > 0 => {
                                    Some(*k)
                                }
                                _ => None,
                            },
                            _ => None,
                        })
                        .max()
                        .unwrap_or(0);
                    if shift > 0 {
                        format!("({} + {shift}LL)", size(r))
                    } else {
                        size(r)
                    }
                })
                .collect()
        })
        .collect();
    let elems = |t: TensorId| {
        let e = &extents[t.index()];
        if e.is_empty() {
            "1LL".to_string()
        } else {
            e.join(" * ")
        }
    };
    let inputs: Vec<TensorId> = tensor_ids(c)
        .filter(|&t| c.tensor(t).kind == TensorKind::Input)
        .collect();
    let computed: Vec<TensorId> = tensor_ids(c)
        .filter(|&t| c.tensor(t).kind != TensorKind::Input)
        .collect();
    for &o in &c.outputs {
        if c.tensor(o).kind == TensorKind::Input {
            return Err(unsupported(format!(
                "output {} is an input",
                c.tensor(o).name
            )));
        }
    }

    let mut ctx_fields: Vec<String> = c
        .ranks
        .iter()
        .map(|r| format!("long long s_{};", r.name))
        .collect();
    for &t in &inputs {
        ctx_fields.push(format!("const elem_t* in_{};", c.tensor(t).name));
    }
    for &t in &c.outputs {
        ctx_fields.push(format!("elem_t* out_{};", c.tensor(t).name));
    }
    for &t in &computed {
        ctx_fields.push(format!("float* t_{};", c.tensor(t).name));
        ctx_fields.push(format!("unsigned char* p_{};", c.tensor(t).name));
    }

    // Sizes: arguments for root ranks and params; split children from the schedule's tile.
    let abi = abi_sizes(c);
    let mut size_setup = Vec::new();
    for &r in &abi {
        let n = &c.rank(r).name;
        size_setup.push(format!("c.s_{n} = {n};"));
        if !c.rank(r).is_param {
            size_setup.push(format!("if (c.s_{n} < 1) return CASCADE_ERR_SHAPE;"));
        }
    }
    for r in &c.ranks {
        if let Some((outer, inner)) = r.split {
            let (o, i) = (&c.rank(outer).name, &c.rank(inner).name);
            size_setup.push(format!(
                "c.s_{i} = {tile}LL < c.s_{n} ? {tile}LL : c.s_{n};  // split {n} -> {o} {i}: the schedule's tile",
                tile = s.block_n,
                n = r.name
            ));
            size_setup.push(format!(
                "if (c.s_{n} % c.s_{i} != 0) return CASCADE_ERR_SHAPE;",
                n = r.name
            ));
            size_setup.push(format!("c.s_{o} = c.s_{n} / c.s_{i};", n = r.name));
        }
    }

    let mut io_setup = Vec::new();
    for &t in &inputs {
        let n = &c.tensor(t).name;
        io_setup.push(format!(
            "c.in_{n} = static_cast<const elem_t*>({n}) + b * ({});",
            elems(t)
        ));
    }
    for &t in &c.outputs {
        let n = &c.tensor(t).name;
        io_setup.push(format!(
            "c.out_{n} = static_cast<elem_t*>({n}) + b * ({});",
            elems(t)
        ));
    }

    let lin = |t: TensorId, idx: &[String]| -> String {
        let ext = &extents[t.index()];
        let mut s = String::new();
        for (i, ix) in idx.iter().enumerate().rev() {
            s = if s.is_empty() {
                ix.clone()
            } else {
                format!("{ix} + {} * ({s})", ext[i])
            };
        }
        if s.is_empty() { "0LL".into() } else { s }
    };
    let in_bounds = |t: TensorId, idx: &[String]| -> String {
        let ext = &extents[t.index()];
        let parts: Vec<String> = idx
            .iter()
            .zip(ext)
            .map(|(i, e)| format!("{i} >= 0 && {i} < {e}"))
            .collect();
        if parts.is_empty() {
            "true".into()
        } else {
            parts.join(" && ")
        }
    };

    let mut kernels = Vec::new();
    let launch = |k: &str, n: &str| -> String {
        let grid = format!("dim3(static_cast<unsigned>((n + {t} - 1) / {t}))", t = 256);
        format!(
            "{{ const long long n = {n}; if (n > 0) {{ {} }} }}",
            d.launch(target, k, &grid, "dim3(256)", "0", "c, it, n")
        )
    };
    let mut steps_before = Vec::new();
    let mut loop_steps = Vec::new();
    let mut steps_after = Vec::new();
    let written_in_loop: Vec<TensorId> = c
        .einsum_ids()
        .filter(|&id| c.einsum(id).section == Section::Body && in_loop(c, id, iter_rank))
        .map(|id| c.einsum(id).output.tensor)
        .collect();
    for id in c.einsum_ids() {
        let e = c.einsum(id);
        let looped = e.section == Section::Body && in_loop(c, id, iter_rank);
        let space = c.iteration_space(id);
        let mut out_vars = Vec::new();
        e.output.collect_vars(&mut out_vars);
        if let Some(r) = iter_rank {
            if space.contains(&r) && !out_vars.contains(&r) {
                return Err(unsupported(format!(
                    "`{}` reduces the iterative rank {}; the generic lowering cannot",
                    cascade_ir::dsl::print_einsum(c, id),
                    c.rank(r).name
                )));
            }
            if e.section == Section::Init
                && space.contains(&r)
                && e.output.indices.iter().any(|i| i.shifted_var() == Some(r))
            {
                return Err(unsupported(
                    "an init Einsum writes along the iterative rank".into(),
                ));
            }
        }
        let free: Vec<RankId> = out_vars
            .iter()
            .copied()
            .filter(|&r| !(looped && Some(r) == iter_rank))
            .collect();
        let reduced: Vec<RankId> = space
            .iter()
            .copied()
            .filter(|r| !out_vars.contains(r))
            .collect();
        let kname = format!("k{}_{}", id.0, c.tensor(e.output.tensor).name);
        let mut decode = vec!["long long rem = idx;".to_string()];
        for &r in &free {
            decode.push(format!(
                "const long long {} = rem % {}; rem /= {};",
                names.var(r),
                size(r),
                size(r)
            ));
        }
        decode.push("(void)rem;".into());
        let mut body = Vec::new();
        let out_idx: Vec<String> = e
            .output
            .indices
            .iter()
            .map(|i| cexpr::index(i, &names))
            .collect();
        let out_t = e.output.tensor;
        let oname = c.tensor(out_t).name.clone();
        if matches!(c.expr(e.value), Expr::Const(Constant::Num(z)) if *z == 0.0) {
            body.push(
                "// The bare literal 0 leaves its points absent (0 is the fill value).".into(),
            );
            body.push("const bool pr = false; const float val = 0.0f;".into());
        } else if let Some(op) = c.reduce_op(id) {
            let (init, combine) = match op {
                ReduceOp::Sum => ("0.0f", "acc + v"),
                ReduceOp::Max => ("(-INFINITY)", "fmaxf(acc, v)"),
                ReduceOp::Min => ("INFINITY", "fminf(acc, v)"),
                ReduceOp::Prod => ("1.0f", "acc * v"),
            };
            body.push(format!("float acc = {init}; bool any = false;"));
            let mut close = 0;
            for &r in &reduced {
                body.push(format!(
                    "for (long long {v} = 0; {v} < {}; ++{v}) {{",
                    size(r),
                    v = names.var(r)
                ));
                close += 1;
            }
            let mut n = 0;
            let (v, p) = expr_stmts(
                c, e.value, &names, &mut body, &mut n, &inputs, &lin, &in_bounds,
            );
            body.push(format!(
                "if ({p}) {{ const float v = {v}; acc = any ? {combine} : v; any = true; }}"
            ));
            for _ in 0..close {
                body.push("}".into());
            }
            body.push("const bool pr = any; const float val = acc;".into());
        } else {
            let mut n = 0;
            let (v, p) = expr_stmts(
                c, e.value, &names, &mut body, &mut n, &inputs, &lin, &in_bounds,
            );
            body.push(format!("const bool pr = {p}; const float val = {v};"));
        }
        body.push(format!(
            "const long long o[] = {{{}}};",
            if out_idx.is_empty() {
                "0LL".into()
            } else {
                out_idx.join(", ")
            }
        ));
        let oidx: Vec<String> = (0..out_idx.len()).map(|i| format!("o[{i}]")).collect();
        body.push(format!(
            "if ({}) {{ const long long at = {}; c.t_{oname}[at] = pr ? val : 0.0f; c.p_{oname}[at] = pr; }}",
            in_bounds(out_t, &oidx),
            lin(out_t, &oidx)
        ));
        let n_points = if free.is_empty() {
            "1LL".to_string()
        } else {
            free.iter()
                .map(|&r| size(r))
                .collect::<Vec<_>>()
                .join(" * ")
        };
        let step = launch(&kname, &n_points);
        if looped {
            loop_steps.push(step);
        } else if e.section == Section::Init || !reads_any(c, id, &written_in_loop) {
            steps_before.push(step);
        } else {
            steps_after.push(step);
        }
        kernels.push(GenericKernel {
            name: kname,
            comment: cascade_ir::dsl::print_einsum(c, id),
            decode,
            body: nest(body),
        });
    }
    let mut host_steps = steps_before;
    if let Some(r) = iter_rank {
        let stop = match &c.stop {
            Some(k) => format!(" && !{}", cexpr::compare(k, &names)),
            None => String::new(),
        };
        host_steps.push(format!(
            "for (long long it = 0; it < {}{stop}; ++it) {{",
            size(r)
        ));
        host_steps.extend(loop_steps.into_iter().map(|s| format!("  {s}")));
        host_steps.push("}".into());
    }
    host_steps.extend(steps_after);
    for &o in &c.outputs {
        let n = &c.tensor(o).name;
        let kname = format!("store_{n}");
        kernels.push(GenericKernel {
            name: kname.clone(),
            comment: format!("output {n}: absent points are written as 0"),
            decode: vec![],
            body: vec![format!(
                "c.out_{n}[idx] = from_f(c.p_{n}[idx] ? c.t_{n}[idx] : 0.0f);"
            )],
        });
        host_steps.push(launch(&kname, &elems(o)));
    }

    let mut abi_params: Vec<String> = inputs
        .iter()
        .map(|&t| format!("const void* {}", c.tensor(t).name))
        .collect();
    abi_params.extend(
        c.outputs
            .iter()
            .map(|&t| format!("void* {}", c.tensor(t).name)),
    );
    abi_params.push("int batch".into());
    abi_params.extend(abi.iter().map(|&r| format!("long long {}", c.rank(r).name)));
    if target != Target::Cpp {
        abi_params.push("void* stream_ptr".into());
    }
    Ok(GenericPlan {
        op_helpers: cexpr::c_helpers().into_iter().map(String::from).collect(),
        launcher: format!("cascade_{}", c.name),
        abi_params: abi_params.join(", "),
        why_not_fused,
        ctx_fields,
        size_setup,
        buffers: computed
            .iter()
            .map(|&t| Buffer {
                name: c.tensor(t).name.clone(),
                elems: elems(t),
            })
            .collect(),
        io_setup,
        kernels,
        host_steps,
        threads: 256,
    })
}

/// Indents the statements inside the reduction loops (lines opening `for … {` and closing `}`).
fn nest(lines: Vec<String>) -> Vec<String> {
    let mut depth = 0;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        if line == "}" {
            depth -= 1;
        }
        out.push(format!("{}{line}", "  ".repeat(depth)));
        if line.starts_with("for ") && line.ends_with('{') {
            depth += 1;
        }
    }
    out
}

fn tensor_ids(c: &Cascade) -> impl Iterator<Item = TensorId> + '_ {
    (0..c.tensors.len() as u32).map(TensorId)
}

fn in_loop(c: &Cascade, id: EinsumId, iter_rank: Option<RankId>) -> bool {
    iter_rank.is_some_and(|r| c.iteration_space(id).contains(&r))
}

fn reads_any(c: &Cascade, id: EinsumId, tensors: &[TensorId]) -> bool {
    c.accesses(c.einsum(id).value)
        .iter()
        .any(|a| tensors.contains(&a.tensor))
}

/// Emits statements computing `id`; returns the C names of its value and presence.
#[allow(clippy::too_many_arguments)]
fn expr_stmts(
    c: &Cascade,
    id: ExprId,
    names: &dyn Names,
    out: &mut Vec<String>,
    n: &mut usize,
    inputs: &[TensorId],
    lin: &dyn Fn(TensorId, &[String]) -> String,
    in_bounds: &dyn Fn(TensorId, &[String]) -> String,
) -> (String, String) {
    let k = *n;
    *n += 1;
    let (v, p) = (format!("x{k}"), format!("q{k}"));
    match c.expr(id) {
        Expr::Access(a) => access_stmts(c, a, names, out, &v, &p, inputs, lin, in_bounds),
        Expr::Const(konst) => {
            out.push(format!(
                "const float {v} = {}; const bool {p} = true;",
                cexpr::constant(konst, names)
            ));
        }
        Expr::Unary(op, a) => {
            let first = *n;
            let (av, ap) = expr_stmts(c, *a, names, out, n, inputs, lin, in_bounds);
            let value = match (op, c.expr(*a)) {
                // exp(x - c) is 0 when x is a present -inf, as for sub-then-exp (`eval` does the
                // same); the subtraction's left operand is the node numbered right after it.
                (
                    UnaryOp::Exp,
                    Expr::Binary {
                        op: BinaryOp::Sub, ..
                    },
                ) => format!(
                    "((q{l} && x{l} == -INFINITY) ? 0.0f : expf({av}))",
                    l = first + 1
                ),
                _ => cexpr::unary(*op, &av),
            };
            out.push(format!(
                "const bool {p} = {ap}; const float {v} = {p} ? {value} : 0.0f;"
            ));
        }
        Expr::Binary {
            op,
            merge,
            lhs,
            rhs,
        } => {
            let (a, pa) = expr_stmts(c, *lhs, names, out, n, inputs, lin, in_bounds);
            let (b, pb) = expr_stmts(c, *rhs, names, out, n, inputs, lin, in_bounds);
            let both = cexpr::binary(*op, &a, &b);
            let zl = format!("({pa} ? {a} : 0.0f)");
            let zr = format!("({pb} ? {b} : 0.0f)");
            let (present, value) = match merge {
                Merge::Intersect => (format!("{pa} && {pb}"), both),
                Merge::Union => {
                    // A lone operand meets the op's identity, as `eval` defines it:
                    // a + ∅ = a, ∅ - b = -b, ∅ / b = 1/b, exp(a - ∅) = exp(a), max(a, ∅) = a.
                    let lone_lhs = match op {
                        BinaryOp::SubExp => format!("expf({a})"),
                        _ => a.clone(),
                    };
                    let lone_rhs = match op {
                        BinaryOp::Sub => format!("(-{b})"),
                        BinaryOp::Div => format!("(1.0f / {b})"),
                        BinaryOp::SubExp => format!("expf(-{b})"),
                        _ => b.clone(),
                    };
                    (
                        format!("{pa} || {pb}"),
                        format!("({pa} && {pb}) ? {both} : ({pa} ? {lone_lhs} : {lone_rhs})"),
                    )
                }
                Merge::Right => (pb.clone(), cexpr::binary(*op, &zl, &b)),
                Merge::All => ("true".into(), cexpr::binary(*op, &zl, &zr)),
            };
            out.push(format!(
                "const bool {p} = {present}; const float {v} = {p} ? ({value}) : 0.0f;"
            ));
        }
    }
    (v, p)
}

#[allow(clippy::too_many_arguments)]
fn access_stmts(
    c: &Cascade,
    a: &Access,
    names: &dyn Names,
    out: &mut Vec<String>,
    v: &str,
    p: &str,
    inputs: &[TensorId],
    lin: &dyn Fn(TensorId, &[String]) -> String,
    in_bounds: &dyn Fn(TensorId, &[String]) -> String,
) {
    let t = a.tensor;
    let name = &c.tensor(t).name;
    let idx: Vec<String> = a.indices.iter().map(|i| cexpr::index(i, names)).collect();
    let ivars: Vec<String> = (0..idx.len()).map(|i| format!("{v}_i{i}")).collect();
    for (iv, ix) in ivars.iter().zip(&idx) {
        out.push(format!("const long long {iv} = {ix};"));
    }
    let mut conds = vec![in_bounds(t, &ivars)];
    for f in &a.filters {
        for k in &f.conds {
            conds.push(cexpr::compare(k, names));
        }
    }
    let ok = conds.join(" && ");
    let at = lin(t, &ivars);
    if inputs.contains(&t) {
        out.push(format!("const bool {p} = {ok};"));
        out.push(format!(
            "const float {v} = {p} ? to_f(c.in_{name}[{at}]) : 0.0f;"
        ));
    } else {
        out.push(format!("const bool {p} = ({ok}) && c.p_{name}[{at}];"));
        out.push(format!("const float {v} = {p} ? c.t_{name}[{at}] : 0.0f;"));
    }
}

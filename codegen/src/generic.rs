//! The generic lowering: any cascade it can prove safe becomes one kernel per Einsum over
//! global memory, with the interpreter's semantics.
//!
//! Every intermediate tensor is a float buffer plus a presence byte per point. Each Einsum's
//! kernel runs one thread (or loop iteration) per point of its free variables and loops over
//! its reduced variables, combining present values only; a fiber with none stays absent, and an
//! output filter makes the value absent where it fails. When each Einsum runs is the loop
//! plan's decision ([`LoopPlan`]): the host runs `plan.steps` in order, the iterative loop as a
//! host loop whose Einsums see the loop variable fixed to the step; every other Einsum iterates
//! (or reduces) the iterative rank like any other rank. Absent output points are written as 0.
//!
//! What the interpreter rejects while running is refused here at plan time, because a GPU
//! kernel cannot raise an error: an index that may leave its tensor ([`crate::bounds`] proves
//! each one, using the access's filters), a non-affine index, an output point two threads
//! could write, an Einsum reading the tensor it writes at other points, and a stop condition
//! that may not hold by the end of its rank.

use std::collections::BTreeMap;

use cascade_ir::plan::{Ambiguity, LoopPlan, Phase, Step};
use cascade_ir::{
    Access, BinaryOp, Cascade, Compare, Constant, EinsumId, Expr, ExprId, IndexExpr, Merge, RankId,
    ReduceOp, TensorId, TensorKind, UnaryOp,
};

use crate::bounds::{self, Escape, Poly};
use crate::cexpr::{self, Names};
use crate::{CodegenError, Result, TargetDialect, sizes};

/// Threads per block of every generic kernel.
const THREADS: u32 = 256;

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
    /// The workspace query's parameters and the launcher's size arguments passed on.
    pub size_params: String,
    pub size_args: String,
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
    /// The host schedule: launches and the iterative loop, in the loop plan's order.
    pub host_steps: Vec<String>,
    pub threads: u32,
}

pub fn plan(c: &Cascade, d: &TargetDialect, why_not_fused: String) -> Result<GenericPlan> {
    let loop_plan = LoopPlan::new(c);
    let lower = Lowerer::new(c, &loop_plan)?;
    let mut kernels = c
        .einsum_ids()
        .map(|id| lower.kernel(id))
        .collect::<Result<Vec<_>>>()?;
    let mut host_steps = lower.host_steps(d)?;
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
        host_steps.push(launch(d, &kname, &lower.layout.elems(c, o)));
    }
    Ok(GenericPlan {
        op_helpers: cexpr::c_helpers().into_iter().map(String::from).collect(),
        launcher: format!("cascade_{}", c.name),
        abi_params: sizes::abi_params(c, d),
        size_params: sizes::size_params(c),
        size_args: sizes::size_args(c),
        why_not_fused,
        ctx_fields: ctx_fields(c),
        size_setup: sizes::size_setup(c, &|r| format!("c.s_{}", c.rank(r).name), ""),
        buffers: computed(c)
            .map(|t| Buffer {
                name: c.tensor(t).name.clone(),
                elems: lower.layout.elems(c, t),
            })
            .collect(),
        io_setup: io_setup(c, &lower.layout),
        kernels,
        host_steps,
        threads: THREADS,
    })
}

/// `{ n = points; launch kernel over them }` as one host statement.
fn launch(d: &TargetDialect, kernel: &str, points: &str) -> String {
    let grid = format!("dim3(static_cast<unsigned>((n + {THREADS} - 1) / {THREADS}))");
    format!(
        "{{ const long long n = {points}; if (n > 0) {{ {} }} }}",
        d.launch(kernel, &grid, &format!("dim3({THREADS})"), "0", "c, it, n")
    )
}

fn ctx_fields(c: &Cascade) -> Vec<String> {
    let mut fields: Vec<String> = c
        .ranks
        .iter()
        .map(|r| format!("long long s_{};", r.name))
        .collect();
    fields.extend(inputs(c).map(|t| format!("const elem_t* in_{};", c.tensor(t).name)));
    fields.extend(
        c.outputs
            .iter()
            .map(|&t| format!("elem_t* out_{};", c.tensor(t).name)),
    );
    for t in computed(c) {
        fields.push(format!("float* t_{};", c.tensor(t).name));
        fields.push(format!("unsigned char* p_{};", c.tensor(t).name));
    }
    fields
}

fn io_setup(c: &Cascade, layout: &Layout) -> Vec<String> {
    let mut lines: Vec<String> = inputs(c)
        .map(|t| {
            let n = &c.tensor(t).name;
            format!(
                "c.in_{n} = static_cast<const elem_t*>({n}) + b * ({});",
                layout.elems(c, t)
            )
        })
        .collect();
    lines.extend(c.outputs.iter().map(|&t| {
        let n = &c.tensor(t).name;
        format!(
            "c.out_{n} = static_cast<elem_t*>({n}) + b * ({});",
            layout.elems(c, t)
        )
    }));
    lines
}

fn tensor_ids(c: &Cascade) -> impl Iterator<Item = TensorId> + '_ {
    (0..c.tensors.len() as u32).map(TensorId)
}

fn inputs(c: &Cascade) -> impl Iterator<Item = TensorId> + '_ {
    tensor_ids(c).filter(|&t| c.tensor(t).kind == TensorKind::Input)
}

fn computed(c: &Cascade) -> impl Iterator<Item = TensorId> + '_ {
    tensor_ids(c).filter(|&t| c.tensor(t).kind != TensorKind::Input)
}

/// How each tensor is stored: the rank of each dimension and whether it holds `|R|+1` points
/// (a state written at `r+k` along an iterative rank keeps every step, as in `eval`).
struct Layout {
    dims: Vec<Vec<(RankId, bool)>>,
}

impl Layout {
    fn new(c: &Cascade) -> Layout {
        let dims = tensor_ids(c)
            .map(|t| {
                c.tensor(t)
                    .ranks
                    .iter()
                    .enumerate()
                    .map(|(d, &rank)| {
                        let state = c.einsums.iter().any(|e| {
                            e.output.tensor == t
                                && e.output.indices.get(d).and_then(IndexExpr::shifted_var)
                                    == Some(rank)
                        });
                        (rank, state)
                    })
                    .collect()
            })
            .collect();
        Layout { dims }
    }

    fn extent(&self, c: &Cascade, t: TensorId, d: usize) -> String {
        match self.dims[t.index()][d] {
            (r, true) => format!("(c.s_{} + 1LL)", c.rank(r).name),
            (r, false) => format!("c.s_{}", c.rank(r).name),
        }
    }

    /// The extent as the DSL would write it, for messages.
    fn extent_text(&self, c: &Cascade, t: TensorId, d: usize) -> String {
        match self.dims[t.index()][d] {
            (r, true) => format!("{}+1", c.rank(r).name),
            (r, false) => c.rank(r).name.clone(),
        }
    }

    fn extent_poly(&self, c: &Cascade, t: TensorId, d: usize) -> Option<Poly> {
        let (r, state) = self.dims[t.index()][d];
        Poly::of_size(c, r).offset(i128::from(state))
    }

    fn elems(&self, c: &Cascade, t: TensorId) -> String {
        let e: Vec<String> = (0..self.dims[t.index()].len())
            .map(|d| self.extent(c, t, d))
            .collect();
        if e.is_empty() {
            "1LL".into()
        } else {
            e.join(" * ")
        }
    }

    /// The element offset of `idx` (first dimension fastest).
    fn linear(&self, c: &Cascade, t: TensorId, idx: &[String]) -> String {
        let mut s = String::new();
        for (d, ix) in idx.iter().enumerate().rev() {
            s = if s.is_empty() {
                ix.clone()
            } else {
                format!("{ix} + {} * ({s})", self.extent(c, t, d))
            };
        }
        if s.is_empty() { "0LL".into() } else { s }
    }
}

/// Index variables as kernel locals (`v_m`), the loop variable of a per-step Einsum as `it`,
/// sizes as context fields.
struct GenericNames<'a> {
    c: &'a Cascade,
    fixed: Option<RankId>,
}

impl Names for GenericNames<'_> {
    fn var(&self, r: RankId) -> String {
        if Some(r) == self.fixed {
            "it".into()
        } else {
            format!("v_{}", self.c.var_name(r))
        }
    }
    fn size(&self, r: RankId) -> String {
        format!("c.s_{}", self.c.rank(r).name)
    }
}

/// The lowering of one cascade against its loop plan.
struct Lowerer<'a> {
    c: &'a Cascade,
    plan: &'a LoopPlan,
    layout: Layout,
}

impl<'a> Lowerer<'a> {
    fn new(c: &'a Cascade, plan: &'a LoopPlan) -> Result<Lowerer<'a>> {
        let lower = Lowerer {
            c,
            plan,
            layout: Layout::new(c),
        };
        if let Some(a) = plan.ambiguities.first() {
            return Err(lower.unsupported(lower.ambiguity(a)));
        }
        if let Some(&o) = c
            .outputs
            .iter()
            .find(|&&o| c.tensor(o).kind == TensorKind::Input)
        {
            return Err(lower.unsupported(format!(
                "output {} is an input; copy it into a new tensor first",
                c.tensor(o).name
            )));
        }
        Ok(lower)
    }

    fn unsupported(&self, reason: String) -> CodegenError {
        CodegenError::Unsupported {
            cascade: self.c.name.clone(),
            reason,
        }
    }

    /// A refusal naming the Einsum it is about.
    fn refuse(&self, id: EinsumId, what: String) -> CodegenError {
        self.unsupported(format!(
            "`{}`: {what}",
            cascade_ir::dsl::print_einsum(self.c, id)
        ))
    }

    fn ambiguity(&self, a: &Ambiguity) -> String {
        let c = self.c;
        let e = |id: EinsumId| cascade_ir::dsl::print_einsum(c, id);
        match a {
            Ambiguity::SeveralIterativeRanks { ranks } => {
                let names: Vec<&str> = ranks.iter().map(|r| c.rank(*r).name.as_str()).collect();
                format!(
                    "ranks {} are all iterative; a cascade may carry state along one rank only",
                    names.join(", ")
                )
            }
            Ambiguity::LoopReadsPostLoop { einsum, writer, .. } => format!(
                "`{}` runs in the loop but reads what `{}` writes after it",
                e(*einsum),
                e(*writer)
            ),
            Ambiguity::ReadsOtherStep { einsum, tensor, .. } => format!(
                "`{}` reads {} at a step the loop has not reached",
                e(*einsum),
                c.tensor(*tensor).name
            ),
            Ambiguity::InitWritesStep { einsum } => format!(
                "`{}` writes state at a step of the iterative rank from `init`",
                e(*einsum)
            ),
        }
    }

    /// The rank fixed to the loop step while `id` runs, for the loop's Einsums.
    fn fixed(&self, id: EinsumId) -> Option<RankId> {
        match self.plan.phase(id) {
            Phase::Loop => self.plan.iterative,
            _ => None,
        }
    }

    /// The variables one thread's index decodes into: the free ones but the loop's, in the
    /// order the output's indices use them, so consecutive threads write consecutive points.
    fn thread_vars(&self, id: EinsumId) -> Vec<RankId> {
        let mut vars = Vec::new();
        for idx in &self.c.einsum(id).output.indices {
            idx.collect_vars(&mut vars);
        }
        let fixed = self.fixed(id);
        let free = &self.plan.placement(id).space.free;
        vars.retain(|r| Some(*r) != fixed && free.contains(r));
        vars
    }

    /// The host statements: `plan.steps` in order, the loop as a host `for`.
    fn host_steps(&self, d: &TargetDialect) -> Result<Vec<String>> {
        let c = self.c;
        let mut steps = Vec::new();
        let points = |id: EinsumId| {
            let free: Vec<String> = self
                .thread_vars(id)
                .into_iter()
                .map(|r| format!("c.s_{}", c.rank(r).name))
                .collect();
            if free.is_empty() {
                "1LL".to_string()
            } else {
                free.join(" * ")
            }
        };
        let kernel = |id: EinsumId| kernel_name(c, id);
        for step in &self.plan.steps {
            match step {
                Step::Run(id) => steps.push(launch(d, &kernel(*id), &points(*id))),
                Step::Loop { rank, body } => {
                    let names = GenericNames {
                        c,
                        fixed: Some(*rank),
                    };
                    let stop = match &c.stop {
                        Some(k) => {
                            self.check_stop(k, *rank)?;
                            format!(" && !{}", cexpr::compare(k, &names))
                        }
                        None => String::new(),
                    };
                    steps.push(format!(
                        "for (long long it = 0; it < {}{stop}; ++it) {{",
                        names.size(*rank)
                    ));
                    for &id in body {
                        steps.push(format!("  {}", launch(d, &kernel(id), &points(id))));
                    }
                    steps.push("}".into());
                }
            }
        }
        Ok(steps)
    }

    /// The loop runs `it = 0..|R|-1` while the stop does not hold; the interpreter fails when
    /// it still does not hold at `|R|`, so the stop must provably hold there.
    fn check_stop(&self, stop: &Compare, rank: RankId) -> Result<()> {
        let c = self.c;
        let mut vars = Vec::new();
        stop.lhs.collect_vars(&mut vars);
        stop.rhs.collect_vars(&mut vars);
        let var = c.var_name(rank);
        let text = cascade_ir::dsl::print_compare(c, stop);
        let fix = format!("write `stop {var} >= {}`", c.rank(rank).name);
        if let Some(v) = vars.iter().find(|&&v| v != rank) {
            return Err(self.unsupported(format!(
                "the stop condition `{text}` uses `{}`; it may use only `{var}` and sizes: {fix}",
                c.var_name(*v)
            )));
        }
        let at_end = Compare {
            lhs: at_size(&stop.lhs, rank),
            op: stop.op,
            rhs: at_size(&stop.rhs, rank),
        };
        if !bounds::always_holds(c, &at_end) {
            return Err(self.unsupported(format!(
                "the stop condition `{text}` may not hold by {var} = {}, where the interpreter fails: {fix}",
                c.rank(rank).name
            )));
        }
        Ok(())
    }

    /// The kernel of one Einsum, after the checks that make it mean what `eval` computes.
    fn kernel(&self, id: EinsumId) -> Result<GenericKernel> {
        self.check_affine(id)?;
        self.check_output_points(id)?;
        self.check_self_reads(id)?;
        self.check_bounds(id)?;
        let c = self.c;
        let e = c.einsum(id);
        let names = GenericNames {
            c,
            fixed: self.fixed(id),
        };
        let vars = self.thread_vars(id);
        // One thread per point of the output variables; nvcc warns about an unused `rem`
        // when there are none.
        let mut decode = if vars.is_empty() {
            vec!["(void)idx;".to_string()]
        } else {
            vec!["long long rem = idx;".to_string()]
        };
        for r in vars.iter().copied() {
            let (v, n) = (names.var(r), names.size(r));
            decode.push(format!("const long long {v} = rem % {n}; rem /= {n};"));
        }
        if !vars.is_empty() {
            decode.push("(void)rem;".into());
        }

        let mut body = self.point_value(id, &names);
        let out_idx: Vec<String> = e
            .output
            .indices
            .iter()
            .map(|i| cexpr::index(i, &names))
            .collect();
        let (t, oname) = (e.output.tensor, &c.tensor(e.output.tensor).name);
        body.push(format!(
            "const long long at = {};",
            self.layout.linear(c, t, &out_idx)
        ));
        body.push(format!(
            "c.t_{oname}[at] = pr ? val : 0.0f; c.p_{oname}[at] = pr;"
        ));
        Ok(GenericKernel {
            name: kernel_name(c, id),
            comment: cascade_ir::dsl::print_einsum(c, id),
            decode,
            body: nest(body),
        })
    }

    /// Statements computing one output point's `pr` (present) and `val`: the bare `0`, a
    /// reduction over the reduced variables, or a map, each absent where the output filter fails.
    fn point_value(&self, id: EinsumId, names: &GenericNames) -> Vec<String> {
        let c = self.c;
        let e = c.einsum(id);
        let space = &self.plan.placement(id).space;
        // Where the output filter fails the value is absent: `present && kept`.
        let conds: Vec<String> = e
            .output
            .filters
            .iter()
            .flat_map(|f| &f.conds)
            .map(|k| cexpr::compare(k, names))
            .collect();
        let kept =
            |present: &str| conjunction(std::iter::once(present.to_string()).chain(conds.clone()));
        let mut emit = ExprEmitter {
            c,
            names,
            layout: &self.layout,
            lines: Vec::new(),
            next: 0,
            emitted: BTreeMap::new(),
        };
        if matches!(c.expr(e.value), Expr::Const(Constant::Num(z)) if *z == 0.0) {
            emit.lines.push(
                "// The bare literal 0 leaves its points absent (0 is the fill value).".into(),
            );
            emit.lines
                .push("const bool pr = false; const float val = 0.0f;".into());
        } else if let Some(op) = c.reduce_op(id) {
            let (init, combine) = match op {
                ReduceOp::Sum => ("0.0f", "acc + v"),
                ReduceOp::Max => ("(-INFINITY)", "fmaxf(acc, v)"),
                ReduceOp::Min => ("INFINITY", "fminf(acc, v)"),
                ReduceOp::Prod => ("1.0f", "acc * v"),
            };
            emit.lines
                .push(format!("float acc = {init}; bool any = false;"));
            for &r in &space.reduced {
                emit.lines.push(format!(
                    "for (long long {v} = 0; {v} < {}; ++{v}) {{",
                    names.size(r),
                    v = names.var(r)
                ));
            }
            let (v, p) = emit.value(e.value);
            emit.lines.push(format!(
                "if ({}) {{ const float v = {v}; acc = any ? {combine} : v; any = true; }}",
                kept(&p)
            ));
            for _ in &space.reduced {
                emit.lines.push("}".into());
            }
            emit.lines
                .push("const bool pr = any; const float val = acc;".into());
        } else {
            let (v, p) = emit.value(e.value);
            emit.lines.push(format!(
                "const bool pr = {}; const float val = {v};",
                kept(&p)
            ));
        }
        emit.lines
    }

    /// Every index and filter is affine, as the interpreter requires.
    fn check_affine(&self, id: EinsumId) -> Result<()> {
        let c = self.c;
        let e = c.einsum(id);
        for a in std::iter::once(&e.output).chain(c.accesses(e.value)) {
            let conds = a.filters.iter().flat_map(|f| &f.conds);
            let exprs = a.indices.iter().chain(conds.flat_map(|k| [&k.lhs, &k.rhs]));
            if let Some(bad) = exprs.into_iter().find(|x| !bounds::affine(x)) {
                return Err(self.refuse(
                    id,
                    format!(
                        "`{}` in an access to {} is not affine (a product of two variables), which the interpreter rejects too",
                        cascade_ir::dsl::print_index(c, bad),
                        c.tensor(a.tensor).name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// One thread per output point: every free variable can be recovered from the output
    /// index (a position affine in it alone, or the two parts of `m1*M0+m0`), so no two points
    /// of the iteration space write the same output point.
    fn check_output_points(&self, id: EinsumId) -> Result<()> {
        let c = self.c;
        let e = c.einsum(id);
        let fixed = self.fixed(id);
        let space = &self.plan.placement(id).space;
        let decodes = |v: RankId| {
            e.output.indices.iter().any(|idx| {
                let mut vars = Vec::new();
                idx.collect_vars(&mut vars);
                vars.retain(|&w| Some(w) != fixed);
                let alone = vars == [v] && bounds::injective_in(c, idx, v);
                let split = matches!(idx, IndexExpr::Add(..))
                    && vars.len() == 2
                    && vars.contains(&v)
                    && (*idx == IndexExpr::tiled(vars[0], vars[1])
                        || *idx == IndexExpr::tiled(vars[1], vars[0]));
                alone || split
            })
        };
        if let Some(&v) = space
            .free
            .iter()
            .find(|&&v| Some(v) != fixed && !decodes(v))
        {
            return Err(self.refuse(
                id,
                format!(
                    "several values of `{}` may write the same point of {}; the generic lowering writes each output point from one thread: index the output by plain variables",
                    c.var_name(v),
                    c.tensor(e.output.tensor).name
                ),
            ));
        }
        Ok(())
    }

    /// Reads of the tensor being written see it as it was before the Einsum (as in `eval`)
    /// only where each thread reads its own point or a loop step other than the one written.
    fn check_self_reads(&self, id: EinsumId) -> Result<()> {
        let c = self.c;
        let e = c.einsum(id);
        let fixed = self.fixed(id);
        for a in c.accesses(e.value) {
            if a.tensor != e.output.tensor || a.indices == e.output.indices {
                continue;
            }
            let other_step = fixed.is_some_and(|r| {
                e.output
                    .indices
                    .iter()
                    .zip(&a.indices)
                    .any(|(w, rd)| other_step(w, rd, r))
            });
            if !other_step {
                return Err(self.refuse(
                    id,
                    format!(
                        "it reads {} at other points than it writes; the generic lowering computes every point at once: write the result to a new tensor",
                        c.tensor(a.tensor).name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every read stays inside its tensor where its filters hold, and every write inside the
    /// output, for every shape the launcher accepts.
    fn check_bounds(&self, id: EinsumId) -> Result<()> {
        let c = self.c;
        let e = c.einsum(id);
        let oversize = |t: TensorId| {
            self.unsupported(format!(
                "the extents of {} are too large to reason about",
                c.tensor(t).name
            ))
        };
        for a in c.accesses(e.value) {
            let conds: Vec<Compare> = a.filters.iter().flat_map(|f| f.conds.clone()).collect();
            let facts = bounds::facts(c, &conds);
            for (d, idx) in a.indices.iter().enumerate() {
                let extent = self
                    .layout
                    .extent_poly(c, a.tensor, d)
                    .ok_or_else(|| oversize(a.tensor))?;
                if let Err(side) = bounds::in_range(c, idx, &extent, &facts) {
                    return Err(self.read_escapes(id, a, d, side));
                }
            }
        }
        let out = &e.output;
        for (d, idx) in out.indices.iter().enumerate() {
            let extent = self
                .layout
                .extent_poly(c, out.tensor, d)
                .ok_or_else(|| oversize(out.tensor))?;
            if bounds::in_range(c, idx, &extent, &[]).is_err() {
                return Err(self.refuse(
                    id,
                    format!(
                        "output index `{}` of {} may leave 0..{}, where the interpreter fails; an output filter does not prevent that: change the index",
                        cascade_ir::dsl::print_index(c, idx),
                        c.tensor(out.tensor).name,
                        self.layout.extent_text(c, out.tensor, d)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn read_escapes(&self, id: EinsumId, a: &Access, d: usize, side: Escape) -> CodegenError {
        let c = self.c;
        let idx = cascade_ir::dsl::print_index(c, &a.indices[d]);
        let extent = self.layout.extent_text(c, a.tensor, d);
        let (how, keep) = match side {
            Escape::Below => ("may be negative", format!("{idx} >= 0")),
            Escape::Above => ("may reach the extent", format!("{idx} < {extent}")),
        };
        self.refuse(
            id,
            format!(
                "index `{idx}` of {} (position {d}, extent {extent}) {how}, where the interpreter fails; add a filter that keeps it inside, e.g. `{}[…{idx} : {keep}…]`",
                c.tensor(a.tensor).name,
                c.tensor(a.tensor).name
            ),
        )
    }
}

fn kernel_name(c: &Cascade, id: EinsumId) -> String {
    format!("k{}_{}", id.0, c.tensor(c.einsum(id).output.tensor).name)
}

/// `a && b && …`, `true` for none.
fn conjunction(parts: impl Iterator<Item = String>) -> String {
    let parts: Vec<String> = parts.collect();
    if parts.is_empty() {
        "true".into()
    } else {
        parts.join(" && ")
    }
}

/// Along the loop's rank `r`, a write at `w` and a read at `rd` touch different steps: both
/// `r + k` with different `k`, or a read of the initial state at a literal below the write's
/// offset.
fn other_step(w: &IndexExpr, rd: &IndexExpr, r: RankId) -> bool {
    let offset = |e: &IndexExpr| match e {
        IndexExpr::Var(v) if *v == r => Some(0),
        IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => match (&**a, &**b) {
            (IndexExpr::Var(v), IndexExpr::Lit(k)) if *v == r => {
                Some(if matches!(e, IndexExpr::Sub(..)) {
                    -k
                } else {
                    *k
                })
            }
            _ => None,
        },
        _ => None,
    };
    match (offset(w), offset(rd), rd) {
        (Some(k), Some(j), _) => k != j,
        (Some(k), None, IndexExpr::Lit(n)) => *n < k,
        _ => false,
    }
}

/// `e` with the variable of `r` replaced by the size `|r|`.
fn at_size(e: &IndexExpr, r: RankId) -> IndexExpr {
    let sub = |x: &IndexExpr| Box::new(at_size(x, r));
    match e {
        IndexExpr::Var(v) if *v == r => IndexExpr::Size(r),
        IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
        IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
        IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
        other => other.clone(),
    }
}

/// Indents the statements inside the reduction loops (lines opening `for … {` and closing `}`).
fn nest(lines: Vec<String>) -> Vec<String> {
    let mut depth = 0usize;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        if line == "}" {
            depth = depth.saturating_sub(1);
        }
        out.push(format!("{}{line}", "  ".repeat(depth)));
        if line.starts_with("for ") && line.ends_with('{') {
            depth += 1;
        }
    }
    out
}

/// Emits the statements of one right-hand side: each node gets a value `xN` and a presence
/// `qN`, with the merges, the `-inf` rule and the operator table's C spellings.
struct ExprEmitter<'a> {
    c: &'a Cascade,
    names: &'a GenericNames<'a>,
    layout: &'a Layout,
    lines: Vec<String>,
    next: usize,
    /// The C names of every node emitted so far.
    emitted: BTreeMap<ExprId, (String, String)>,
}

/// One step of [`ExprEmitter::value`]'s walk: a node to number (its operands after it), or a
/// numbered node whose operands are done.
enum Frame {
    Enter(ExprId),
    Exit(ExprId, usize),
}

impl ExprEmitter<'_> {
    /// Emits the expression rooted at `root` and returns its value and presence names. Nodes
    /// are numbered in pre-order and their statements come in post-order, operands left to
    /// right, walked with an explicit stack so that no expression's depth reaches the stack.
    fn value(&mut self, root: ExprId) -> (String, String) {
        let mut frames = vec![Frame::Enter(root)];
        let mut results: Vec<(String, String)> = Vec::new();
        while let Some(frame) = frames.pop() {
            let (id, k) = match frame {
                Frame::Enter(id) => {
                    let k = self.next;
                    self.next += 1;
                    match self.c.expr(id) {
                        Expr::Unary(_, arg) => {
                            frames.extend([Frame::Exit(id, k), Frame::Enter(*arg)]);
                            continue;
                        }
                        Expr::Binary { lhs, rhs, .. } => {
                            frames.extend([
                                Frame::Exit(id, k),
                                Frame::Enter(*rhs),
                                Frame::Enter(*lhs),
                            ]);
                            continue;
                        }
                        Expr::Access(_) | Expr::Const(_) => (id, k),
                    }
                }
                Frame::Exit(id, k) => (id, k),
            };
            let (v, p) = (format!("x{k}"), format!("q{k}"));
            self.node(id, &v, &p, &mut results);
            self.emitted.insert(id, (v.clone(), p.clone()));
            results.push((v, p));
        }
        results.pop().unwrap_or_default()
    }

    /// The statements of one node, its operands' names taken from `results`.
    fn node(&mut self, id: ExprId, v: &str, p: &str, results: &mut Vec<(String, String)>) {
        match self.c.expr(id) {
            Expr::Access(a) => self.access(a, v, p),
            Expr::Const(konst) => self.lines.push(format!(
                "const float {v} = {}; const bool {p} = true;",
                cexpr::constant(konst, self.names)
            )),
            Expr::Unary(op, arg) => {
                let (av, ap) = results.pop().unwrap_or_default();
                let value = match (op, self.c.expr(*arg)) {
                    // exp(x - c) is 0 when x is a present -inf, as for sub-then-exp (`eval`
                    // does the same).
                    (
                        UnaryOp::Exp,
                        Expr::Binary {
                            op: BinaryOp::Sub,
                            lhs,
                            ..
                        },
                    ) => match self.emitted.get(lhs) {
                        Some((lv, lp)) => {
                            format!("(({lp} && {lv} == -INFINITY) ? 0.0f : expf({av}))")
                        }
                        None => cexpr::unary(*op, &av),
                    },
                    _ => cexpr::unary(*op, &av),
                };
                self.lines.push(format!(
                    "const bool {p} = {ap}; const float {v} = {p} ? {value} : 0.0f;"
                ));
            }
            Expr::Binary { op, merge, .. } => {
                let (b, pb) = results.pop().unwrap_or_default();
                let (a, pa) = results.pop().unwrap_or_default();
                let (present, value) = merged(*op, *merge, (&a, &pa), (&b, &pb));
                self.lines.push(format!(
                    "const bool {p} = {present}; const float {v} = {p} ? ({value}) : 0.0f;"
                ));
            }
        }
    }

    /// A load: absent where a filter fails (checked first, so an index the filter protects is
    /// never used), else the input's value or the computed tensor's value and presence.
    fn access(&mut self, a: &Access, v: &str, p: &str) {
        let c = self.c;
        let t = a.tensor;
        let name = &c.tensor(t).name;
        let ivars: Vec<String> = (0..a.indices.len()).map(|i| format!("{v}_i{i}")).collect();
        for (iv, ix) in ivars.iter().zip(&a.indices) {
            self.lines.push(format!(
                "const long long {iv} = {};",
                cexpr::index(ix, self.names)
            ));
        }
        let ok = conjunction(
            a.filters
                .iter()
                .flat_map(|f| &f.conds)
                .map(|k| cexpr::compare(k, self.names)),
        );
        let at = self.layout.linear(c, t, &ivars);
        if c.tensor(t).kind == TensorKind::Input {
            self.lines.push(format!("const bool {p} = {ok};"));
            self.lines.push(format!(
                "const float {v} = {p} ? to_f(c.in_{name}[{at}]) : 0.0f;"
            ));
        } else if ok == "true" {
            self.lines
                .push(format!("const bool {p} = c.p_{name}[{at}];"));
            self.lines
                .push(format!("const float {v} = {p} ? c.t_{name}[{at}] : 0.0f;"));
        } else {
            self.lines
                .push(format!("const bool {p} = ({ok}) && c.p_{name}[{at}];"));
            self.lines
                .push(format!("const float {v} = {p} ? c.t_{name}[{at}] : 0.0f;"));
        }
    }
}

/// `(presence, value)` of `a op b` under `merge`, as `eval` defines it: under ∪ a lone operand
/// meets the op's identity from the operator table (`a + ∅ = a`, `∅ - b = -b`, `∅ / b = 1/b`)
/// or passes through (`max`, `min`); `←` and `1` count an absent operand as 0.
fn merged(op: BinaryOp, merge: Merge, a: (&str, &str), b: (&str, &str)) -> (String, String) {
    let ((a, pa), (b, pb)) = (a, b);
    let both = cexpr::binary(op, a, b);
    let zl = format!("({pa} ? {a} : 0.0f)");
    let zr = format!("({pb} ? {b} : 0.0f)");
    match merge {
        Merge::Intersect => (format!("{pa} && {pb}"), both),
        Merge::Union => {
            let identity = op.info().identity.map(cexpr::float_lit);
            let lone_lhs = identity
                .as_ref()
                .map_or(a.to_string(), |k| cexpr::binary(op, a, k));
            let lone_rhs = identity
                .as_ref()
                .map_or(b.to_string(), |k| cexpr::binary(op, k, b));
            (
                format!("{pa} || {pb}"),
                format!("({pa} && {pb}) ? {both} : ({pa} ? {lone_lhs} : {lone_rhs})"),
            )
        }
        Merge::Right => (pb.to_string(), cexpr::binary(op, &zl, b)),
        Merge::All => ("true".into(), cexpr::binary(op, &zl, &zr)),
    }
}

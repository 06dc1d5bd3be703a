//! Rewriting: the required derivations as equivalence goals, and snapshots of what is extracted.
//!
//! Goal tests state what the result must be (passes, structure up to naming, op counts,
//! interpreter-equal to the direct reference); snapshot tests only record the printed cascades.
//! Every rewrite goes through [`check`]: the result verifies, has unambiguous loop phases and
//! evaluates equal to its input (f64, 1e-9 relative, `-inf` in the additive masks).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{cascade, stderr, stdout};

use cascade_ir::ast::{Cascade, Constant, Expr, ExprId, IndexExpr, Section, TensorId, TensorKind};
use cascade_ir::ops::OpKind;
use cascade_ir::rewrite::check::{self, CheckError, Trial};
use cascade_ir::rewrite::{
    Limits, Objective, OpWeights, RewriteConfig, Rewritten, RuleSets, Sizes, Stop, op_totals,
};
use cascade_ir::{ShapeSpec, dsl, eval, library, passes, reference, shape::Shape};

fn load(name: &str) -> Cascade {
    dsl::parse(library::source(name).expect("library cascade"), name)
        .expect("parses")
        .cascade
}

fn spec(pairs: &[(&str, i64)]) -> ShapeSpec {
    ShapeSpec {
        sizes: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

const ATTENTION: &[(&str, i64)] = &[("E", 64), ("F", 64), ("M", 4096), ("P", 4096)];
const ALL: RuleSets = RuleSets {
    deferral: true,
    iterative: true,
};

fn by_passes(rank: &str) -> Objective {
    Objective::Passes {
        rank: rank.into(),
        cost: Arc::new(OpWeights::flops()),
    }
}

fn by_ops() -> Objective {
    Objective::Cost(Arc::new(OpWeights::flops()))
}

fn config(
    objective: Objective,
    rules: RuleSets,
    sizes: &[(&str, i64)],
    split: &str,
) -> RewriteConfig {
    RewriteConfig {
        objective,
        rules,
        sizes: spec(sizes),
        tile: 64,
        split_ranks: vec![split.into()],
        limits: Limits {
            iterations: 30,
            nodes: 200_000,
            time: Duration::from_secs(600),
        },
        explain: false,
    }
}

/// The interpreter comparison of every rewrite: small sizes, tiles of 3, `-inf` in `MASK`.
fn trial() -> Trial {
    let mut trial = Trial::new(
        &[("E", 3), ("F", 2), ("M", 12), ("P", 5), ("K", 9), ("W", 3)],
        3,
    );
    trial.masks = vec!["MASK".into()];
    trial
}

/// The one path by which these tests call the rewriter: `check` rewrites, verifies the result
/// and compares it with the input under the interpreter.
fn check(input: &Cascade, config: &RewriteConfig) -> Result<Rewritten, CheckError> {
    check::check(input, config, &trial())
}

fn derive(name: &str, config: &RewriteConfig) -> Rewritten {
    check(&load(name), config).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn passes_over(c: &Cascade, rank: &str) -> u32 {
    passes::passes(c, c.rank_by_name(rank).expect("rank")).passes
}

/// A name-free description of the tensor an access reads: inputs by name, intermediates by the
/// structure of the Einsum that writes them (folds by init and step, `self` for their state).
struct Structure<'a> {
    c: &'a Cascade,
    writers: HashMap<TensorId, Vec<usize>>,
}

impl<'a> Structure<'a> {
    fn new(c: &'a Cascade) -> Self {
        let mut writers: HashMap<TensorId, Vec<usize>> = HashMap::new();
        for (i, e) in c.einsums.iter().enumerate() {
            writers.entry(e.output.tensor).or_default().push(i);
        }
        Structure { c, writers }
    }

    fn index(&self, idx: &IndexExpr) -> String {
        match idx {
            IndexExpr::Var(r) => self.c.var_name(*r),
            IndexExpr::Size(r) => self.c.rank(*r).name.clone(),
            IndexExpr::Lit(k) => k.to_string(),
            IndexExpr::Add(a, b) => format!("{}+{}", self.index(a), self.index(b)),
            IndexExpr::Sub(a, b) => format!("{}-{}", self.index(a), self.index(b)),
            IndexExpr::Mul(a, b) => format!("{}*{}", self.index(a), self.index(b)),
        }
    }

    fn tensor(&self, t: TensorId, inside: &[TensorId]) -> String {
        let tensor = self.c.tensor(t);
        if tensor.kind == TensorKind::Input {
            return tensor.name.clone();
        }
        if inside.contains(&t) {
            return "self".into();
        }
        let mut inside = inside.to_vec();
        inside.push(t);
        let mut parts: Vec<String> = self.writers[&t]
            .iter()
            .map(|i| {
                let e = &self.c.einsums[*i];
                let out: Vec<String> = e.output.indices.iter().map(|x| self.index(x)).collect();
                let red = e
                    .reduction
                    .as_ref()
                    .map(|r| format!("{}", r.op))
                    .unwrap_or_default();
                let sec = if e.section == Section::Init {
                    "init "
                } else {
                    ""
                };
                format!(
                    "{sec}[{}]={red} {}",
                    out.join(","),
                    self.expr(e.value, &inside)
                )
            })
            .collect();
        parts.sort();
        format!("{{{}}}", parts.join("; "))
    }

    fn expr(&self, id: ExprId, inside: &[TensorId]) -> String {
        match self.c.expr(id) {
            Expr::Access(a) => {
                let idx: Vec<String> = a.indices.iter().map(|x| self.index(x)).collect();
                format!("{}[{}]", self.tensor(a.tensor, inside), idx.join(","))
            }
            Expr::Const(Constant::Num(x)) => x.to_string(),
            Expr::Const(c) => format!("{c:?}"),
            Expr::Unary(op, a) => format!("{op}({})", self.expr(*a, inside)),
            Expr::Binary {
                op,
                merge,
                lhs,
                rhs,
            } => {
                let mut args = [self.expr(*lhs, inside), self.expr(*rhs, inside)];
                if matches!(
                    op,
                    cascade_ir::ast::BinaryOp::Add
                        | cascade_ir::ast::BinaryOp::Mul
                        | cascade_ir::ast::BinaryOp::Max
                ) {
                    args.sort();
                }
                format!("{op:?}{{{merge}}}({}, {})", args[0], args[1])
            }
        }
    }

    fn output(&self) -> String {
        self.tensor(self.c.outputs[0], &[])
    }
}

/// Whether two cascades are the same Einsums up to tensor names, Einsum order and the operand
/// order of commutative ops.
fn same_structure(a: &Cascade, b: &Cascade) -> bool {
    a.einsums.len() == b.einsums.len() && Structure::new(a).output() == Structure::new(b).output()
}

/// Runs `c` on random inputs and compares its output with the direct reference of `form`.
fn max_error_vs_reference(
    c: &Cascade,
    form: reference::Form,
    sizes: &[(&str, i64)],
    seed: u64,
) -> f64 {
    let mut s = spec(sizes);
    for r in &c.ranks {
        if let Some((_, inner)) = r.split {
            s.sizes.insert(c.rank(inner).name.clone(), 3);
        }
    }
    let shape = Shape::resolve(c, &s).expect("shape");
    let inputs = reference::random_inputs(c, &shape, seed);
    let got = eval::evaluate(c, &shape, &inputs).expect("evaluates");
    let want = reference::compute(form, c, &shape, &inputs).expect("reference");
    let out = got.output().expect("output");
    out.values
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
        .fold(0.0, f64::max)
}

const SMALL: &[(&str, i64)] = &[("E", 3), ("F", 2), ("M", 12), ("P", 5)];

/// Plain `softmax(QᵀK)V`, without masks or bias.
const SOFTMAX: reference::Form = reference::Form::Softmax {
    causal: false,
    window: false,
    bias: false,
};

// ---------------------------------------------------------------------------------------------
// Goals.

#[test]
fn result_1_attention_3pass_to_one_pass_cascade_5() {
    let r = derive(
        "attention_3pass",
        &config(by_passes("M"), ALL, ATTENTION, "M"),
    );
    assert_eq!(passes_over(&load("attention_3pass"), "M"), 3);
    assert_eq!(passes_over(&r.cascade, "M"), 1);
    assert_eq!((r.before.passes, r.after.passes), (3, 1));
    assert!(
        same_structure(&r.cascade, &load("attention_1pass")),
        "not Cascade 5:\n{}",
        dsl::print(&r.cascade)
    );
    for seed in 0..4 {
        let err = max_error_vs_reference(&r.cascade, SOFTMAX, SMALL, seed);
        assert!(err < 1e-10, "seed {seed}: error {err}");
    }
    assert!(r.egraph_nodes < 200_000, "{} e-nodes", r.egraph_nodes);
}

#[test]
fn result_2_without_iterative_ranks_gives_deferred_two_pass() {
    let rules = RuleSets {
        deferral: true,
        iterative: false,
    };
    let cfg = config(by_passes("M"), rules, ATTENTION, "M");
    let r = derive("attention_3pass", &cfg);
    assert_eq!(passes_over(&r.cascade, "M"), 2);
    assert!(r.cascade.iterative_ranks().is_empty());
    assert!(
        same_structure(&r.cascade, &load("attention_2pass_deferred")),
        "{}",
        dsl::print(&r.cascade)
    );
    let sizes = Sizes::new(&load("attention_3pass"), &cfg).expect("sizes");
    // F·P divisions, not M·P.
    assert_eq!(op_totals(&r.cascade, &sizes)[&OpKind::Div], 64.0 * 4096.0);
    assert_eq!(
        op_totals(&load("attention_3pass"), &sizes)[&OpKind::Div],
        4096.0 * 4096.0
    );
    let err = max_error_vs_reference(&r.cascade, SOFTMAX, SMALL, 7);
    assert!(err < 1e-10, "error {err}");
}

#[test]
fn result_3a_pedagogical_deferral_under_ops() {
    let r = derive("pedagogical_1", &config(by_ops(), ALL, &[("K", 1024)], "K"));
    assert!(
        same_structure(&r.cascade, &load("pedagogical_2")),
        "{}",
        dsl::print(&r.cascade)
    );
    assert_eq!(passes_over(&r.cascade, "K"), 1);
}

#[test]
fn result_3b_pedagogical_iterative_without_deferral() {
    let rules = RuleSets {
        deferral: false,
        iterative: true,
    };
    let r = derive(
        "pedagogical_1",
        &config(by_passes("K"), rules, &[("K", 1024)], "K"),
    );
    assert_eq!(passes_over(&r.cascade, "K"), 1);
    assert_eq!(
        r.cascade.iterative_ranks(),
        vec![r.cascade.rank_by_name("K").expect("K")]
    );
    // Cascade 3's running sum RY and running result RZ, rescaled by RY[k+1]/RY[k].
    let text = dsl::print(&r.cascade);
    assert!(text.contains("[k+1] / ") && text.contains("[K]"), "{text}");
    for seed in 0..4 {
        let err =
            max_error_vs_reference(&r.cascade, reference::Form::Pedagogical, &[("K", 9)], seed);
        assert!(err < 1e-9, "seed {seed}: error {err}");
    }
}

#[test]
fn result_4_linear_attention_reassociates() {
    let cfg = config(by_ops(), ALL, ATTENTION, "M");
    let r = derive("linear_attention", &cfg);
    let sizes = Sizes::new(&load("linear_attention"), &cfg).expect("sizes");
    let (e, f, m, p) = (64.0, 64.0, 4096.0, 4096.0);
    assert_eq!(
        op_totals(&load("linear_attention"), &sizes)[&OpKind::Mac],
        m * p * e + m * p * f
    );
    // O(M·E·F): φ(K)·Vᵀ first, then φ(Q) times that.
    assert_eq!(
        op_totals(&r.cascade, &sizes)[&OpKind::Mac],
        m * e * f + e * f * p
    );
    let err = max_error_vs_reference(&r.cascade, reference::Form::Linear, SMALL, 3);
    assert!(err < 1e-10, "error {err}");
}

#[test]
fn result_5_sigmoid_attention_stays_one_pass_without_rescaling() {
    let r = derive(
        "sigmoid_attention",
        &config(by_passes("M"), ALL, ATTENTION, "M"),
    );
    assert_eq!(passes_over(&r.cascade, "M"), 1);
    assert!(r.cascade.iterative_ranks().is_empty());
    let ops = &r.after.ops;
    assert!(
        !ops.contains_key(&OpKind::Exp) && !ops.contains_key(&OpKind::Div),
        "{ops:?}"
    );
    assert_eq!(r.after.ops, r.before.ops);
    let err = max_error_vs_reference(&r.cascade, reference::Form::Sigmoid, SMALL, 5);
    assert!(err < 1e-10, "error {err}");
}

#[test]
fn rewriting_is_deterministic() {
    let cfg = config(by_passes("M"), ALL, ATTENTION, "M");
    let a = derive("attention_3pass", &cfg);
    let b = derive("attention_3pass", &cfg);
    assert_eq!(dsl::print(&a.cascade), dsl::print(&b.cascade));
    assert_eq!(
        (a.egraph_nodes, a.iterations, a.term),
        (b.egraph_nodes, b.iterations, b.term)
    );
}

#[test]
fn node_limit_stops_early_with_a_valid_cascade() {
    let mut cfg = config(by_passes("M"), ALL, ATTENTION, "M");
    cfg.limits.nodes = 30;
    let r = derive("attention_3pass", &cfg);
    assert!(
        matches!(r.stop, Stop::NodeLimit(n) if n >= 30),
        "{:?}",
        r.stop
    );
    let err = max_error_vs_reference(&r.cascade, SOFTMAX, SMALL, 1);
    assert!(err < 1e-10, "error {err}");
}

#[test]
fn explanation_chains_general_rules() {
    let mut cfg = config(by_passes("M"), ALL, ATTENTION, "M");
    cfg.explain = true;
    let r = derive("attention_3pass", &cfg);
    let steps = r.explanation.expect("asked for");
    let rules: Vec<&str> = steps
        .iter()
        .map(|s| s.rule.split('/').next().unwrap_or(""))
        .collect();
    for needed in [
        "defer-div-sum",
        "split-sum",
        "split-max",
        "exp-local-max",
        "rescale-fold-exp",
        "exp-local-max-rev",
    ] {
        assert!(
            rules.iter().any(|r| r.starts_with(needed)),
            "{needed} missing from {rules:?}"
        );
    }
}

/// The library's iterative cascades (Cascade 5, its causal form, Cascade 3) lift with their
/// loops, splits and filters, and rewrite to interpreter-equal cascades with no more passes.
#[test]
fn iterative_library_cascades_rewrite_soundly() {
    let sizes: &[(&str, i64)] = &[("E", 64), ("F", 64), ("M", 4096), ("P", 4096), ("K", 1024)];
    for (name, rank) in [
        ("attention_1pass", "M"),
        ("attention_causal_1pass", "M"),
        ("pedagogical_3", "K"),
    ] {
        let c = load(name);
        let mut cfg = config(by_passes(rank), ALL, sizes, rank);
        cfg.sizes.sizes.retain(|k, _| c.rank_by_name(k).is_some());
        let r = check(&c, &cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.after.passes <= r.before.passes, "{name}");
        assert_eq!(r.after.passes, 1, "{name}");
    }
}

/// What still cannot be lifted is refused, naming the Einsum and what to write instead.
#[test]
fn what_cannot_be_lifted_is_refused_naming_the_einsum_and_the_fix() {
    let cases: [(&str, &[&str]); 4] = [
        (
            "cascade mutual\nranks E M\ninput A[E,M]\ninit\nX[e,0] = 0\nY[e,0] = 1.0\neinsums\n\
             X[e,m+1] = X[e,m] + Y[e,m] * A[e,m]\nY[e,m+1] = Y[e,m] * X[e,m]\nOUT[e] = X[e,M]\n\
             stop m >= M\noutput OUT\n",
            &[
                "running states whose updates read each other",
                "X, Y",
                "merge the two",
            ],
        ),
        (
            "cascade shifted\nranks M\ninput A[M]\nB[m] = A[M - 1 - m]\noutput B\n",
            &[
                "the read `A[M-1-m]`",
                "in `B[m] = A[M-1-m]`",
                "pass the shifted tensor as an input",
            ],
        ),
        (
            "cascade two\nranks M\ninput A[M]\nB[m] = A[m] * 2.0\nC[m] = A[m] + 1.0\noutput B C\n",
            &["2 outputs (B, C)", "one output at a time"],
        ),
        (
            // A split's second variable is read (`(split-key …)`), never written.
            "cascade chunk\nranks M\nsplit M -> M1 M0 N0\ninput A[M]\n\
             B[m1*M0+n0] = A[m1*M0+n0] * 2.0\noutput B\n",
            &[
                "the output index `m1*M0+n0`",
                "in `B[m1*M0+n0] = A[m1*M0+n0] * 2`",
                "write outputs at plain index variables or at a split index",
            ],
        ),
    ];
    let cfg = config(by_ops(), ALL, &[("E", 4), ("M", 8)], "M");
    for (src, wanted) in cases {
        let c = dsl::check(src, "test")
            .unwrap_or_else(|d| panic!("{d:?}\n{src}"))
            .cascade;
        let mut cfg = cfg.clone();
        cfg.sizes.sizes.retain(|k, _| c.rank_by_name(k).is_some());
        let err = match check(&c, &cfg) {
            Err(CheckError::Rewrite(e)) => e.to_string(),
            other => panic!("{src}: {other:?}"),
        };
        for w in wanted {
            assert!(err.contains(w), "{w:?} not in {err}");
        }
    }
    let missing = check(
        &load("attention_3pass"),
        &RewriteConfig {
            sizes: spec(&[("E", 1)]),
            ..config(by_passes("M"), ALL, ATTENTION, "M")
        },
    );
    assert!(missing.unwrap_err().to_string().contains("add F=N"));
}

/// A chain of `n` Einsums, each reading the previous one, summed over `m` at the end.
fn chain(n: usize) -> String {
    let mut src =
        String::from("cascade chain\nranks M P\ninput A[M,P] B[M,P]\nX0[m,p] = A[m,p] * B[m,p]\n");
    for k in 1..n {
        let line = match k % 3 {
            0 => format!("X{k}[m,p] = X{}[m,p] * 0.5\n", k - 1),
            1 => format!("X{k}[m,p] = X{}[m,p] + B[m,p]\n", k - 1),
            _ => format!("X{k}[m,p] = exp(X{}[m,p] - A[m,p])\n", k - 1),
        };
        src.push_str(&line);
    }
    src.push_str(&format!("S[p] = X{}[m,p]\noutput S\n", n - 1));
    src
}

/// Lifting, extraction and lowering walk terms with explicit stacks: a chain of 2,000 Einsums
/// (a term 2,000 deep, which overflowed the recursive lowering) lifts, extracts and lowers on a
/// 256 KiB stack to a valid, interpreter-equal cascade.
#[test]
fn deep_chains_rewrite_on_a_small_stack() {
    use cascade_ir::rewrite::{extract, lang, lift, lower};
    let c = dsl::check(&chain(2000), "chain").expect("verifies").cascade;
    let input = c.clone();
    let lowered = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let lifted = lift(&c).expect("lifts");
            let mut g = lang::CxGraph::default();
            let root = g.add_expr(&lifted.expr);
            g.rebuild();
            let by_ops = by_ops();
            let (expr, _) = extract::extract(&g, root, &by_ops, &|_| 8.0).expect("extracts");
            lower(&expr, &vec![None; expr.as_ref().len()], &lifted.signature).expect("lowers")
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
    check::valid(&lowered).expect("valid");
    let mut small = trial();
    small.seeds = vec![0];
    small.values = (-0.1, 0.1);
    check::equal(&input, &lowered, &small).expect("equal");
}

/// The time limit bounds the whole rewrite: when extraction cannot finish within half the
/// limit again, the input comes back unchanged with the stop reason saying so.
#[test]
fn a_rewrite_that_runs_out_of_time_returns_its_input() {
    let c = dsl::check(&chain(1500), "chain").expect("verifies").cascade;
    let mut cfg = config(by_ops(), ALL, &[("M", 64), ("P", 64)], "M");
    cfg.limits.time = Duration::from_millis(1);
    let r = cascade_ir::rewrite::rewrite(&c, &cfg).expect("a limit is not an error");
    assert_eq!(r.stop, Stop::ExtractionTimeLimit(Duration::from_millis(1)));
    assert!(
        r.stop.to_string().contains("returned unchanged"),
        "{}",
        r.stop
    );
    assert_eq!(r.cascade.einsums, c.einsums);
    assert_eq!(r.cascade.name, "chain_derived");
    assert_eq!(r.before, r.after);
}

// ---------------------------------------------------------------------------------------------
// Snapshots of the extracted cascades (what the goals above accept, as text).

/// Label, library cascade, objective, rule sets, sizes, split rank.
type Case = (
    &'static str,
    &'static str,
    Objective,
    RuleSets,
    &'static [(&'static str, i64)],
    &'static str,
);

#[test]
fn extracted_cascades() {
    let cases: [Case; 6] = [
        (
            "result_1",
            "attention_3pass",
            by_passes("M"),
            ALL,
            ATTENTION,
            "M",
        ),
        (
            "result_2",
            "attention_3pass",
            by_passes("M"),
            RuleSets {
                deferral: true,
                iterative: false,
            },
            ATTENTION,
            "M",
        ),
        (
            "result_3a",
            "pedagogical_1",
            by_ops(),
            ALL,
            &[("K", 1024)],
            "K",
        ),
        (
            "result_3b",
            "pedagogical_1",
            by_passes("K"),
            RuleSets {
                deferral: false,
                iterative: true,
            },
            &[("K", 1024)],
            "K",
        ),
        (
            "result_4",
            "linear_attention",
            by_ops(),
            ALL,
            ATTENTION,
            "M",
        ),
        (
            "result_5",
            "sigmoid_attention",
            by_passes("M"),
            ALL,
            ATTENTION,
            "M",
        ),
    ];
    let mut report = BTreeMap::new();
    for (label, name, objective, rules, sizes, split) in cases {
        let r = derive(name, &config(objective, rules, sizes, split));
        report.insert(
            label,
            format!(
                "{}# passes {} -> {}\n",
                dsl::print(&r.cascade),
                r.before.passes,
                r.after.passes
            ),
        );
    }
    for (label, text) in report {
        insta::assert_snapshot!(label, text);
    }
}

#[test]
fn sliding_window_attention_becomes_one_pass_with_the_filter_on_the_tiles() {
    let r = derive(
        "attention_window_3pass",
        &config(
            by_passes("M"),
            ALL,
            &[("E", 64), ("F", 64), ("M", 4096), ("P", 4096), ("W", 256)],
            "M",
        ),
    );
    assert_eq!((r.before.passes, passes_over(&r.cascade, "M")), (3, 1));
    let text = dsl::print(&r.cascade);
    assert!(text.contains("m0 : m1*M0+m0 <= p"), "{text}");
    let form = reference::Form::Softmax {
        causal: true,
        window: true,
        bias: false,
    };
    for seed in 0..3 {
        let err = max_error_vs_reference(
            &r.cascade,
            form,
            &[("E", 3), ("F", 2), ("M", 12), ("P", 12), ("W", 4)],
            seed,
        );
        assert!(err < 1e-10, "seed {seed}: error {err}");
    }
}

#[test]
fn masked_attention_also_becomes_one_pass() {
    let r = derive(
        "attention_masked_3pass",
        &config(by_passes("M"), ALL, ATTENTION, "M"),
    );
    assert_eq!((r.before.passes, passes_over(&r.cascade, "M")), (3, 1));
    let form = reference::Form::Softmax {
        causal: false,
        window: false,
        bias: true,
    };
    for seed in 0..3 {
        let err = max_error_vs_reference(&r.cascade, form, SMALL, seed);
        assert!(err < 1e-10, "seed {seed}: error {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// The `cascade rewrite` command.

/// Standard output holds only the derived cascade, named `<input>_derived`; the statistics and
/// the explanation go to standard error.
#[test]
fn cli_rewrite_prints_the_cascade_on_stdout_and_statistics_on_stderr() {
    let out = cascade(&[
        "rewrite",
        "attention_3pass",
        "--objective",
        "passes",
        "--explain",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let text = stdout(&out);
    let parsed = dsl::check(&text, "stdout")
        .expect("stdout is exactly a cascade that verifies")
        .cascade;
    assert_eq!(parsed.name, "attention_3pass_derived");
    assert!(same_structure(&parsed, &load("attention_1pass")));
    assert!(!text.contains("passes over"), "{text}");
    assert!(err.contains("passes over M: 3 -> 1"), "{err}");
    assert!(err.contains("ops before: mac 2147483648"), "{err}");
    assert!(err.contains("stop: saturated"), "{err}");
    assert!(err.contains(". rescale-fold-exp"), "{err}");
    let named = cascade(&[
        "rewrite",
        "attention_3pass",
        "--objective",
        "ops",
        "--name",
        "mine",
    ]);
    assert!(
        stdout(&named).starts_with("cascade mine\n"),
        "{}",
        stdout(&named)
    );
    for bad in ["2x", "a-b", "output", ""] {
        let out = cascade(&[
            "rewrite",
            "attention_3pass",
            "--objective",
            "ops",
            "--name",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(1), "--name {bad:?}");
        assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

/// Without `--rank` the rank is the normaliser's, found by structure: a copy of the 3-pass
/// cascade with `M` renamed is rewritten over the renamed rank; a cascade with normalisers over
/// two ranks is refused with a request for `--rank`.
#[test]
fn cli_rewrite_finds_the_normalisers_rank_or_asks_for_one() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rewrite-rank");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let renamed = library::source("attention_3pass")
        .expect("library")
        .replace("ranks E F M P", "ranks E F N P")
        .replace("K[E,M]", "K[E,N]")
        .replace("V[F,M]", "V[F,N]")
        .replace("[m,", "[n,")
        .replace("max(m)", "max(n)")
        .replace("f,m]", "f,n]")
        .replace("e,m]", "e,n]");
    let path = dir.join("renamed.cascade");
    std::fs::write(&path, &renamed).expect("write");
    let out = cascade(&["rewrite", path.to_str().unwrap(), "--objective", "passes"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("passes over N: 3 -> 1"), "{err}");
    assert!(
        stdout(&out).contains("split N -> N1 N0"),
        "{}",
        stdout(&out)
    );
    let two = dir.join("two.cascade");
    std::fs::write(
        &two,
        "cascade two\nranks M N\ninput A[M] B[N]\nX = exp(A[m])\nY = exp(B[n])\nZ = X * Y\noutput Z\n",
    )
    .expect("write");
    let out = cascade(&["rewrite", two.to_str().unwrap(), "--objective", "passes"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("ambiguous") && err.contains("--rank M or --rank N"),
        "{err}"
    );
    let out = cascade(&[
        "rewrite",
        two.to_str().unwrap(),
        "--objective",
        "passes",
        "--rank",
        "N",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Limits outside their range are user errors that name the flag, never a panic.
#[test]
fn cli_rewrite_refuses_out_of_range_limits() {
    for (flag, value) in [
        ("--limit-time", "0"),
        ("--limit-time", "-1"),
        ("--limit-time", "1e300"),
        ("--limit-time", "NaN"),
        ("--limit-time", "inf"),
        ("--limit-nodes", "0"),
        ("--limit-nodes", "1000000000000"),
        ("--limit-iters", "1000000000"),
        ("--limit-iters", "-3"),
        ("--tile", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let out = cascade(&["rewrite", "attention_3pass", "--objective", "ops", &arg]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(
            err.contains(flag.trim_start_matches("--")),
            "{flag} {value}: {err}"
        );
        assert!(
            !err.contains("panicked") && out.stdout.is_empty(),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn cli_rewrite_writes_out_file_and_honours_switches() {
    let dir = std::env::temp_dir().join(format!("cascade-rewrite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("two_pass.cascade");
    let path_str = path.to_str().expect("utf-8 path");
    let out = cascade(&[
        "rewrite",
        "attention_3pass",
        "--objective",
        "passes",
        "--no-iterative",
        "--out",
        path_str,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&path).expect("written");
    let parsed = dsl::check(&written, path_str).expect("verifies").cascade;
    assert!(
        same_structure(&parsed, &load("attention_2pass_deferred")),
        "{written}"
    );
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("passes over M: 3 -> 2") && err.contains("wrote "),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_rewrite_node_limit_and_json() {
    let out = cascade(&[
        "--format",
        "json",
        "rewrite",
        "attention_3pass",
        "--objective",
        "ops",
        "--limit-nodes",
        "20",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["stop"]
            .as_str()
            .expect("stop")
            .starts_with("e-node limit"),
        "{v}"
    );
    assert_eq!(v["passes"]["before"], 3);
    assert_eq!(v["name"], "attention_3pass_derived");
    for key in [
        "egraph_nodes",
        "egraph_classes",
        "iterations",
        "elapsed_s",
        "limits",
        "ops",
        "cost",
    ] {
        assert!(!v[key].is_null(), "{key} missing: {v}");
    }
    assert!(v["egraph_nodes"].as_u64().expect("nodes") <= 20 + 64, "{v}");
}

#[test]
fn cli_rewrite_refuses_unsupported_input_with_exit_1() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rewrite-refuses");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("two.cascade");
    std::fs::write(
        &path,
        "cascade two\nranks M\ninput A[M]\nB[m] = A[m] * 2.0\nC[m] = A[m] + 1.0\noutput B C\n",
    )
    .expect("write");
    let out = cascade(&["rewrite", path.to_str().unwrap(), "--objective", "ops"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).expect("utf-8");
    assert!(err.contains("2 outputs (B, C)"), "{err}");
    let out = cascade(&[
        "rewrite",
        "attention_3pass",
        "--objective",
        "passes",
        "--rank",
        "X",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// A caller's hardware: MACs are cheap (a fused unit), plain adds expensive.
#[derive(Debug)]
struct FusedMacHardware;

impl cascade_ir::rewrite::CostModel for FusedMacHardware {
    fn op_cost(&self, kind: OpKind, count: f64) -> f64 {
        count
            * match kind {
                OpKind::Mac | OpKind::Mul => 1.0,
                _ => 10.0,
            }
    }
}

#[test]
fn the_caller_cost_model_decides() {
    let flops = derive("pedagogical_1", &config(by_ops(), ALL, &[("K", 1024)], "K"));
    assert!(same_structure(&flops.cascade, &load("pedagogical_2")));
    // Two MACs per point beat one MAC and one add when adds cost 10.
    let hw = Objective::Cost(std::sync::Arc::new(FusedMacHardware));
    let r = derive("pedagogical_1", &config(hw, ALL, &[("K", 1024)], "K"));
    assert!(
        same_structure(&r.cascade, &load("pedagogical_1")),
        "{}",
        dsl::print(&r.cascade)
    );
    assert_eq!(r.after.cost, 2.0 * 1024.0);
    // Sizes matter too: with M, P ≪ E, F linear attention keeps its query-key order.
    let small = [("E", 4096), ("F", 4096), ("M", 4), ("P", 4)];
    let r = derive("linear_attention", &config(by_ops(), ALL, &small, "M"));
    assert!(
        same_structure(&r.cascade, &load("linear_attention")),
        "{}",
        dsl::print(&r.cascade)
    );
}

/// Every library cascade the rewriter takes, under both objectives: the result verifies, prints
/// and re-parses, and is interpreter-equal to the input.
#[test]
fn every_supported_library_cascade_rewrites_soundly() {
    let mut rewritten = 0;
    for name in library::names() {
        let input = load(name);
        let sizes: Vec<(&str, i64)> = [
            ("E", 64),
            ("F", 64),
            ("M", 4096),
            ("P", 4096),
            ("K", 4096),
            ("W", 16),
        ]
        .into_iter()
        .filter(|(r, _)| input.rank_by_name(r).is_some())
        .collect();
        let rank = if input.rank_by_name("M").is_some() {
            "M"
        } else {
            "K"
        };
        for objective in [by_passes(rank), by_ops()] {
            match check(&input, &config(objective, ALL, &sizes, rank)) {
                Ok(_) => rewritten += 1,
                Err(CheckError::Rewrite(_)) => {}
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
    assert!(rewritten >= 14, "only {rewritten} rewrites ran");
}

/// The counterexample of the variable-capture issue, through the CLI: `cascade rewrite` with
/// `--objective ops` (and `passes`) prints a cascade that verifies and evaluates like the input.
/// Before the fix the `ops` result multiplied `V` by `Σ_m X` instead of `X[m,p]`.
#[test]
fn cli_rewrite_of_the_capture_counterexample_evaluates_like_the_input() {
    let src = "cascade random
ranks E F M P
input X[M,P] Y[M,P] D[P] V[F,M] Q[E,P] K[E,M]
T1[e,m,p]   = Q[e,p] / X[m,p]
T2[f,m,p]   = X[m,p] * V[f,m]
T3[e,f,m,p] = T1[e,m,p] * T2[f,m,p]
S4[e,p]     = Q[e,p] * X[m,p]
OUT[e,f,p]  = T3[e,f,m,p] * S4[e,p]
output OUT
";
    let dir = std::env::temp_dir().join(format!("cascade-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("capture.cascade");
    std::fs::write(&path, src).expect("written");
    let input = dsl::check(src, "capture").expect("verifies").cascade;
    let mut trial = trial();
    trial.values = (0.5, 1.5);
    for objective in ["ops", "passes"] {
        let out = cascade(&[
            "rewrite",
            path.to_str().expect("utf-8 path"),
            "--objective",
            objective,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = stdout(&out);
        let result = dsl::check(&printed, "stdout")
            .unwrap_or_else(|d| panic!("{d:?}\n{printed}"))
            .cascade;
        check::valid(&result).unwrap_or_else(|e| panic!("{objective}: {e}"));
        check::equal(&input, &result, &trial).unwrap_or_else(|e| panic!("{objective}: {e}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Hardware cost: the scheduler prices op kinds on an architecture's units.

/// The path of a variant of the zoo (`tests/data/zoo/NAME.cascade`).
fn zoo_path(name: &str) -> String {
    format!(
        "{}/tests/data/zoo/{name}.cascade",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A variant of the zoo, parsed.
fn zoo_cascade(name: &str) -> Cascade {
    let text = std::fs::read_to_string(zoo_path(name)).expect("zoo file");
    dsl::parse(&text, name).expect("parses").cascade
}

/// Runs `cascade` with `args` (a `--format json rewrite …` command), which must succeed, and
/// returns its JSON, the derived cascade's text and the cascade, verified.
fn derived(args: &[&str]) -> (serde_json::Value, String, Cascade) {
    let out = cascade(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let text = v["cascade"].as_str().expect("cascade text").to_string();
    let result = dsl::check(&text, "stdout").expect("verifies").cascade;
    (v, text, result)
}

fn shipped_arch(name: &str) -> cascade_scheduler::ArchSpec {
    cascade_scheduler::shipped::load_arch(name)
        .expect("shipped")
        .expect("valid")
}

/// The shipped FuseMax file with `from` replaced by `to` (every occurrence), validated.
fn edited_fusemax(from: &str, to: &str) -> cascade_scheduler::ArchSpec {
    let text = cascade_scheduler::shipped::arch("fusemax").expect("shipped");
    assert!(text.contains(from), "fusemax.toml has no `{from}`");
    cascade_scheduler::shipped::parse_arch(&text.replace(from, to), |n| {
        cascade_scheduler::shipped::costs(n).map(str::to_string)
    })
    .expect("the edited architecture validates")
}

fn by_hardware(arch: &cascade_scheduler::ArchSpec, metric: cascade_scheduler::Metric) -> Objective {
    Objective::Cost(Arc::new(cascade_scheduler::HardwareCost::new(arch, metric)))
}

/// Cycles of `--objective hardware` recomputed from the IR: per Einsum and op kind, the
/// points of one step (all of them outside the loop; one step's share in an Einsum whose output
/// is indexed by the iterative rank) spread over the PEs of the kind's unit, rounded up to whole
/// ops per PE, times one PE's cycles for the op, times the steps. A split rank's inner part is
/// `tile` long.
fn stepped_cycles(
    c: &Cascade,
    sizes: &[(&str, i64)],
    tile: i64,
    arch: &cascade_scheduler::ArchSpec,
) -> f64 {
    let hw = cascade_scheduler::HardwareCost::new(arch, cascade_scheduler::Metric::Cycles);
    let mut s = spec(sizes);
    for r in &c.ranks {
        if let Some((_, inner)) = r.split {
            s.sizes.insert(c.rank(inner).name.clone(), tile);
        }
    }
    let shape = Shape::resolve(c, &s).expect("shape");
    let iterative = c.iterative_ranks().first().copied();
    c.einsum_ids()
        .map(|id| {
            let points: f64 = c
                .iteration_space(id)
                .iter()
                .map(|r| shape.size(*r) as f64)
                .product();
            let mut out = Vec::new();
            for idx in &c.einsum(id).output.indices {
                idx.collect_vars(&mut out);
            }
            let steps = match iterative {
                Some(r) if out.contains(&r) => shape.size(r) as f64,
                _ => 1.0,
            };
            cascade_ir::ops::point_ops(c, id)
                .iter()
                .map(|(k, n)| {
                    let price = hw.price(*k).expect("the arch executes every kind");
                    let unit = arch.units().iter().find(|u| u.name() == price.unit);
                    let pes = unit.expect("the priced unit").pes() as f64;
                    let per_pe = (f64::from(*n) * points / steps / pes).ceil();
                    steps * per_pe * price.weight * pes
                })
                .sum::<f64>()
        })
        .sum()
}

/// Hardware cost recomputed from the IR: per Einsum, `point_ops` × the iteration-space size ×
/// the kind's weight. A split rank's inner part is `tile` long.
fn hardware_cost(
    c: &Cascade,
    sizes: &[(&str, i64)],
    tile: i64,
    hw: &cascade_scheduler::HardwareCost,
) -> f64 {
    let mut s = spec(sizes);
    for r in &c.ranks {
        if let Some((_, inner)) = r.split {
            s.sizes.insert(c.rank(inner).name.clone(), tile);
        }
    }
    let shape = Shape::resolve(c, &s).expect("shape");
    c.einsum_ids()
        .map(|id| {
            let points: f64 = c
                .iteration_space(id)
                .iter()
                .map(|r| shape.size(*r) as f64)
                .product();
            cascade_ir::ops::point_ops(c, id)
                .iter()
                .map(|(k, n)| f64::from(*n) * points * hw.weight(*k))
                .sum::<f64>()
        })
        .sum()
}

fn count(r: &Rewritten, kind: OpKind) -> f64 {
    r.after.ops.get(&kind).copied().unwrap_or(0.0)
}

#[test]
fn cli_rewrite_hardware_objective_on_fusemax_is_no_costlier_and_equal() {
    let out = cascade(&[
        "--format",
        "json",
        "rewrite",
        "attention_3pass",
        "--objective",
        "hardware",
        "--arch",
        "fusemax",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["cost_model"]["kind"], "hardware");
    assert_eq!(v["cost_model"]["arch"], "fusemax");
    assert_eq!(v["cost_model"]["metric"], "cycles");
    let hw = cascade_scheduler::HardwareCost::new(
        &shipped_arch("fusemax"),
        cascade_scheduler::Metric::Cycles,
    );
    for kind in OpKind::ALL {
        let shown = &v["cost_model"]["weights"][kind.name()];
        match hw.price(kind) {
            Some(p) => assert_eq!(shown["weight"].as_f64(), Some(p.weight), "{kind}"),
            None => assert!(shown.is_null(), "{kind}: {shown}"),
        }
    }
    let input = load("attention_3pass");
    let text = v["cascade"].as_str().expect("cascade text");
    let result = dsl::check(text, "stdout").expect("verifies").cascade;
    // The CLI's default sizes: 64 for E and F, 4096 otherwise, tiles of 64; cycles with a
    // loop's steps on the units' PEs.
    let fusemax = shipped_arch("fusemax");
    let (before, after) = (
        stepped_cycles(&input, ATTENTION, 64, &fusemax),
        stepped_cycles(&result, ATTENTION, 64, &fusemax),
    );
    assert!(after <= before, "{after} > {before}\n{text}");
    let close = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() <= 1e-9 * a;
    assert!(close(before, &v["cost"]["before"]), "{before} vs {v}");
    assert!(close(after, &v["cost"]["after"]), "{after} vs {v}");
    // Valid, and interpreter-equal to the input on random data.
    check::valid(&result).unwrap_or_else(|e| panic!("{e}"));
    check::equal(&input, &result, &trial()).unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(
        cascade(&[
            "rewrite",
            "attention_3pass",
            "--objective",
            "hardware",
            "--arch",
            "fusemax",
            "--metric",
            "energy",
        ])
        .stderr,
    )
    .expect("utf-8");
    assert!(
        text.contains("cost model: hardware fusemax, pJ per op: mac 1.7160e1 (array2d)"),
        "{text}"
    );
    assert!(text.contains("cost: "), "{text}");
}

/// `--objective hardware` makes the choice between the streaming forms of one input. At decode
/// (one query, 65,536 keys) the 1-pass fold over key tiles gives each of its 1,024 steps 64
/// scores, which leave most of FuseMax's 256×256 array idle: split-K (a fold over each tile's
/// keys, all tiles at once, and a combine rescaling every tile by its running max) is chosen.
/// At prefill, or on FLAT (exp and the rescaling on a 256-wide array that one step of 64 scores
/// fills better), the plain 1-pass fold stays. Every result is the input under the interpreter.
#[test]
fn cli_rewrite_hardware_objective_picks_split_k_where_pes_would_idle() {
    const DECODE: &[(&str, i64)] = &[("E", 64), ("F", 64), ("M", 65536), ("P", 1)];
    let run = |arch: &str, sizes: &[(&str, i64)]| -> (Cascade, serde_json::Value) {
        let shape: Vec<String> = sizes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let shape = shape.join(",");
        let args = [
            "--format",
            "json",
            "rewrite",
            "attention_1pass",
            "--objective",
            "hardware",
            "--arch",
            arch,
            "--shape",
            &shape,
        ];
        let (v, text, result) = derived(&args);
        check::valid(&result).unwrap_or_else(|e| panic!("{e}"));
        check::equal(&load("attention_1pass"), &result, &trial())
            .unwrap_or_else(|e| panic!("{arch} {shape}: {e}\n{text}"));
        (result, v)
    };
    let loop_rank = |c: &Cascade| -> Vec<String> {
        c.iterative_ranks()
            .iter()
            .map(|r| c.rank(*r).name.clone())
            .collect()
    };
    let input = load("attention_1pass");
    let (fusemax, flat) = (shipped_arch("fusemax"), shipped_arch("flat"));
    let close = |a: f64, b: &serde_json::Value| (a - b.as_f64().unwrap()).abs() <= 1e-9 * a;

    // Decode on FuseMax: split-K, cheaper than the 1-pass input by the CLI's own model.
    let (split_k, v) = run("fusemax", DECODE);
    assert_eq!(loop_rank(&split_k), ["M0"], "{}", dsl::print(&split_k));
    assert!(
        dsl::print(&split_k).contains("= max(m1) "),
        "{}",
        dsl::print(&split_k)
    );
    let (before, after) = (
        stepped_cycles(&input, DECODE, 64, &fusemax),
        stepped_cycles(&split_k, DECODE, 64, &fusemax),
    );
    assert!(
        close(before, &v["cost"]["before"]),
        "{before} vs {}",
        v["cost"]
    );
    assert!(
        close(after, &v["cost"]["after"]),
        "{after} vs {}",
        v["cost"]
    );
    assert!(after < before, "{after} >= {before}");

    // Prefill on FuseMax: the 1-pass fold over key tiles stays.
    let (prefill, v) = run("fusemax", ATTENTION);
    assert_eq!(loop_rank(&prefill), ["M1"], "{}", dsl::print(&prefill));
    let kept = stepped_cycles(&prefill, ATTENTION, 64, &fusemax);
    assert!(close(kept, &v["cost"]["after"]), "{kept} vs {}", v["cost"]);
    assert!(kept < stepped_cycles(&split_k, ATTENTION, 64, &fusemax));

    // Decode on FLAT: the 1-pass fold stays, and there split-K would cost more.
    let (one_pass, v) = run("flat", DECODE);
    assert_eq!(loop_rank(&one_pass), ["M1"], "{}", dsl::print(&one_pass));
    let kept = stepped_cycles(&one_pass, DECODE, 64, &flat);
    assert!(close(kept, &v["cost"]["after"]), "{kept} vs {}", v["cost"]);
    assert!(kept < stepped_cycles(&split_k, DECODE, 64, &flat));
}

#[test]
fn cli_rewrite_passes_break_ties_on_an_arch_file() {
    let out = cascade(&[
        "--format",
        "json",
        "rewrite",
        "attention_3pass",
        "--objective",
        "passes",
        "--arch",
        "arch-configs/flat.toml",
        "--metric",
        "energy",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["passes"]["after"], 1);
    assert_eq!(v["cost_model"]["arch"], "flat");
    assert_eq!(v["cost_model"]["metric"], "energy");
    let hw = cascade_scheduler::HardwareCost::new(
        &shipped_arch("flat"),
        cascade_scheduler::Metric::Energy,
    );
    let result = dsl::check(v["cascade"].as_str().expect("text"), "stdout")
        .expect("verifies")
        .cascade;
    let cost = hardware_cost(&result, ATTENTION, 64, &hw);
    assert!((cost - v["cost"]["after"].as_f64().unwrap()).abs() <= 1e-9 * cost);
}

#[test]
fn cli_rewrite_hardware_needs_an_arch() {
    for (args, want) in [
        (
            &["rewrite", "attention_3pass", "--objective", "hardware"][..],
            "add --arch",
        ),
        (
            &[
                "rewrite",
                "attention_3pass",
                "--objective",
                "ops",
                "--arch",
                "fusemax",
            ][..],
            "use --objective hardware",
        ),
        (
            &[
                "rewrite",
                "attention_3pass",
                "--objective",
                "hardware",
                "--arch",
                "no-such-arch",
            ][..],
            "neither a file nor a shipped architecture",
        ),
        (
            &[
                "rewrite",
                "attention_3pass",
                "--objective",
                "hardware",
                "--metric",
                "energy",
            ][..],
            "--arch",
        ),
    ] {
        let out = cascade(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).expect("utf-8");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn pricier_op_kinds_are_avoided() {
    use cascade_scheduler::{HardwareCost, Metric};
    let sizes = [("K", 4096)];
    let run = |objective: Objective| derive("pedagogical_1", &config(objective, ALL, &sizes, "K"));
    let fusemax = shipped_arch("fusemax");
    // FuseMax energy: an add (8.34 pJ) is cheaper than a MAC (17.16 pJ), so deferring the
    // multiply (K adds and one multiply instead of K MACs) pays, as under flops.
    let energy = run(by_hardware(&fusemax, Metric::Energy));
    assert!(same_structure(&energy.cascade, &load("pedagogical_2")));
    assert_eq!(count(&energy, OpKind::Add), 4096.0);
    assert!(energy.after.cost < energy.before.cost);
    // Cycles: a MAC and an add both take one cycle, so the extra multiply makes deferral lose.
    let cycles = run(by_hardware(&fusemax, Metric::Cycles));
    assert!(same_structure(&cycles.cascade, &load("pedagogical_1")));
    assert_eq!(cycles.after.cost, cycles.before.cost);

    // Adds priced at three MACs' energy: the extraction keeps the MAC form, which is cheaper
    // under that price than the form extracted for the shipped prices.
    let add = "ops.add = { cycles = 1, actions = { add = 1 } }";
    let dear_add = edited_fusemax(add, "ops.add = { cycles = 1, actions = { mac = 3 } }");
    let hw = HardwareCost::new(&dear_add, Metric::Energy);
    assert!((hw.weight(OpKind::Add) - 3.0 * 17.16).abs() < 1e-9);
    let r = run(by_hardware(&dear_add, Metric::Energy));
    assert!(count(&r, OpKind::Add) < count(&energy, OpKind::Add));
    assert!(same_structure(&r.cascade, &load("pedagogical_1")));
    let priced = |c: &Cascade| hardware_cost(c, &sizes, 64, &hw);
    assert!(priced(&r.cascade) < priced(&energy.cascade));
    assert!((r.after.cost - priced(&r.cascade)).abs() <= 1e-9 * r.after.cost);

    // A MAC that takes four cycles on the 2D array: cycles now favour deferral (fewer MACs).
    let mac = "ops.mac = { cycles = 1, actions = { mac = 1 } }";
    let slow_mac = edited_fusemax(mac, "ops.mac = { cycles = 4, actions = { mac = 1 } }");
    let r = run(by_hardware(&slow_mac, Metric::Cycles));
    // A MAC dearer than a multiply and an add is not used at all: Z's is deferred, Y's is
    // unfused into a multiply and a (tiled) sum.
    assert_eq!(count(&r, OpKind::Mac), 0.0, "{}", dsl::print(&r.cascade));
    assert!(count(&cycles, OpKind::Mac) > 0.0);
    let hw = HardwareCost::new(&slow_mac, Metric::Cycles);
    assert!(
        hardware_cost(&r.cascade, &sizes, 64, &hw)
            < hardware_cost(&cycles.cascade, &sizes, 64, &hw)
    );

    // FuseMax prices its unary functions one by one, `other` as the dearest of them: sigmoid
    // attention has a finite cost, which the rewrite does not raise.
    let sigmoid = |arch: &cascade_scheduler::ArchSpec| {
        derive(
            "sigmoid_attention",
            &config(by_hardware(arch, Metric::Cycles), ALL, ATTENTION, "M"),
        )
    };
    let r = sigmoid(&fusemax);
    assert!(r.before.cost.is_finite(), "{}", r.before.cost);
    assert!(r.after.cost <= r.before.cost);
    // Without those entries no unit executes `other`: it costs +inf either way, and still
    // rewrites.
    let text = cascade_scheduler::shipped::arch("fusemax").expect("shipped");
    let functions = [
        "relu", "neg", "recip", "sqrt", "tanh", "sigmoid", "softplus", "elu1",
    ];
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            !functions
                .iter()
                .any(|f| l.starts_with(&format!("ops.{f} ")))
        })
        .collect();
    assert!(kept.len() < text.lines().count());
    let no_functions = cascade_scheduler::shipped::parse_arch(&kept.join("\n"), |n| {
        cascade_scheduler::shipped::costs(n).map(str::to_string)
    })
    .expect("the edited architecture validates");
    let r = sigmoid(&no_functions);
    assert_eq!(
        (r.before.cost, r.after.cost),
        (f64::INFINITY, f64::INFINITY)
    );
}

#[test]
fn mla_weight_absorption_is_chosen_only_where_it_is_cheaper() {
    // Multi-head latent attention with keys and values up-projected from the latent cache
    // C[L,M] (DeepSeek's shapes: E = 192, F = 128, L = 512, H = 128). Its multiply-adds:
    //   up-projected: K = WK·C (E·L·M·H), V = WV·C (F·L·M·H), QK (E·M·P·H), AV (F·M·P·H);
    //   absorbed:     QL = WKᵀ·Q (E·L·P·H), QK = QL·C (L·M·P·H), AL = A·C (L·M·P·H),
    //                 AV = WV·AL (F·L·P·H).
    // With one query (decode) the absorbed form is ~150× cheaper; at prefill (P = M) the
    // up-projection is ~3× cheaper because L > E: associativity of contractions reaches both,
    // and the ops objective must pick the cheaper one at each shape.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/zoo/mla_absorbed_3pass.cascade"
    );
    let input = dsl::check(&std::fs::read_to_string(path).expect("zoo file"), path)
        .expect("verifies")
        .cascade;
    let (e, f, l, m, h) = (192.0, 128.0, 512.0, 4096.0, 128.0);
    let up = |p: f64| h * (e * l * m + f * l * m + e * m * p + f * m * p);
    let absorbed = |p: f64| h * (e * l * p + 2.0 * l * m * p + f * l * p);
    let up_projects_keys = |c: &Cascade| {
        c.einsums.iter().any(|x| {
            let ranks: Vec<&str> = c
                .tensor(x.output.tensor)
                .ranks
                .iter()
                .map(|r| c.rank(*r).name.as_str())
                .collect();
            ranks.contains(&"E") && ranks.contains(&"M")
        })
    };
    let mut trial = Trial::new(
        &[("E", 3), ("F", 2), ("L", 4), ("M", 12), ("P", 5), ("H", 2)],
        3,
    );
    trial.seeds = (0..2).collect();
    for (p, want_absorbed) in [(1.0, true), (m, false)] {
        let shape = format!("E={e},F={f},L={l},M={m},P={p},H={h}");
        let out = cascade(&[
            "--format",
            "json",
            "rewrite",
            path,
            "--objective",
            "ops",
            "--shape",
            &shape,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let text = v["cascade"].as_str().expect("cascade text");
        let result = dsl::check(text, "stdout").expect("verifies").cascade;
        assert_eq!(up_projects_keys(&result), !want_absorbed, "P={p}:\n{text}");
        let macs = v["ops"]["after"]["mac"].as_f64().expect("mac count");
        let want = up(p).min(absorbed(p));
        assert!(
            (macs - want).abs() <= 1e-9 * want,
            "P={p}: {macs} vs {want}"
        );
        assert_eq!(want == absorbed(p), want_absorbed);
        check::equal(&input, &result, &trial).unwrap_or_else(|err| panic!("P={p}: {err}\n{text}"));
    }
}

/// Chunked causal linear attention (Lightning Attention-2) derived from its running-state form
/// by `scan-chunk`: on FuseMax the recurrence's 4,096 sequential steps of E·F points leave the
/// array idle, and the hardware objective picks a state per chunk `m1` plus a dense, causally
/// masked product within each chunk. The result evaluates like the input (interpreter, f64,
/// 1e-9), and the chunked zoo cascade itself is accepted and stays equal to its input.
#[test]
fn cli_rewrite_derives_chunked_causal_linear_attention_from_the_recurrence() {
    let run = |f: &str| -> Cascade {
        let file = zoo_path(f);
        let args = [
            "--format",
            "json",
            "rewrite",
            file.as_str(),
            "--objective",
            "hardware",
            "--arch",
            "fusemax",
        ];
        let (v, text, result) = derived(&args);
        check::valid(&result).unwrap_or_else(|e| panic!("{e}"));
        check::equal(&zoo_cascade(f), &result, &trial())
            .unwrap_or_else(|e| panic!("{f}: {e}\n{text}"));
        assert!(v["explanation"].is_null() || v["explanation"].is_array());
        result
    };
    let chunked = run("linear_causal_rnn");
    let text = dsl::print(&chunked);
    // The state runs over the chunks: one loop, over M1.
    let loops: Vec<String> = chunked
        .iterative_ranks()
        .iter()
        .map(|r| chunked.rank(*r).name.clone())
        .collect();
    assert_eq!(loops, ["M1"], "{text}");
    // Within a chunk, keys n0 beside queries m0: a second variable over M0, read through the
    // causal filter `n0 <= m0`.
    let m = chunked.rank_by_name("M").expect("rank M");
    let (_, m0) = chunked.rank(m).split.expect("M is split");
    let n0 = chunked
        .second_variable(m0)
        .expect("a second variable over M0");
    let causal = format!("{} <= {}", chunked.var_name(n0), chunked.var_name(m0));
    assert!(text.contains(&causal), "no `{causal}` in\n{text}");
    // The chunked form is accepted as input too, and rewrites to an equal cascade.
    run("linear_causal_chunked");
}

/// The way back: from chunked causal linear attention (Lightning Attention-2, written with the
/// cascade's own `split M -> M1 M0 N0` and the causal filter `n0 <= m0`), `scan-chunk-rev`
/// derives the recurrence, which the op objective prefers: E·F multiply-adds per step for the
/// update and E·F for the query's read, against the chunked form's extra E·M0 + F·M0 per query.
/// The result evaluates like the chunked input and like the hand-written recurrence
/// `linear_causal_rnn` (interpreter, f64, 1e-9), runs one loop over M itself with no split
/// left, and `--explain` names the rule.
#[test]
fn cli_rewrite_derives_the_recurrence_from_chunked_causal_linear_attention() {
    let file = zoo_path("linear_causal_chunked");
    let args = [
        "--format",
        "json",
        "rewrite",
        file.as_str(),
        "--objective",
        "ops",
        "--explain",
    ];
    let (v, text, result) = derived(&args);
    check::valid(&result).unwrap_or_else(|e| panic!("{e}"));
    let chunked = zoo_cascade("linear_causal_chunked");
    check::equal(&chunked, &result, &trial()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The hand-written recurrence over M (a different M from the chunked file's shape line is
    // fine: both are compared on the trial's own sizes).
    let rnn = zoo_cascade("linear_causal_rnn");
    check::equal(&rnn, &result, &trial()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // One loop, over M itself; the input's split is gone.
    let loops: Vec<String> = result
        .iterative_ranks()
        .iter()
        .map(|r| result.rank(*r).name.clone())
        .collect();
    assert_eq!(loops, ["M"], "{text}");
    assert!(result.ranks.iter().all(|r| r.split.is_none()), "{text}");
    assert!(!text.contains("<="), "a causal filter is left in\n{text}");
    // Products after: E·F·M for the update and E·F·M for the query's read, at the default
    // sizes (64 for E and F, 4096 for M).
    let (e, f, m) = (64.0, 64.0, 4096.0);
    let products = v["ops"]["after"]["mac"].as_f64().unwrap_or(0.0)
        + v["ops"]["after"]["mul"].as_f64().unwrap_or(0.0);
    assert_eq!(products, 2.0 * e * f * m, "{}", v["ops"]);
    let rules: Vec<&str> = v["explanation"]
        .as_array()
        .expect("explanation")
        .iter()
        .filter_map(|s| s["rule"].as_str())
        .collect();
    assert!(rules.contains(&"scan-chunk-rev"), "{rules:?}");
}

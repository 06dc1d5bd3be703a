//! The variant zoo (`tests/data/zoo/*.cascade`) through every stage: each cascade is
//! evaluated by the interpreter in f64 (the reference), in f32, by each of its rewritten forms,
//! by the `cpp` target fused and with `--no-fuse`, and is scheduled and simulated; every
//! stage that produces numbers must agree with the interpreter, and every stage that refuses
//! must say why. What each stage did is one line per cascade in the `zoo_summary` snapshot,
//! so a stage that starts or stops accepting a variant shows up in review.
//!
//! A zoo file says what it needs in its header comments: `# shape: E=8,M=24,…` (the rank
//! sizes) and `# mask NAME: neginf` for an additive mask input, filled with 0 and `-inf`
//! (including one fully masked query) instead of random values.

mod cpp;
mod gpu;
mod reference;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cascade_codegen::{DType, GpuSchedule, Target};
use cascade_ir::eval::evaluate;
use cascade_ir::rewrite::{self, Limits, Objective, OpWeights, RewriteConfig, RuleSets};
use cascade_ir::verify::verify;
use cascade_ir::{Cascade, Shape, ShapeSpec, TensorKind, dsl, lint, passes};
use ndarray::ArrayD;

/// f32 stages against the f64 interpreter: relative to each value with a floor of a tenth of
/// the output's largest magnitude (outputs are signed averages that cancel to near 0).
pub const F32_TOL: f64 = 1e-5;
/// A rewritten cascade in f64 against the original in f64.
const REWRITE_TOL: f64 = 1e-9;

/// FIXME: stages known to compute a wrong number on a zoo cascade, as (cascade, stage). The test
/// asserts they are still wrong, so a fix must remove its entry; every other cell must agree.
/// Empty now: every stage agrees on every variant.
const KNOWN_WRONG: &[(&str, &str)] = &[];

/// One zoo file, parsed and verified, with its shape and inputs.
pub struct Case {
    pub name: String,
    pub cascade: Cascade,
    pub spec: ShapeSpec,
    pub shape: Shape,
    /// Inputs rounded to f32 (so f32 stages and the f64 reference see the same values).
    pub inputs: BTreeMap<String, ArrayD<f64>>,
    /// The interpreter's f64 outputs, in declaration order.
    pub expected: Vec<ArrayD<f64>>,
}

fn zoo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zoo")
}

/// Every zoo file, sorted by name.
fn load_all() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(zoo_dir())
        .expect("tests/data/zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cascade"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

fn load(path: &Path) -> Case {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let source = std::fs::read_to_string(path).expect("zoo file");
    let parsed = dsl::check(&source, &name)
        .unwrap_or_else(|d| panic!("{name}:\n{}", d.render(&source, &name, false)));
    let header = |key: &str| -> Vec<String> {
        source
            .lines()
            .filter_map(|l| l.strip_prefix("# ")?.strip_prefix(key))
            .map(|rest| rest.trim().to_string())
            .collect()
    };
    let spec_text = header("shape:");
    let spec: ShapeSpec = spec_text
        .first()
        .unwrap_or_else(|| panic!("{name}: no `# shape:` line"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: shape {e}"));
    let cascade = parsed.cascade;
    let shape = Shape::resolve(&cascade, &spec).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let masks: Vec<String> = header("mask ")
        .iter()
        .map(|m| {
            let (tensor, kind) = m.split_once(':').expect("`# mask NAME: neginf`");
            assert_eq!(kind.trim(), "neginf", "{name}: mask kind");
            tensor.trim().to_string()
        })
        .collect();
    let inputs = inputs(&cascade, &shape, &masks);
    let ev = evaluate::<f64>(&cascade, &shape, &inputs)
        .unwrap_or_else(|e| panic!("{name}: the interpreter fails: {e}"));
    let expected = ev
        .outputs
        .iter()
        .map(|o| ev.tensor(o).expect("output").values.clone())
        .collect();
    Case {
        name,
        cascade,
        spec,
        shape,
        inputs,
        expected,
    }
}

/// Seeded random inputs rounded to f32; each mask input gets 0 and `-inf`, with every point of
/// its last index 1 masked (a fully masked query) and a diagonal pattern elsewhere.
fn inputs(c: &Cascade, shape: &Shape, masks: &[String]) -> BTreeMap<String, ArrayD<f64>> {
    let mut ins = cascade_ir::reference::random_inputs(c, shape, 11);
    for a in ins.values_mut() {
        a.mapv_inplace(|x| f64::from(x as f32));
    }
    for name in masks {
        let a = ins.get_mut(name).expect("mask input declared");
        let a_ndim = a.ndim();
        let last = a_ndim - 1;
        for (idx, x) in a.indexed_iter_mut() {
            let sum: usize = (0..a_ndim).map(|d| idx[d]).sum();
            let masked = idx[last] == 1 || sum.is_multiple_of(3);
            *x = if masked { f64::NEG_INFINITY } else { 0.0 };
        }
    }
    ins
}

/// The worst relative error of `got` against `want`, or why they disagree.
pub fn compare(got: &[f64], want: &ArrayD<f64>, tol: f64) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let err = (g - w).abs() / w.abs().max(0.1 * scale).max(f64::MIN_POSITIVE);
        if g.is_nan() || !err.is_finite() && g != w || err > tol {
            return Err(format!(
                "value {i}: got {g}, expected {w} (error {err:.2e})"
            ));
        }
        if err.is_finite() {
            worst = worst.max(err);
        }
    }
    Ok(worst)
}

/// What one stage did with one cascade.
enum Outcome {
    /// Produced numbers that agree; the text says what ran (`fused`, `1 pass`, …).
    Agrees(String),
    /// Refused with this message.
    Refused(String),
    /// Produced something wrong: a test failure.
    Wrong(String),
}

impl Outcome {
    fn cell(&self) -> String {
        match self {
            Outcome::Agrees(what) => format!("ok {what}").trim_end().to_string(),
            Outcome::Refused(why) => format!("refused: {}", first_line(why)),
            Outcome::Wrong(why) => format!("WRONG: {why}"),
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(110).collect();
    if line.chars().count() > 110 {
        out.push('…');
    }
    out
}

fn eval_f32(case: &Case) -> Outcome {
    let ins: BTreeMap<String, ArrayD<f32>> = case
        .inputs
        .iter()
        .map(|(n, a)| (n.clone(), a.mapv(|x| x as f32)))
        .collect();
    let ev = match evaluate::<f32>(&case.cascade, &case.shape, &ins) {
        Ok(ev) => ev,
        Err(e) => return Outcome::Wrong(format!("f32 evaluation fails: {e}")),
    };
    let mut worst = 0.0f64;
    for (o, want) in ev.outputs.iter().zip(&case.expected) {
        let got: Vec<f64> = ev
            .tensor(o)
            .unwrap()
            .values
            .iter()
            .map(|x| f64::from(*x))
            .collect();
        match compare(&got, want, 1e-4) {
            Ok(w) => worst = worst.max(w),
            Err(e) => return Outcome::Wrong(format!("f32 interpreter, output {o}: {e}")),
        }
    }
    Outcome::Agrees(format!("(worst {worst:.0e})"))
}

fn pass_counts(c: &Cascade) -> String {
    let mut out = Vec::new();
    for r in passes::top_level_ranks(c) {
        let n = passes::passes(c, r).passes;
        if n > 0 {
            out.push(format!("{}:{n}", c.rank(r).name));
        }
    }
    out.join(" ")
}

/// Rewrites with one objective, then checks the result verifies and evaluates equal.
fn rewrite_stage(case: &Case, objective: &str) -> Outcome {
    let c = &case.cascade;
    let Some(rank) = passes::default_rank(c) else {
        return Outcome::Refused("no rank to optimise".into());
    };
    let rank_name = c.rank(rank).name.clone();
    let m = case.shape.size(rank);
    let tile = (1..=8).rev().find(|t| m % t == 0).unwrap_or(1);
    let cost = Arc::new(OpWeights::flops());
    let config = RewriteConfig {
        objective: match objective {
            "passes" => Objective::Passes {
                rank: rank_name.clone(),
                cost,
            },
            _ => Objective::Cost(cost),
        },
        rules: RuleSets {
            deferral: true,
            iterative: true,
        },
        sizes: case.spec.clone(),
        tile,
        split_ranks: vec![rank_name],
        limits: Limits {
            iterations: 30,
            nodes: 50_000,
            time: Duration::from_secs(30),
        },
        explain: false,
    };
    let result = match rewrite::rewrite(c, &config) {
        Ok(r) => r,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let derived = &result.cascade;
    let errors = verify(derived);
    if !errors.is_empty() {
        return Outcome::Wrong(format!(
            "the rewritten cascade does not verify: {}\n{}",
            errors[0],
            dsl::print(derived)
        ));
    }
    // Unambiguous loop phases, and the printed text parses back to the same cascade.
    if let Err(e) = rewrite::check::valid(derived) {
        return Outcome::Wrong(format!("the rewritten cascade is not valid: {e}"));
    }
    let mut spec = case.spec.clone();
    // A split the rewriter took away (the chunked form's `M0` once `scan-chunk-rev` derives the
    // recurrence) has no size in the derived cascade.
    spec.sizes
        .retain(|name, _| derived.rank_by_name(name).is_some());
    // A split's second variable (`N0`) always has its inner part's size: it is never given.
    for r in &derived.ranks {
        if r.name.ends_with('0') && r.range_of.is_none() && !spec.sizes.contains_key(&r.name) {
            spec.sizes.insert(r.name.clone(), tile);
        }
    }
    let shape = match Shape::resolve(derived, &spec) {
        Ok(s) => s,
        Err(e) => return Outcome::Wrong(format!("the rewritten cascade has no shape: {e:?}")),
    };
    let ev = match evaluate::<f64>(derived, &shape, &case.inputs) {
        Ok(ev) => ev,
        Err(e) => return Outcome::Wrong(format!("the rewritten cascade fails: {e}")),
    };
    let got: Vec<f64> = ev
        .output()
        .expect("output")
        .values
        .iter()
        .copied()
        .collect();
    match compare(&got, &case.expected[0], REWRITE_TOL) {
        Ok(_) => Outcome::Agrees(format!("({} passes)", pass_counts(derived))),
        Err(e) => Outcome::Wrong(format!(
            "rewritten ({objective}): {e}\n{}",
            dsl::print(derived)
        )),
    }
}

/// Schedules and simulates on a shipped architecture at the zoo shape (one instance).
fn simulate_stage(case: &Case, arch_name: &str) -> Outcome {
    let arch = cascade_scheduler::shipped::load_arch(arch_name)
        .expect("shipped arch")
        .expect("valid arch");
    let sizes: BTreeMap<String, u64> = case
        .spec
        .sizes
        .iter()
        .map(|(k, v)| (k.clone(), *v as u64))
        .collect();
    let problem = cascade_scheduler::Problem {
        label: case.name.clone(),
        scenario: cascade_scheduler::Scenario::Prefill,
        cascade: None,
        linear: vec![(64, 64), (64, 256), (256, 64)],
        seq: sizes.get("M").copied().unwrap_or(1),
        batch: 1,
        heads: 1,
        model_dim: 64,
        ffn_dim: 256,
        head_dim: sizes.get("E").copied().unwrap_or(1),
        sizes,
        block_masks: Default::default(),
    };
    match cascade_scheduler::schedule(&case.cascade, &arch, &problem) {
        Err(e) => Outcome::Refused(e.to_string()),
        Ok(cascade_scheduler::Outcome::Infeasible(i)) => Outcome::Refused(i.to_string()),
        Ok(cascade_scheduler::Outcome::Scheduled(s)) => {
            let report = cascade_sim::simulate(&s, &arch);
            let cycles = report.latency_cycles;
            let energy = report.energy.total_pj();
            if cycles.is_finite() && cycles > 0.0 && energy.is_finite() && energy > 0.0 {
                Outcome::Agrees(String::new())
            } else {
                Outcome::Wrong(format!("latency {cycles} cycles, energy {energy} pJ"))
            }
        }
    }
}

/// Emits CUDA and HIP (text only: no GPU compiler here) and reports which lowering.
fn emit_stage(case: &Case, target: Target) -> Outcome {
    let head = case.spec.sizes.get("E").copied().unwrap_or(16);
    let mut s = GpuSchedule::suggested(target, DType::F16, head.max(16) as u32);
    s.fuse = true;
    match cascade_codegen::emit(&case.cascade, &s, target) {
        Ok(k) => Outcome::Agrees(if k.fused { "fused" } else { "generic" }.into()),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

#[test]
fn zoo_every_stage_agrees_with_the_interpreter_or_refuses() {
    let cases = load_all();
    assert!(cases.len() >= 40, "the zoo holds {} cascades", cases.len());
    let cpp = cpp::run_all(&cases);
    let mut summary = String::new();
    let mut wrong = Vec::new();
    for (case, cpp) in cases.iter().zip(cpp) {
        let warnings = lint::lint(&case.cascade);
        let mut cells: Vec<(&str, Outcome)> = vec![
            ("f32", eval_f32(case)),
            ("reference", reference::check(case)),
            ("rewrite passes", rewrite_stage(case, "passes")),
            ("rewrite ops", rewrite_stage(case, "ops")),
        ];
        cells.extend(cpp);
        cells.push(("cuda", emit_stage(case, Target::Cuda)));
        cells.push(("hip", emit_stage(case, Target::Hip)));
        cells.push(("fusemax", simulate_stage(case, "fusemax")));
        cells.push(("flat", simulate_stage(case, "flat")));
        writeln!(
            summary,
            "{} ({} passes)",
            case.name,
            pass_counts(&case.cascade)
        )
        .unwrap();
        if !warnings.is_empty() {
            wrong.push(format!(
                "{}: masking warning: {}",
                case.name, warnings[0].message
            ));
        }
        for (stage, outcome) in &cells {
            let known = KNOWN_WRONG.contains(&(case.name.as_str(), *stage));
            match (outcome, known) {
                (Outcome::Wrong(_), true) => {
                    writeln!(summary, "  {stage:<15} known wrong (FIXME in KNOWN_WRONG)").unwrap();
                    continue;
                }
                (Outcome::Wrong(why), false) => {
                    wrong.push(format!("{} / {stage}: {why}", case.name));
                }
                (_, true) => wrong.push(format!(
                    "{} / {stage}: fixed, remove it from KNOWN_WRONG",
                    case.name
                )),
                _ => {}
            }
            writeln!(summary, "  {stage:<15} {}", outcome.cell()).unwrap();
            if let Outcome::Refused(why) = outcome
                && why.trim().is_empty()
            {
                wrong.push(format!("{} / {stage}: refused without a reason", case.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagreements:\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
    insta::assert_snapshot!("zoo_summary", summary);
}

/// Zoo cascades the rewriter refuses to lift, with a part of the refusal (none today). The test
/// asserts they are still refused, so lifting one must remove its entry.
const NOT_LIFTED: &[(&str, &str)] = &[];

/// Every zoo cascade lifts to one term and lowers back to a valid cascade that evaluates like it
/// (f64, 1e-9), and a second round trip changes nothing: the rewriter accepts the whole corpus
/// but [`NOT_LIFTED`].
#[test]
fn zoo_cascades_lift_and_lower_back() {
    for case in load_all() {
        if let Some((_, why)) = NOT_LIFTED.iter().find(|(n, _)| *n == case.name) {
            let err = rewrite::lift(&case.cascade)
                .map(|_| ())
                .expect_err("lifts now: remove it from NOT_LIFTED");
            assert!(err.to_string().contains(why), "{}: {err}", case.name);
            continue;
        }
        let lifted = rewrite::lift(&case.cascade).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let lowered = rewrite::lower(&lifted.expr, &lifted.names, &lifted.signature)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        rewrite::check::valid(&lowered).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        // Lowering writes a constant scale inside its contraction (the normal form), so the
        // term may change once; after that lifting and lowering are a fixed point.
        let again = rewrite::lift(&lowered).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let relowered = rewrite::lower(&again.expr, &again.names, &again.signature)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let third = rewrite::lift(&relowered).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            third.expr.to_string(),
            again.expr.to_string(),
            "{}: lowering is not a fixed point\n{}",
            case.name,
            dsl::print(&lowered)
        );
        let shape =
            Shape::resolve(&lowered, &case.spec).unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        let ev = evaluate::<f64>(&lowered, &shape, &case.inputs)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let got: Vec<f64> = ev
            .output()
            .expect("output")
            .values
            .iter()
            .copied()
            .collect();
        compare(&got, &case.expected[0], REWRITE_TOL)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", case.name, dsl::print(&lowered)));
    }
}

/// Every CUDA and HIP source the zoo emits compiles (sm_90a, gfx942).
#[test]
fn zoo_gpu_sources_compile() {
    let cases = load_all();
    for target in [Target::Cuda, Target::Hip] {
        let failures = gpu::compile_all(&cases, target);
        assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n\n"));
    }
}

/// The zoo files themselves, through the CLI: each checks, evaluates, and counts its passes.
#[test]
fn zoo_files_work_from_the_cli() {
    use crate::support::run;
    for case in load_all() {
        let path = zoo_dir().join(format!("{}.cascade", case.name));
        let path = path.to_str().unwrap();
        let (code, _, err) = run(&["check", path]);
        assert_eq!(code, 0, "{}: {err}", case.name);
        assert!(err.is_empty(), "{}: check warns: {err}", case.name);
        let shape: Vec<String> = case
            .spec
            .sizes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let (code, out, err) = run(&["eval", path, "--shape", &shape.join(",")]);
        assert_eq!(code, 0, "{}: {err}", case.name);
        assert!(out.contains("points present"), "{}: {out}", case.name);
        let (code, _, err) = run(&["passes", path]);
        assert_eq!(code, 0, "{}: {err}", case.name);
    }
}

/// The inputs of a case as a map of f32-rounded arrays in declaration order (for drivers).
pub fn input_tensors(c: &Cascade) -> Vec<&cascade_ir::Tensor> {
    c.tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Input)
        .collect()
}

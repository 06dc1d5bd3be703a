//! The loop plan: which Einsums run in Initialization, per step of the loop, before or after
//! it; the guards filters leave on iteration spaces; and the ambiguities `verify` rejects.
//! Every phase decision is also checked where it matters, by evaluating with the interpreter
//! against a direct computation.

use std::collections::BTreeMap;

use cascade_ir::eval::evaluate;
use cascade_ir::plan::{LoopPlan, Phase, Step};
use cascade_ir::verify::verify;
use cascade_ir::{Cascade, Shape, dsl, library};
use ndarray::{ArrayD, IxDyn};

fn parse(source: &str) -> Cascade {
    match dsl::parse(source, "test.cascade") {
        Ok(p) => p.cascade,
        Err(d) => panic!("{}", d.render(source, "test.cascade", false)),
    }
}

/// `(tensor, phase)` for every Einsum, in program order.
fn phases(c: &Cascade) -> Vec<(String, Phase)> {
    let plan = LoopPlan::new(c);
    c.einsum_ids()
        .map(|id| {
            let name = c.tensor(c.einsum(id).output.tensor).name.clone();
            (name, plan.phase(id))
        })
        .collect()
}

fn names_in(c: &Cascade, phase: Phase) -> Vec<String> {
    phases(c)
        .into_iter()
        .filter(|(_, p)| *p == phase)
        .map(|(n, _)| n)
        .collect()
}

/// The verify messages of a cascade (parse must succeed).
fn verify_messages(source: &str) -> Vec<String> {
    let c = parse(source);
    verify(&c)
        .iter()
        .map(|e| format!("{e} | hint: {}", e.hint()))
        .collect()
}

#[test]
fn cascade_5_runs_its_state_updates_per_step_and_the_division_after() {
    let c = parse(library::source("attention_1pass").unwrap());
    assert_eq!(names_in(&c, Phase::Init), ["BK", "BV", "RM", "RD", "RNV"]);
    assert_eq!(
        names_in(&c, Phase::Loop),
        [
            "BQK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "SPD", "RD", "SPNV", "RNV"
        ]
    );
    assert_eq!(names_in(&c, Phase::PostLoop), ["AV"]);
    assert!(names_in(&c, Phase::PreLoop).is_empty());
    let plan = LoopPlan::new(&c);
    assert_eq!(plan.iterative, c.rank_by_name("M1"));
    assert!(plan.ambiguities.is_empty());
    let kinds: Vec<&str> = plan
        .steps
        .iter()
        .map(|s| match s {
            Step::Run(_) => "run",
            Step::Loop { .. } => "loop",
        })
        .collect();
    assert_eq!(
        kinds,
        ["run"; 5]
            .iter()
            .chain(&["loop", "run"])
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn cascades_without_an_iterative_rank_run_in_program_order() {
    for name in [
        "attention_3pass",
        "attention_2pass_localmax",
        "linear_attention",
    ] {
        let c = parse(library::source(name).unwrap());
        let plan = LoopPlan::new(&c);
        assert_eq!(plan.iterative, None, "{name}");
        let body: Vec<Step> = plan.body().map(Step::Run).collect();
        let ran: Vec<Step> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Run(id) if plan.phase(*id) != Phase::Init))
            .cloned()
            .collect();
        assert_eq!(ran, body, "{name}");
        assert!(names_in(&c, Phase::Loop).is_empty(), "{name}");
    }
}

/// A full reduction over the iterative rank beside a fold over it: the reduction runs once,
/// over the whole rank, before the loop (the rewriter used to produce such cascades, and
/// the interpreter ran the reduction per step).
const FULL_REDUCTION_BESIDE_FOLD: &str = "
cascade mx_beside_fold
ranks E M
input K[E,M]
init
S[e,0] = 0
einsums
MX[e]     = max(m) K[e,m]
S[e,m+1]  = S[e,m] + (K[e,m] - MX[e])
OUT[e]    = S[e,M]
stop m >= M
output OUT
";

#[test]
fn a_full_reduction_beside_a_fold_runs_once_before_the_loop() {
    let c = parse(FULL_REDUCTION_BESIDE_FOLD);
    assert_eq!(verify(&c), vec![]);
    assert_eq!(names_in(&c, Phase::PreLoop), ["MX"]);
    assert_eq!(names_in(&c, Phase::Loop), ["S"]);
    assert_eq!(names_in(&c, Phase::PostLoop), ["OUT"]);
    // Pass analysis agrees: MX reduces M before the loop reads it again.
    let plan = LoopPlan::new(&c);
    let m = c.rank_by_name("M").unwrap();
    assert_eq!(plan.passes(&c, m).passes, 2);

    let (e, m_size) = (3usize, 7usize);
    let shape = Shape::resolve(&c, &format!("E={e},M={m_size}").parse().unwrap()).unwrap();
    let k: Vec<f64> = (0..e * m_size)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
        .collect();
    let inputs = BTreeMap::from([(
        "K".to_string(),
        ArrayD::from_shape_vec(IxDyn(&[e, m_size]), k.clone()).unwrap(),
    )]);
    let ev = evaluate(&c, &shape, &inputs).unwrap();
    let out = ev.tensor("OUT").unwrap();
    for row in 0..e {
        let ks = &k[row * m_size..][..m_size];
        let max = ks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let want: f64 = ks.iter().map(|x| x - max).sum();
        let got = out.get(&[row]).unwrap();
        assert!((got - want).abs() < 1e-12, "row {row}: {got} vs {want}");
    }
}

#[test]
fn an_epilogue_that_reads_only_post_loop_tensors_runs_after_the_loop() {
    let src = library::source("attention_1pass")
        .unwrap()
        .replace("output AV", "output OUT")
        .replace("stop m1 >= M1", "OUT[f,p] = AV[f,p] * 2.0\n\nstop m1 >= M1");
    let c = parse(&src);
    assert_eq!(verify(&c), vec![]);
    assert_eq!(names_in(&c, Phase::PostLoop), ["AV", "OUT"]);
    let plan = LoopPlan::new(&c);
    let last = plan.steps.last().unwrap();
    assert_eq!(
        last,
        &Step::Run(c.einsum_ids().last().unwrap()),
        "OUT runs last"
    );
}

#[test]
fn a_step_that_reads_a_post_loop_tensor_is_rejected_with_a_fix() {
    // GM reduces what the loop writes, so it exists only after the loop; PRM runs per step.
    let src = "
cascade t
ranks M P
split M -> M1 M0
input S[M,P]
init
BS[m1,m0,p] = S[m1*M0+m0, p]
R[0,p] = 0
einsums
LM[m1,p]   = max(m0) BS[m1,m0,p]
GM[p]      = max(m1) LM[m1,p]
PRM[m1,p]  = exp(LM[m1,p] - GM[p])
R[m1+1,p]  = R[m1,p] + PRM[m1,p]
OUT[p]     = R[M1,p]
stop m1 >= M1
output OUT
";
    let msgs = verify_messages(src);
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(
        msgs[0].contains("`PRM` runs once per step of M1"),
        "{}",
        msgs[0]
    );
    assert!(msgs[0].contains("`GM`"), "{}", msgs[0]);
    assert!(msgs[0].contains("hint: compute `GM`"), "{}", msgs[0]);
}

#[test]
fn a_step_that_reads_the_final_state_or_a_later_step_is_rejected() {
    let base = library::source("pedagogical_3").unwrap();
    let final_state = base.replace("RY[k+1] * A[k]", "RY[K] * A[k]");
    let msgs = verify_messages(&final_state);
    assert_eq!(msgs.len(), 1, "{msgs:#?}");
    assert!(msgs[0].contains("`RY` is read at `K`"), "{}", msgs[0]);
    assert!(
        msgs[0].contains("read the final state after the loop"),
        "{}",
        msgs[0]
    );

    let later = base.replace("RY[k+1] * A[k]", "RY[k+2] * A[k]");
    let msgs = verify_messages(&later);
    assert!(
        msgs.iter().any(|m| m.contains("`RY` is read at `k+2`")),
        "{msgs:#?}"
    );
}

#[test]
fn init_must_not_write_a_step_and_only_one_rank_may_be_iterative() {
    let init_step = library::source("pedagogical_3")
        .unwrap()
        .replace("RZ[0] = 0", "RZ[0] = 0\nRQ[0] = 0\nRQ[k+1] = A[k]")
        .replace("output Z", "output Z RQ");
    let msgs = verify_messages(&init_step);
    assert!(
        msgs.iter().any(|m| m.contains("`init` writes `RQ`")),
        "{msgs:#?}"
    );

    let two = "
cascade t
ranks I J
input A[I] B[J]
init
S[0] = 0
T[0] = 0
einsums
S[i+1] = S[i] + A[i]
T[j+1] = T[j] + B[j]
stop i >= I
output S
";
    let msgs = verify_messages(two);
    assert!(
        msgs.iter()
            .any(|m| m.contains("ranks I, J are all iterative")),
        "{msgs:#?}"
    );
}

#[test]
fn filters_guard_the_einsums_that_read_what_they_filter() {
    let c = parse(library::source("attention_causal_1pass").unwrap());
    let plan = LoopPlan::new(&c);
    let guard = |tensor: &str| -> Vec<String> {
        let t = c.tensor_by_name(tensor).unwrap();
        let id = c
            .einsum_ids()
            .find(|id| c.einsum(*id).output.tensor == t)
            .unwrap();
        plan.placement(id)
            .space
            .guard
            .iter()
            .map(|k| dsl::print_compare(&c, k))
            .collect()
    };
    assert_eq!(guard("BQK"), ["m1*M0+m0 <= p"]);
    // LM reads BQK at its own indices, so the mask carries over to its points.
    assert_eq!(guard("LM"), ["m1*M0+m0 <= p"]);
    // SLN = exp(BQK - RM): the subtraction's ∪ keeps only what both operands guarantee, but
    // sub-then-exp intersects: the mask survives.
    assert_eq!(guard("SLN"), ["m1*M0+m0 <= p"]);
    // RM's update is a max(∪) with its previous value: nothing is guaranteed.
    assert!(guard("RD").is_empty());
}

#[test]
fn an_output_filter_leaves_the_filtered_points_absent() {
    let src = "
cascade t
ranks M P
input A[M,P]
X[m,p : m < 2] = A[m,p]
Y[p : m <= p]  = A[m,p]
output X Y
";
    let c = parse(src);
    assert_eq!(verify(&c), vec![]);
    let shape = Shape::resolve(&c, &"M=4,P=3".parse().unwrap()).unwrap();
    let a: Vec<f64> = (0..12).map(|i| i as f64 + 1.0).collect();
    let inputs = BTreeMap::from([(
        "A".to_string(),
        ArrayD::from_shape_vec(IxDyn(&[4, 3]), a.clone()).unwrap(),
    )]);
    let ev = evaluate(&c, &shape, &inputs).unwrap();
    let x = ev.tensor("X").unwrap();
    for m in 0..4 {
        for p in 0..3 {
            let want = (m < 2).then_some(a[m * 3 + p]);
            assert_eq!(x.get(&[m, p]), want, "X[{m},{p}]");
        }
    }
    let y = ev.tensor("Y").unwrap();
    for p in 0..3 {
        let want: f64 = (0..=p).map(|m| a[m * 3 + p]).sum();
        assert_eq!(y.get(&[p]), Some(want), "Y[{p}]");
    }
}

/// A chain of Einsums that each read the one before one step further along `m` and add a
/// filter: every tensor carries its writer's conditions on, shifted. The loop plan's guard and
/// `presence` (the same propagation in two domains) keep what a tensor carries to a bounded
/// number of small conditions, so the chain costs linear time and memory instead of growing
/// each Einsum's conditions with its position.
#[test]
fn carried_conditions_stay_bounded_along_a_long_shifting_chain() {
    let n = 3000;
    let mut src =
        String::from("cascade shift_chain\nranks M P\ninput A[M,P]\n\nT0[m,p : m <= p] = A[m,p]\n");
    for i in 1..n {
        src.push_str(&format!(
            "T{i}[m,p : m + {} <= p + 5] = T{}[m+1,p] *{{&}} A[m,p]\n",
            i % 3,
            i - 1
        ));
    }
    src.push_str(&format!("\noutput T{}\n", n - 1));
    let c = dsl::check(&src, "chain").expect("verifies").cascade;
    let plan = LoopPlan::new(&c);
    let dnfs = cascade_ir::presence::presence(&c, &plan);
    assert_eq!(dnfs.len(), n);
    // A tensor carries at most 32 conditions; an Einsum adds its own filter and its operands'.
    let most_guard = c
        .einsum_ids()
        .map(|id| plan.placement(id).space.guard.len())
        .max()
        .unwrap();
    let most_conj = dnfs.iter().flatten().map(Vec::len).max().unwrap();
    assert!(most_guard <= 40, "{most_guard} conditions in one guard");
    assert!(most_conj <= 40, "{most_conj} conditions in one conjunction");
    // Late in the chain the first filter, shifted 2,999 times, is no longer carried, but every
    // Einsum still knows its own filter.
    let last = c.einsum_ids().last().unwrap();
    assert!(!plan.placement(last).space.guard.is_empty());
    assert!(dnfs[last.index()].iter().all(|conj| !conj.is_empty()));
}

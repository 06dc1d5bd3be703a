//! The interpreter's EDGE semantics on small hand-checked cascades: merge ops on absent
//! operands, filters, reductions over present points, the `-inf` and `0/0` rules, and errors.

use std::collections::BTreeMap;

use cascade_ir::eval::{EvalError, Evaluation, evaluate};
use cascade_ir::{Cascade, Shape, dsl};
use ndarray::{ArrayD, IxDyn};

fn parse(source: &str) -> Cascade {
    match dsl::parse(source, "test.cascade") {
        Ok(p) => p.cascade,
        Err(d) => panic!("{}", d.render(source, "test.cascade", false)),
    }
}

fn run(
    source: &str,
    spec: &str,
    inputs: &[(&str, Vec<f64>)],
) -> Result<Evaluation<f64>, EvalError> {
    let c = parse(source);
    let shape = Shape::resolve(&c, &spec.parse().expect("spec")).expect("shape");
    let inputs: BTreeMap<String, ArrayD<f64>> = inputs
        .iter()
        .map(|(name, values)| {
            let id = c.tensor_by_name(name).expect("declared input");
            let dims: Vec<usize> = c
                .tensor(id)
                .ranks
                .iter()
                .map(|r| shape.size(*r) as usize)
                .collect();
            let array = ArrayD::from_shape_vec(IxDyn(&dims), values.clone()).expect("dims");
            (name.to_string(), array)
        })
        .collect();
    evaluate(&c, &shape, &inputs)
}

/// The tensor as `Some(value)` / `None` (absent) per point, row-major.
fn points(ev: &Evaluation<f64>, name: &str) -> Vec<Option<f64>> {
    let t = ev.tensor(name).expect("tensor");
    t.values
        .iter()
        .zip(t.present.iter())
        .map(|(v, p)| p.then_some(*v))
        .collect()
}

const MERGES: &str = "
cascade merges
ranks I
input A[I] B[I]
FA[i] = A[i : i < 2]
FB[i] = B[i : i >= 1]
U[i]  = FA[i] - FB[i]
N[i]  = FA[i] * FB[i]
R[i]  = FA[i] / FB[i]
L[i]  = FA[i] +{1} FB[i]
X[i]  = max(FA[i], FB[i])
output U
";

#[test]
fn merge_ops_on_absent_operands() {
    // FA = [1, 2, ∅], FB = [∅, 20, 30].
    let ev = run(
        MERGES,
        "I=3",
        &[("A", vec![1.0, 2.0, 3.0]), ("B", vec![10.0, 20.0, 30.0])],
    )
    .expect("evaluates");
    assert_eq!(points(&ev, "FA"), [Some(1.0), Some(2.0), None]);
    assert_eq!(points(&ev, "FB"), [None, Some(20.0), Some(30.0)]);
    // ∪: a lone operand passes through, `∅ - b = -b`.
    assert_eq!(points(&ev, "U"), [Some(1.0), Some(-18.0), Some(-30.0)]);
    // ∩: both present.
    assert_eq!(points(&ev, "N"), [None, Some(40.0), None]);
    // ←: where the right operand is present; an absent left is 0.
    assert_eq!(points(&ev, "R"), [None, Some(0.1), Some(0.0)]);
    // 1: everywhere, absent counts as 0.
    assert_eq!(points(&ev, "L"), [Some(1.0), Some(22.0), Some(30.0)]);
    assert_eq!(points(&ev, "X"), [Some(1.0), Some(20.0), Some(30.0)]);
}

#[test]
fn reductions_combine_present_points_and_empty_fibers_stay_absent() {
    let src = "
cascade reduce
ranks I J
input A[I,J]
S[i] = A[i, j : j <= i - 1]
M[i] = max(j) A[i, j : j >= i]
P[i] = prod(j) A[i, j]
output S
";
    // A = [[1, 2], [3, 4]]: row 0 sees no j <= -1.
    let ev = run(src, "I=2,J=2", &[("A", vec![1.0, 2.0, 3.0, 4.0])]).expect("evaluates");
    assert_eq!(points(&ev, "S"), [None, Some(3.0)]);
    assert_eq!(points(&ev, "M"), [Some(2.0), Some(4.0)]);
    assert_eq!(points(&ev, "P"), [Some(2.0), Some(12.0)]);
}

#[test]
fn neg_inf_minus_neg_inf_exponentiates_to_zero_and_zero_over_zero_is_zero() {
    let src = "
cascade neginf
ranks I
input A[I]
N[i] = -inf
Z[i] = exp(N[i] - N[i])
D[i] = Z[i] / Z[i]
G[i] = exp(N[i] - A[i])
H[i] = exp((N[i] - N[i]))
output D
";
    let ev = run(src, "I=2", &[("A", vec![f64::NEG_INFINITY, 1.0])]).expect("evaluates");
    assert_eq!(points(&ev, "Z"), [Some(0.0), Some(0.0)]);
    assert_eq!(points(&ev, "D"), [Some(0.0), Some(0.0)]);
    assert_eq!(points(&ev, "G"), [Some(0.0), Some(0.0)]);
    // The same rule for an `exp` of a subtraction written as two actions.
    assert_eq!(points(&ev, "H"), [Some(0.0), Some(0.0)]);
}

#[test]
fn splits_read_through_index_arithmetic() {
    let src = "
cascade split
ranks M
split M -> M1 M0
input A[M]
B[m1,m0] = A[m1*M0+m0]
T[m1]    = B[m1,m0]
output T
";
    let ev = run(
        src,
        "M=6,M0=3",
        &[("A", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])],
    )
    .expect("evaluates");
    assert_eq!(points(&ev, "T"), [Some(6.0), Some(15.0)]);
}

#[test]
fn missing_and_misshapen_inputs_are_named() {
    let err = run(MERGES, "I=3", &[("A", vec![1.0, 2.0, 3.0])]).expect_err("B missing");
    assert_eq!(
        err,
        EvalError::MissingInput {
            tensor: "B".into(),
            expected: vec![3]
        }
    );
    let c = parse(MERGES);
    let shape = Shape::resolve(&c, &"I=3".parse().expect("spec")).expect("shape");
    let mut inputs = BTreeMap::new();
    inputs.insert("A".to_string(), ArrayD::<f64>::zeros(IxDyn(&[3])));
    inputs.insert("B".to_string(), ArrayD::<f64>::zeros(IxDyn(&[2])));
    let err = evaluate(&c, &shape, &inputs).expect_err("B misshapen");
    assert_eq!(
        err,
        EvalError::InputShape {
            tensor: "B".into(),
            expected: vec![3],
            found: vec![2]
        }
    );
    inputs.insert("B".to_string(), ArrayD::<f64>::zeros(IxDyn(&[3])));
    inputs.insert("C".to_string(), ArrayD::<f64>::zeros(IxDyn(&[3])));
    let err = evaluate(&c, &shape, &inputs).expect_err("C unknown");
    assert!(err.to_string().contains("C is not an input"), "{err}");
}

#[test]
fn out_of_bounds_index_arithmetic_is_an_error_unless_filtered() {
    let src = "
cascade shift
ranks I
input A[I]
B[i] = A[i+1]
output B
";
    let err = run(src, "I=3", &[("A", vec![1.0, 2.0, 3.0])]).expect_err("reads A[3]");
    match &err {
        EvalError::IndexOutOfBounds {
            einsum,
            tensor,
            index,
            extent,
            point,
            ..
        } => {
            assert_eq!(
                (einsum.as_str(), tensor.as_str()),
                ("Einsum 1 (writing B)", "A")
            );
            assert_eq!((*index, *extent, point.as_str()), (3, 3, "i=2"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let guarded = src.replace("A[i+1]", "A[i+1 : i+1 < I]");
    let ev = run(&guarded, "I=3", &[("A", vec![1.0, 2.0, 3.0])]).expect("filtered");
    assert_eq!(points(&ev, "B"), [Some(2.0), Some(3.0), None]);
}

#[test]
fn a_stop_condition_that_never_holds_is_an_error() {
    let src = "
cascade runaway
ranks K
input A[K]
init
R[0] = 0
einsums
R[k+1] = R[k] + A[k]
Z      = R[K]
stop k >= K + 1
output Z
";
    let err = run(src, "K=2", &[("A", vec![1.0, 2.0])]).expect_err("never stops");
    assert_eq!(
        err,
        EvalError::StopNeverReached {
            rank: "K".into(),
            var: "k".into(),
            limit: 2
        }
    );
    let fixed = src.replace("K + 1", "K");
    let ev = run(&fixed, "K=2", &[("A", vec![1.0, 2.0])]).expect("stops at K");
    assert_eq!(points(&ev, "Z"), [Some(3.0)]);
    assert_eq!(points(&ev, "R"), [None, Some(1.0), Some(3.0)]);
}

#[test]
fn einsums_among_the_loop_run_before_or_after_it_by_what_they_read() {
    // S reads no loop state, so it runs before the loop that uses it; Z reads the final state,
    // so it runs after the loop although it is written between loop Einsums.
    let src = "
cascade order
ranks K
input A[K] C
init
R[0] = 0
T[0] = 0
einsums
R[k+1] = R[k] + A[k]
S      = C * 2
Z      = R[K]
T[k+1] = T[k] + A[k] * S
stop k >= K
output Z T
";
    let ev = run(src, "K=2", &[("A", vec![1.0, 2.0]), ("C", vec![3.0])]).expect("evaluates");
    assert_eq!(points(&ev, "S"), [Some(6.0)]);
    assert_eq!(points(&ev, "Z"), [Some(3.0)]);
    assert_eq!(points(&ev, "T"), [None, Some(6.0), Some(18.0)]);
}

#[test]
fn shapes_beyond_the_point_limit_are_an_error_not_an_allocation_failure() {
    let c = parse("cascade big\nranks I J\ninput A[I]\nB[i,j] = A[i]\noutput B\n");
    let shape = Shape::resolve(&c, &"I=65536,J=65536".parse().expect("spec")).expect("shape");
    let err = evaluate::<f64>(&c, &shape, &BTreeMap::new()).expect_err("too large");
    assert_eq!(
        err,
        EvalError::TooLarge {
            tensor: "B".into(),
            limit: cascade_ir::eval::MAX_POINTS
        }
    );
}

#[test]
fn products_of_index_variables_are_rejected_by_name() {
    let src = "cascade square\nranks I\ninput A[I]\nB[i] = A[i*i : i*i < I]\noutput B\n";
    let err = run(src, "I=4", &[("A", vec![1.0, 2.0, 3.0, 4.0])]).expect_err("not affine");
    assert_eq!(
        err,
        EvalError::NonAffineIndex {
            einsum: "Einsum 1 (writing B)".into(),
            tensor: "A".into(),
            position: 0
        }
    );
}

#[test]
fn an_index_literal_near_i64_max_is_an_error_not_a_skipped_bounds_check() {
    let src = "cascade far\nranks I\ninput A[I]\nB[i] = A[i + 9223372036854775807]\noutput B\n";
    let err = run(src, "I=4", &[("A", vec![1.0, 2.0, 3.0, 4.0])]).expect_err("overflows");
    assert!(
        matches!(&err, EvalError::IndexOverflow { einsum, .. } if einsum == "Einsum 1 (writing B)"),
        "{err:?}"
    );
    // Literals that cancel are fine: the index is `i` again.
    let src = "cascade near\nranks I\ninput A[I]\nB[i] = A[i + 9223372036854775807 - 9223372036854775807]\noutput B\n";
    let ev = run(src, "I=2", &[("A", vec![1.0, 2.0])]).expect("evaluates");
    assert_eq!(points(&ev, "B"), [Some(1.0), Some(2.0)]);
}

#[test]
fn a_stop_condition_that_overflows_is_an_error() {
    let src = "cascade s\nranks K\ninput A[K]\ninit\nS[0] = 0\neinsums\nS[k+1] = S[k] + A[k]\nZ = S[K]\nstop k * 9223372036854775807 >= 9223372036854775807 * 9223372036854775807\noutput Z\n";
    let err = run(src, "K=2", &[("A", vec![1.0, 2.0])]).expect_err("overflows");
    assert!(matches!(err, EvalError::IndexOverflow { .. }), "{err:?}");
}

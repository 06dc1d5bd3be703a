//! Pass counts of the library on rank M (K for the pedagogical cascades), as in the FuseMax
//! taxonomy, and the barriers that explain them.

use cascade_ir::passes::{Live, passes};
use cascade_ir::{Cascade, dsl, library};

fn load(name: &str) -> Cascade {
    dsl::parse(library::source(name).expect("library name"), name)
        .expect("parses")
        .cascade
}

fn count(name: &str, rank: &str) -> u32 {
    let c = load(name);
    passes(&c, c.rank_by_name(rank).expect("rank")).passes
}

#[test]
fn library_pass_counts_follow_the_taxonomy() {
    let expected = [
        ("pedagogical_1", "K", 2),
        ("pedagogical_2", "K", 1),
        ("pedagogical_3", "K", 1),
        ("attention_3pass", "M", 3),
        ("attention_2pass_deferred", "M", 2),
        ("attention_2pass_localmax", "M", 2),
        ("attention_1pass", "M", 1),
        ("attention_causal_1pass", "M", 1),
        ("attention_window_3pass", "M", 3),
        ("attention_masked_3pass", "M", 3),
        ("attention_masked_1pass", "M", 1),
        ("sigmoid_attention", "M", 1),
        ("linear_attention", "M", 1),
    ];
    for (name, rank, n) in expected {
        assert_eq!(count(name, rank), n, "{name} over {rank}");
    }
    assert_eq!(
        expected.len(),
        library::names().count(),
        "every library cascade is listed"
    );
}

#[test]
fn other_ranks_take_one_pass() {
    for rank in ["E", "F", "P"] {
        assert_eq!(
            count("attention_3pass", rank),
            1,
            "attention_3pass over {rank}"
        );
    }
    // Over the tile rank M0 alone, LM must finish a tile before SLN re-reads its scores: two
    // passes over M0 (the tile is buffered), while M as a whole needs one.
    assert_eq!(count("attention_1pass", "M0"), 2);
    assert_eq!(count("attention_1pass", "M1"), 1);
}

#[test]
fn barriers_name_the_reduction_and_the_re_read() {
    let c = load("attention_3pass");
    let report = passes(&c, c.rank_by_name("M").expect("M"));
    let lines: Vec<String> = report.barriers.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "GM reduces M fully (pass 1) before SN re-reads QK (pass 2)",
            "SD reduces M fully (pass 2) before A re-reads SN (pass 3)",
        ]
    );
    let c = load("attention_2pass_localmax");
    let report = passes(&c, c.rank_by_name("M").expect("M"));
    assert_eq!(report.barriers.len(), 1);
    assert_eq!(
        report.barriers[0].to_string(),
        "GM reduces M1 fully (pass 1) before PRM re-reads LM (pass 2)"
    );
}

#[test]
fn buffered_tensors_are_those_read_across_a_barrier() {
    let c = load("attention_3pass");
    let report = passes(&c, c.rank_by_name("M").expect("M"));
    let buffered: Vec<&str> = report
        .footprints
        .iter()
        .filter(|f| matches!(f.live, Live::Buffered { .. }))
        .map(|f| f.tensor.as_str())
        .collect();
    assert_eq!(buffered, ["QK", "SN"]);
    let c = load("attention_1pass");
    let report = passes(&c, c.rank_by_name("M").expect("M"));
    assert!(
        report
            .footprints
            .iter()
            .all(|f| !matches!(f.live, Live::Buffered { .. }))
    );
}

#[test]
fn op_counts_are_polynomials_of_the_rank_sizes() {
    let c = load("attention_3pass");
    let report = passes(&c, c.rank_by_name("M").expect("M"));
    let totals: Vec<String> = report
        .totals
        .iter()
        .map(|(k, p)| format!("{k}: {}", p.display(&c)))
        .collect();
    // QK and AV are MACs over E·M·P and F·M·P; SN subtracts and exponentiates per score;
    // SD adds per score; GM takes a max per score; A divides per score.
    assert_eq!(
        totals,
        [
            "mac: E·M·P + F·M·P",
            "add: 2·M·P",
            "max: M·P",
            "exp: M·P",
            "div: M·P"
        ]
    );
    let spec = "E=64,F=64,M=1024,P=1024".parse().expect("spec");
    let shape = cascade_ir::Shape::resolve(&c, &spec).expect("shape");
    let mac = &report.totals[&cascade_ir::ops::OpKind::Mac];
    assert_eq!(mac.eval(&shape), 2 * 64 * 1024 * 1024);
}

/// Found by the rewriter's random-term property test: an Einsum that traverses M and reads an
/// iterative state at its last step (`RS[f,M1,p]`) must wait for the whole loop over M.
#[test]
fn reading_a_final_state_while_traversing_the_rank_is_a_barrier() {
    let source = "\
cascade final_state_reread
ranks F M P
split M -> M1 M0
input X[M,P] V[F,M]
init
RS[f,0,p] = 0
BV[f,m1,m0] = V[f,m1*M0+m0]
einsums
RS[f,m1+1,p] = RS[f,m1,p] + BV[f,m1,m0]
OUT[f,m,p] = X[m,p] + RS[f,M1,p]
stop m1 >= M1
output OUT
";
    let c = dsl::parse(source, "final_state.cascade")
        .expect("parses")
        .cascade;
    let report = passes(&c, c.rank_by_name("M").expect("rank M"));
    assert_eq!(report.passes, 2);
    let barrier = report.barriers[0].to_string();
    assert!(
        barrier.starts_with("RS is final only after its last step (pass 1) before OUT re-reads X"),
        "{barrier}"
    );
}

/// A split's second variable is part of its rank's family and of its size: the chunk's keys
/// `n0` beside its queries `m0` are one pass over M, and `M1·N0` reads as `M`.
#[test]
fn a_second_inner_variable_counts_in_the_rank_it_splits() {
    let src = "cascade chunks\nranks E M\nsplit M -> M1 M0 N0\ninput Q[E,M] K[E,M]\n\
               KT[e,m1,n0] = exp(K[e, m1*M0+n0])\n\
               SC[m1,m0,n0] = Q[e, m1*M0+m0] * KT[e,m1,n0 : n0 <= m0]\noutput SC\n";
    let c = dsl::check(src, "chunks").expect("verifies").cascade;
    let report = passes(&c, c.rank_by_name("M").expect("M"));
    assert_eq!(report.passes, 1);
    let totals: Vec<String> = report
        .totals
        .iter()
        .map(|(k, p)| format!("{k}: {}", p.display(&c)))
        .collect();
    // SC multiplies per (e, m1, m0, n0): E·M1·M0·N0 = E·M·N0; KT exponentiates per
    // (e, m1, n0): E·M1·N0 = E·M, since |N0| = |M0|.
    assert_eq!(totals, ["mac: E·M·N0", "exp: E·M"]);
    // At M=12, M0=4 (so N0=4, M1=3) with E=2: 2·12·4 = 96 multiply-adds.
    let shape =
        cascade_ir::Shape::resolve(&c, &"E=2,M=12,M0=4".parse().expect("spec")).expect("shape");
    let mac = &report.totals[&cascade_ir::ops::OpKind::Mac];
    assert_eq!(mac.eval(&shape), 96);
}

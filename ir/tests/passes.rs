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

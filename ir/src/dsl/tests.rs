//! Unit tests of the parser and printer on small sources and on the library.

use super::*;
use crate::ast::*;
use crate::library;

fn parse_ok(src: &str) -> Cascade {
    match parse(src, "t.cascade") {
        Ok(p) => p.cascade,
        Err(d) => panic!("{}", d.render(src, "t.cascade", false)),
    }
}

fn parse_err(src: &str) -> Vec<String> {
    match parse(src, "t.cascade") {
        Ok(p) => panic!("parsed: {:?}", p.cascade),
        Err(d) => d.iter().map(|d| d.message.clone()).collect(),
    }
}

#[test]
fn every_library_file_parses_and_round_trips() {
    for (name, src) in library::FILES {
        let parsed = match parse(src, name) {
            Ok(p) => p,
            Err(d) => panic!("{name}:\n{}", d.render(src, name, false)),
        };
        assert_eq!(parsed.cascade.name, *name, "header names the file");
        let printed = print(&parsed.cascade);
        let again = parse_ok(&printed);
        assert_eq!(again, parsed.cascade, "{name} round trip:\n{printed}");
        assert_eq!(print(&again), printed, "{name}: printing is idempotent");
    }
}

#[test]
fn infers_intermediate_ranks_from_writes() {
    let c = parse_ok(library::source("attention_1pass").unwrap());
    let ranks = |t: &str| -> Vec<String> {
        let t = c.tensor(c.tensor_by_name(t).unwrap());
        t.ranks.iter().map(|r| c.rank(*r).name.clone()).collect()
    };
    assert_eq!(ranks("RM"), ["M1", "P"]);
    assert_eq!(ranks("RNV"), ["F", "M1", "P"]);
    assert_eq!(ranks("BK"), ["E", "M1", "M0"]);
    assert_eq!(ranks("AV"), ["F", "P"]);
    let m = c.rank_by_name("M").unwrap();
    let (m1, m0) = c.rank(m).split.unwrap();
    assert_eq!(
        (c.rank(m1).name.as_str(), c.rank(m0).name.as_str()),
        ("M1", "M0")
    );
    assert_eq!(c.iterative_ranks(), vec![m1]);
    assert_eq!(
        c.einsums
            .iter()
            .filter(|e| e.section == Section::Init)
            .count(),
        5
    );
}

#[test]
fn reductions_sub_exp_and_constants() {
    let c = parse_ok(
        "cascade t\nranks M P E\ninput A[M,P]\nX[p] = max(m) A[m,p]\nY[m,p] = exp(A[m,p] - X[p])\n\
         Z[m,p] = exp((A[m,p] - X[p])) * 1/sqrt(E) + -inf\noutput Y Z\n",
    );
    let root = |i: usize| c.expr(c.einsums[i].value).clone();
    assert_eq!(
        c.einsums[0].reduction,
        Some(Reduction {
            op: ReduceOp::Max,
            ranks: vec![RankId(0)]
        })
    );
    assert!(matches!(
        root(1),
        Expr::Binary {
            op: BinaryOp::SubExp,
            merge: Merge::Intersect,
            ..
        }
    ));
    let Expr::Binary {
        op: BinaryOp::Add,
        lhs,
        rhs,
        ..
    } = root(2)
    else {
        panic!("{:?}", root(2))
    };
    assert_eq!(c.expr(rhs), &Expr::Const(Constant::NegInf));
    let Expr::Binary {
        op: BinaryOp::Mul,
        lhs,
        rhs,
        ..
    } = c.expr(lhs).clone()
    else {
        panic!()
    };
    assert_eq!(c.expr(rhs), &Expr::Const(Constant::InvSqrtSize(RankId(2))));
    assert!(matches!(c.expr(lhs), Expr::Unary(UnaryOp::Exp, _)));
}

#[test]
fn merges_and_binary_max_parse() {
    let c = parse_ok(
        "cascade t\nranks K\ninput A[K] B[K]\nX[k] = A[k] /{<-} B[k] +{1} max{&}(A[k], B[k])\nY[k] = exp{1}(A[k] - B[k])\noutput X Y\n",
    );
    let Expr::Binary {
        op,
        merge,
        lhs,
        rhs,
    } = c.expr(c.einsums[0].value).clone()
    else {
        panic!()
    };
    assert_eq!((op, merge), (BinaryOp::Add, Merge::All));
    assert!(matches!(
        c.expr(lhs),
        Expr::Binary {
            op: BinaryOp::Div,
            merge: Merge::Right,
            ..
        }
    ));
    assert!(matches!(
        c.expr(rhs),
        Expr::Binary {
            op: BinaryOp::Max,
            merge: Merge::Intersect,
            ..
        }
    ));
    assert!(matches!(
        c.expr(c.einsums[1].value),
        Expr::Binary {
            op: BinaryOp::SubExp,
            merge: Merge::All,
            ..
        }
    ));
}

#[test]
fn filters_attach_to_positions() {
    let c = parse_ok(library::source("attention_window_3pass").unwrap());
    let a = c.accesses(c.einsums[0].value)[1].clone();
    assert_eq!(a.filters.len(), 1);
    assert_eq!(a.filters[0].position, 1);
    assert_eq!(a.filters[0].conds.len(), 2);
    assert_eq!(a.filters[0].conds[1].op, CompareOp::Lt);
}

#[test]
fn reports_every_broken_line() {
    let msgs =
        parse_err("cascade t\nranks M\ninput A[M]\nX[q] = A[m]\nY[m] = A[m] +\nZ[m] = B[Q]\n");
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(
        msgs[0].contains("`q` is not the index variable"),
        "{msgs:?}"
    );
    assert!(msgs[1].contains("expected an operand"), "{msgs:?}");
    assert!(msgs[2].contains("rank `Q` is not declared"), "{msgs:?}");
}

#[test]
fn unknown_rank_hint_lists_declared_ranks() {
    let src = "cascade t\nranks E F\ninput Q[E,X]\n";
    let d = parse(src, "t.cascade").unwrap_err();
    assert_eq!(d.0[0].hint, "declare it in `ranks` or use one of E F");
    assert_eq!(&src[d.0[0].span.clone()], "X");
}

#[test]
fn rejects_reserved_and_rank_names_as_tensors() {
    assert!(parse_err("cascade t\nranks M\nexp[m] = 1\n")[0].contains("reserved"));
    assert!(parse_err("cascade t\nranks M\nM[m] = 1\n")[0].contains("is a rank"));
}

#[test]
fn missing_header_and_misplaced_sections() {
    assert!(parse_err("ranks M\n")[0].contains("missing `cascade NAME`"));
    assert!(parse_err("")[0].contains("missing `cascade NAME`"));
    let msgs = parse_err("cascade t\nranks M\ninput A[M]\nX[m] = A[m]\ninit\noutput X\n");
    assert!(msgs[0].contains("`init` section out of place"), "{msgs:?}");
    let msgs = parse_err("cascade t\nranks M\noutput X\nX[m] = 1\n");
    assert!(msgs[0].contains("Einsum after"), "{msgs:?}");
}

#[test]
fn spans_point_at_einsums_and_accesses() {
    let src = "cascade t\nranks M\ninput A[M]\nX[m] = A[m] * 2\noutput X\n";
    let p = parse(src, "t").unwrap();
    assert_eq!(&src[p.spans.einsums[0].clone()], "X[m] = A[m] * 2");
    let acc: Vec<&str> = p.spans.accesses[0]
        .iter()
        .map(|s| &src[s.clone()])
        .collect();
    assert_eq!(acc, ["X[m]", "A[m]"]);
    assert_eq!(&src[p.spans.tensors[1].clone()], "X[m]");
    assert_eq!(&src[p.spans.ranks[0].clone()], "M");
    assert_eq!(&src[p.spans.outputs[0].clone()], "X");
}

#[test]
fn prints_pedagogical_3_normalised() {
    let c = parse_ok(library::source("pedagogical_3").unwrap());
    let expected = "cascade pedagogical_3\nranks K\ninput A[K] B[K]\n\ninit\nRY[0] = 0\nRZ[0] = 0\n\neinsums\nRY[k+1] = RY[k] + A[k] * B[k]\nRZ[k+1] = RZ[k] * RY[k+1] / RY[k] + RY[k+1] * A[k]\nZ       = RZ[K]\n\nstop k >= K\noutput Z\n";
    assert_eq!(print(&c), expected);
}

#[test]
fn a_split_names_a_second_variable_over_its_inner_rank() {
    let src = "cascade t\nranks E M\nsplit M -> M1 M0 N0\ninput A[E,M]\n\
               S[m1,m0,n0] = A[e, m1*M0+m0] * A[e, m1*M0+n0 : n0 <= m0]\noutput S\n";
    let c = parse_ok(src);
    let id = |n: &str| c.rank_by_name(n).unwrap();
    assert_eq!(c.rank(id("M")).split, Some((id("M1"), id("M0"))));
    assert_eq!(c.rank(id("N0")).range_of, Some(id("M0")));
    assert_eq!(c.second_variable(id("M0")), Some(id("N0")));
    // `m1*M0+n0` walks M as `m1*M0+m0` does: the verifier accepts the read of A[E,M].
    assert!(crate::verify::verify(&c).is_empty());
    let printed = print(&c);
    assert!(printed.contains("split M -> M1 M0 N0\n"), "{printed}");
    assert_eq!(parse_ok(&printed), c, "round trip:\n{printed}");
}

#[test]
fn a_second_inner_variable_needs_a_name_of_its_own() {
    let base =
        |split: &str| format!("cascade t\nranks M\n{split}\ninput A[M]\nB[m] = A[m]\noutput B\n");
    assert_eq!(
        parse_err(&base("split M -> M1 M0 M0")),
        ["the second inner variable needs a rank name of its own"]
    );
    assert_eq!(
        parse_err(&base("split M -> M1 M0 M")),
        ["rank `M` is declared twice"]
    );
    assert_eq!(parse_err(&base("split M -> M1 M0 N0 K0")).len(), 1);
}

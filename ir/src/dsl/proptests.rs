//! Property tests: the printer round-trips random valid cascades and the library, and the
//! parser never panics on random text or on mutations of library files.

use proptest::prelude::*;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::ast::*;
use crate::library;

/// Builds a random cascade in the order the parser would build it from its printed text:
/// tensors interned at first mention (output, then operands left to right), expression nodes
/// pushed children first.
struct Gen {
    rng: ChaCha8Rng,
    c: Cascade,
}

const MERGES: [Merge; 4] = [Merge::Intersect, Merge::Union, Merge::Right, Merge::All];
const BINARY: [BinaryOp; crate::ops::BINARY.len()] = {
    let mut ops = [BinaryOp::Add; crate::ops::BINARY.len()];
    let mut i = 0;
    while i < ops.len() {
        ops[i] = crate::ops::BINARY[i].op;
        i += 1;
    }
    ops
};
const UNARY: [UnaryOp; crate::ops::UNARY.len()] = {
    let mut ops = [UnaryOp::Exp; crate::ops::UNARY.len()];
    let mut i = 0;
    while i < ops.len() {
        ops[i] = crate::ops::UNARY[i].op;
        i += 1;
    }
    ops
};
const NUMBERS: [f64; 9] = [0.0, 1.0, 2.0, -3.0, 0.5, 1e-7, 1e20, -2.5e-9, f64::INFINITY];
const COMPARES: [CompareOp; 6] = [
    CompareOp::Lt,
    CompareOp::Le,
    CompareOp::Gt,
    CompareOp::Ge,
    CompareOp::Eq,
    CompareOp::Ne,
];

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            c: Cascade {
                name: format!("gen_{}", seed % 1000),
                ranks: Vec::new(),
                tensors: Vec::new(),
                exprs: Vec::new(),
                einsums: Vec::new(),
                outputs: Vec::new(),
                stop: None,
            },
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *items.choose(&mut self.rng).expect("non-empty")
    }

    fn add_rank(&mut self, name: &str, is_param: bool) -> RankId {
        self.c.ranks.push(Rank {
            name: name.to_string(),
            split: None,
            range_of: None,
            is_param,
        });
        RankId(self.c.ranks.len() as u32 - 1)
    }

    /// Ranks a tensor may have (not parameters).
    fn iterable(&self) -> Vec<RankId> {
        (0..self.c.ranks.len())
            .filter(|i| !self.c.ranks[*i].is_param)
            .map(|i| RankId(i as u32))
            .collect()
    }

    fn declare(&mut self) {
        let pool = ["E", "F", "M", "P", "K", "N"];
        let n = self.rng.random_range(1..=4);
        for name in &pool[..n] {
            self.add_rank(name, false);
        }
        if self.chance(0.5) {
            let parent = RankId(self.rng.random_range(0..n) as u32);
            let name = self.c.rank(parent).name.clone();
            let o = self.add_rank(&format!("{name}1"), false);
            let i = self.add_rank(&format!("{name}0"), false);
            self.c.ranks[parent.index()].split = Some((o, i));
            if self.chance(0.5) {
                // A second variable over the inner rank (`split M -> M1 M0 M2`).
                let second = self.add_rank(&format!("{name}2"), false);
                self.c.ranks[second.index()].range_of = Some(i);
            }
        }
        if self.chance(0.3) {
            self.add_rank("W", true);
            if self.chance(0.5) {
                self.add_rank("Z", false);
            }
        }
        let n_inputs = self.rng.random_range(1..=3);
        for i in 0..n_inputs {
            let ranks = self.some_ranks(2);
            self.c.tensors.push(Tensor {
                name: format!("I{i}"),
                kind: TensorKind::Input,
                ranks,
            });
        }
    }

    fn some_ranks(&mut self, max: usize) -> Vec<RankId> {
        let mut all = self.iterable();
        let n = self.rng.random_range(0..=max.min(all.len()));
        let mut out = Vec::new();
        for _ in 0..n {
            let k = self.rng.random_range(0..all.len());
            out.push(all.remove(k));
        }
        out
    }

    fn tensor(&mut self, name: String, ranks: Vec<RankId>) -> TensorId {
        self.c.tensors.push(Tensor {
            name,
            kind: TensorKind::Intermediate,
            ranks,
        });
        TensorId(self.c.tensors.len() as u32 - 1)
    }

    fn push(&mut self, e: Expr) -> ExprId {
        self.c.exprs.push(e);
        ExprId(self.c.exprs.len() as u32 - 1)
    }

    fn small_index(&mut self) -> IndexExpr {
        let ranks: Vec<RankId> = (0..self.c.ranks.len()).map(|i| RankId(i as u32)).collect();
        let r = self.pick(&ranks);
        let var_ok = !self.c.rank(r).is_param;
        match self.rng.random_range(0..5) {
            0 if var_ok => IndexExpr::Var(r),
            1 => IndexExpr::Size(r),
            2 => IndexExpr::Lit(self.rng.random_range(-3..10)),
            3 if var_ok => {
                IndexExpr::Sub(Box::new(IndexExpr::Size(r)), Box::new(IndexExpr::Var(r)))
            }
            _ => IndexExpr::Mul(
                Box::new(IndexExpr::Lit(2)),
                Box::new(IndexExpr::Add(
                    Box::new(IndexExpr::Size(r)),
                    Box::new(IndexExpr::Lit(-1)),
                )),
            ),
        }
    }

    /// An index at a position of rank `r`: its variable, a shift, a literal, its size, or the
    /// split pattern when `r` is split.
    fn index_for(&mut self, r: RankId) -> IndexExpr {
        match self.rng.random_range(0..6) {
            0 => IndexExpr::Lit(self.rng.random_range(0..3)),
            1 => IndexExpr::Size(r),
            2 => IndexExpr::Add(
                Box::new(IndexExpr::Var(r)),
                Box::new(IndexExpr::Lit(self.rng.random_range(1..3))),
            ),
            3 => match self.c.rank(r).split {
                Some((o, i)) => {
                    // The inner variable or, where the split has one, its second variable.
                    let parts = self.c.inner_parts(i);
                    let v = self.pick(&parts);
                    IndexExpr::Add(
                        Box::new(IndexExpr::Mul(
                            Box::new(IndexExpr::Var(o)),
                            Box::new(IndexExpr::Size(i)),
                        )),
                        Box::new(IndexExpr::Var(v)),
                    )
                }
                None => IndexExpr::Var(r),
            },
            _ => IndexExpr::Var(r),
        }
    }

    fn read(&mut self, written: &[TensorId]) -> ExprId {
        let t = self.pick(written);
        let ranks = self.c.tensor(t).ranks.clone();
        let indices: Vec<IndexExpr> = ranks.iter().map(|r| self.index_for(*r)).collect();
        let mut filters = Vec::new();
        for position in 0..indices.len() {
            if self.chance(0.2) {
                let n = self.rng.random_range(1..=2);
                let conds = (0..n)
                    .map(|_| Compare {
                        lhs: self.small_index(),
                        op: self.pick(&COMPARES),
                        rhs: self.small_index(),
                    })
                    .collect();
                filters.push(Filter { position, conds });
            }
        }
        self.push(Expr::Access(Access {
            tensor: t,
            indices,
            filters,
        }))
    }

    fn value(&mut self, written: &[TensorId], depth: u32) -> ExprId {
        let leaf = depth == 0 || self.chance(0.3);
        if leaf {
            return match self.rng.random_range(0..6) {
                0 => {
                    let k = self.pick(&NUMBERS);
                    self.push(Expr::Const(Constant::Num(k)))
                }
                1 => self.push(Expr::Const(Constant::NegInf)),
                2 => {
                    let r = RankId(self.rng.random_range(0..self.c.ranks.len()) as u32);
                    self.push(Expr::Const(Constant::InvSqrtSize(r)))
                }
                _ => self.read(written),
            };
        }
        if self.chance(0.3) {
            let op = self.pick(&UNARY);
            let arg = self.value(written, depth - 1);
            return self.push(Expr::Unary(op, arg));
        }
        let op = self.pick(&BINARY);
        let merge = if self.chance(0.5) {
            op.default_merge()
        } else {
            self.pick(&MERGES)
        };
        let lhs = self.value(written, depth - 1);
        let rhs = self.value(written, depth - 1);
        self.push(Expr::Binary {
            op,
            merge,
            lhs,
            rhs,
        })
    }

    fn einsum(&mut self, section: Section, output: Access, written: &[TensorId]) {
        let reduction = if self.chance(0.3) {
            let vars = self.iterable();
            let n = self.rng.random_range(1..=vars.len().min(2));
            let mut ranks = Vec::new();
            for _ in 0..n {
                let r = self.pick(&vars);
                if !ranks.contains(&r) {
                    ranks.push(r);
                }
            }
            let op = self.pick(&[ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod]);
            Some(Reduction { op, ranks })
        } else {
            None
        };
        let value = self.value(written, 3);
        self.c.einsums.push(Einsum {
            section,
            output,
            reduction,
            value,
        });
    }

    fn generate(mut self) -> Cascade {
        self.declare();
        let mut written: Vec<TensorId> = (0..self.c.tensors.len())
            .map(|i| TensorId(i as u32))
            .collect();
        // Iterative state: S[0,…] in init, S[r+1,…] = S[r,…] + … in the body.
        let state = if self.chance(0.4) {
            let vars = self.iterable();
            let r = self.pick(&vars);
            let mut ranks = vec![r];
            ranks.extend(self.some_ranks(1).into_iter().filter(|x| *x != r));
            let s = self.tensor("S".into(), ranks.clone());
            let mut init_idx = vec![IndexExpr::Lit(0)];
            init_idx.extend(ranks[1..].iter().map(|x| IndexExpr::Var(*x)));
            let zero = self.push(Expr::Const(Constant::Num(0.0)));
            self.c.einsums.push(Einsum {
                section: Section::Init,
                output: Access {
                    tensor: s,
                    indices: init_idx,
                    filters: Vec::new(),
                },
                reduction: None,
                value: zero,
            });
            written.push(s);
            Some((s, r, ranks))
        } else {
            None
        };
        let n_init = self.rng.random_range(0..=1);
        for i in 0..n_init.min(usize::from(state.is_some())) {
            let ranks = self.some_ranks(2);
            let t = self.tensor(format!("B{i}"), ranks.clone());
            let out = Access {
                tensor: t,
                indices: ranks.iter().map(|r| IndexExpr::Var(*r)).collect(),
                filters: Vec::new(),
            };
            self.einsum(Section::Init, out, &written);
            written.push(t);
        }
        if let Some((s, r, ranks)) = &state {
            let shifted = |k: i64| -> Vec<IndexExpr> {
                let mut idx = vec![if k == 0 {
                    IndexExpr::Var(*r)
                } else {
                    IndexExpr::Add(Box::new(IndexExpr::Var(*r)), Box::new(IndexExpr::Lit(k)))
                }];
                idx.extend(ranks[1..].iter().map(|x| IndexExpr::Var(*x)));
                idx
            };
            let out = Access {
                tensor: *s,
                indices: shifted(1),
                filters: Vec::new(),
            };
            let prev = self.push(Expr::Access(Access {
                tensor: *s,
                indices: shifted(0),
                filters: Vec::new(),
            }));
            let step = self.read(&written);
            let value = self.push(Expr::Binary {
                op: BinaryOp::Add,
                merge: Merge::Union,
                lhs: prev,
                rhs: step,
            });
            self.c.einsums.push(Einsum {
                section: Section::Body,
                output: out,
                reduction: None,
                value,
            });
            self.c.stop = Some(Compare {
                lhs: IndexExpr::Var(*r),
                op: CompareOp::Ge,
                rhs: IndexExpr::Size(*r),
            });
        }
        let n_body = self.rng.random_range(1..=5);
        for i in 0..n_body {
            let ranks = self.some_ranks(3);
            let t = self.tensor(format!("T{i}"), ranks.clone());
            let out = Access {
                tensor: t,
                indices: ranks.iter().map(|r| IndexExpr::Var(*r)).collect(),
                filters: Vec::new(),
            };
            self.einsum(Section::Body, out, &written);
            written.push(t);
        }
        if state.is_none() && self.chance(0.2) {
            let r = self.pick(&self.iterable());
            self.c.stop = Some(Compare {
                lhs: IndexExpr::Sub(Box::new(IndexExpr::Var(r)), Box::new(IndexExpr::Lit(1))),
                op: self.pick(&COMPARES),
                rhs: IndexExpr::Size(r),
            });
        }
        for t in written.into_iter().rev().take(2) {
            if self.c.tensor(t).kind == TensorKind::Intermediate && self.chance(0.7) {
                self.c.outputs.push(t);
            }
        }
        self.c
    }
}

fn round_trips(c: &Cascade) -> Result<(), TestCaseError> {
    let text = print(c);
    match parse(&text, "printed.cascade") {
        Ok(p) => {
            prop_assert_eq!(&p.cascade, c, "printed:\n{}", text);
            prop_assert_eq!(print(&p.cascade), text);
            Ok(())
        }
        Err(d) => Err(TestCaseError::fail(format!(
            "printed cascade does not parse:\n{text}\n{}",
            d.render(&text, "printed.cascade", false)
        ))),
    }
}

/// Parsing arbitrary text must not panic; what parses must round-trip and verify without
/// panicking, and errors must render.
fn total(text: &str) -> Result<(), TestCaseError> {
    match parse(text, "fuzz.cascade") {
        Ok(p) => {
            let _ = verify_diagnostics(&p).render(text, "fuzz.cascade", false);
            round_trips(&p.cascade)
        }
        Err(d) => {
            prop_assert!(!d.is_empty());
            let rendered = d.render(text, "fuzz.cascade", false);
            prop_assert!(rendered.contains("fuzz.cascade:"), "{}", rendered);
            Ok(())
        }
    }
}

fn library_source() -> impl Strategy<Value = String> {
    prop::sample::select(
        library::FILES
            .iter()
            .map(|(_, s)| s.to_string())
            .collect::<Vec<_>>(),
    )
}

/// Fragments worth splicing into a file: tokens of the language and some that are not.
const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    "=",
    "+",
    "-",
    "*",
    "/",
    "<=",
    "&&",
    "->",
    "{<-}",
    "{1}",
    "{",
    "}",
    "#",
    "\n",
    " ",
    "m",
    "M",
    "m1+1",
    "0",
    "-inf",
    "1/sqrt(E)",
    "exp",
    "max(m)",
    "init",
    "einsums",
    "stop",
    "output",
    "input",
    "ranks",
    "split",
    "param",
    "Q",
    "é",
    "∪",
    "1e999",
    "99999999999999999999",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    Swap(usize, usize),
    DupLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), prop::sample::select(FRAGMENTS))
            .prop_map(|(at, f)| Mutation::Insert(at, f)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        any::<usize>().prop_map(Mutation::DupLine),
    ]
}

fn apply(src: &str, m: &Mutation) -> String {
    let chars: Vec<char> = src.chars().collect();
    let n = chars.len().max(1);
    let mut out = chars.clone();
    match *m {
        Mutation::Delete(at, len) => {
            let at = at % n;
            let end = (at + len).min(out.len());
            out.drain(at.min(out.len())..end);
        }
        Mutation::Insert(at, frag) => {
            let at = at % (out.len() + 1);
            for (k, ch) in frag.chars().enumerate() {
                out.insert(at + k, ch);
            }
        }
        Mutation::Swap(a, b) => {
            if !out.is_empty() {
                let (a, b) = (a % out.len(), b % out.len());
                out.swap(a, b);
            }
        }
        Mutation::DupLine(k) => {
            let lines: Vec<&str> = src.lines().collect();
            if !lines.is_empty() {
                let line = lines[k % lines.len()];
                let mut text = src.to_string();
                text.push_str(line);
                text.push('\n');
                return text;
            }
        }
    }
    out.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_cascades_round_trip(seed in any::<u64>()) {
        let c = Gen::new(seed).generate();
        round_trips(&c)?;
        // Generated cascades need not be valid, but checking them must not panic.
        let _ = crate::verify::verify(&c);
    }

    #[test]
    fn parser_is_total_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        total(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn parser_is_total_on_token_soup(parts in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60)) {
        total(&parts.concat())?;
    }

    #[test]
    fn parser_is_total_on_mutated_library_files(
        src in library_source(),
        muts in prop::collection::vec(mutation(), 1..6),
    ) {
        let text = muts.iter().fold(src, |s, m| apply(&s, m));
        total(&text)?;
    }
}

#[test]
fn library_files_round_trip() {
    for (name, src) in library::FILES {
        let c = parse(src, name).unwrap().cascade;
        round_trips(&c).unwrap();
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let src = format!(
        "cascade t\nranks M\ninput A[M]\nX[m] = {}A[m]{}\n",
        "(".repeat(40),
        ")".repeat(40)
    );
    let d = parse(&src, "t").unwrap_err();
    assert!(d.0[0].message.contains("nested more than"), "{d}");
    let long = format!(
        "cascade t\nranks M\ninput A[M]\nX[m] = A[m]{}\n",
        " + A[m]".repeat(300)
    );
    let d = parse(&long, "t").unwrap_err();
    assert!(d.0[0].message.contains("tokens"), "{d}");
}

#[test]
fn generator_covers_the_grammar() {
    // The round-trip property is only as strong as the generator: check that it reaches
    // every construct across a fixed set of seeds.
    let texts: Vec<String> = (0..200).map(|s| print(&Gen::new(s).generate())).collect();
    let all = texts.concat();
    for needle in [
        "split ", "param W", "init\n", "stop ", "exp(", "exp{", "max(", "{<-}", "{1}", " : ",
        " && ", "1/sqrt(", "-inf", "inf", "e-7", "e20", "+1", "*", "sum(", "prod(", "elu1(", "-(",
        "[0", "0 M2\n",
    ] {
        assert!(
            all.contains(needle),
            "no generated cascade contains {needle:?}"
        );
    }
}

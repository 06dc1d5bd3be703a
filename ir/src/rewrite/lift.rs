//! Cascade → expression: every intermediate tensor is inlined into the output's expression.
//!
//! The rewriter accepts the cascades whose meaning is one expression over plain index
//! variables: a single output, no Initialization section, no iterative or split ranks and
//! filters on inputs only (each becomes `(where (mask:k) …)`). A binary op with a merge other
//! than its default becomes its own operator (`(+{&} a b)`, see [`super::lang::MergedOp`]).
//! Everything else is reported as [`RewriteError::Unsupported`].

use std::collections::{BTreeSet, HashMap};

use egg::{Id, RecExpr, Symbol};

use super::RewriteError;
use super::lang::{Cx, Lit, Mask, Tiles, binary_node};
use crate::ast::{
    Cascade, Compare, Constant, Einsum, Expr, ExprId, IndexExpr, ReduceOp, Section, TensorKind,
};

/// The expression of a cascade plus what is needed to write it back as a cascade.
#[derive(Debug, Clone)]
pub struct Lifted {
    pub expr: RecExpr<Cx>,
    /// The original tensor each expression node computes, if any (parallel to `expr`).
    pub names: Vec<Option<String>>,
    pub signature: Signature,
}

/// The interface of a cascade that rewriting keeps: name, ranks, inputs and output.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub name: String,
    /// Declared rank names in order, with whether each is a parameter.
    pub ranks: Vec<(String, bool)>,
    /// Input tensors with their rank names.
    pub inputs: Vec<(String, Vec<String>)>,
    /// The output tensor and its index variables in order.
    pub output: (String, Vec<String>),
    /// Filter conditions of input accesses (`m <= p`), each a conjunction, by mask number.
    pub masks: Vec<Vec<Compare>>,
    /// The names of the tile variables a split of each rank uses (fresh for the cascade).
    pub tiles: Tiles,
}

impl Signature {
    /// The index variables each mask reads.
    pub fn mask_vars(&self) -> Vec<BTreeSet<String>> {
        self.masks
            .iter()
            .map(|conds| {
                let mut ranks = Vec::new();
                for c in conds {
                    c.lhs.collect_vars(&mut ranks);
                    c.rhs.collect_vars(&mut ranks);
                }
                ranks
                    .iter()
                    .map(|r| self.ranks[r.index()].0.to_lowercase())
                    .collect()
            })
            .collect()
    }
}

/// A hash-consing builder so that shared subterms stay shared in the `RecExpr`.
#[derive(Debug, Default)]
pub struct Builder {
    pub expr: RecExpr<Cx>,
    memo: HashMap<Cx, Id>,
    pub names: Vec<Option<String>>,
    /// Filter conditions met so far, by mask number.
    pub masks: Vec<Vec<Compare>>,
}

impl Builder {
    pub fn add(&mut self, node: Cx) -> Id {
        if let Some(id) = self.memo.get(&node) {
            return *id;
        }
        let id = self.expr.add(node.clone());
        self.names.push(None);
        self.memo.insert(node, id);
        id
    }

    pub fn name(&mut self, s: &str) -> Id {
        self.add(Cx::Name(Symbol::from(s)))
    }
}

/// Converts a cascade into one expression.
pub fn lift(cascade: &Cascade) -> Result<Lifted, RewriteError> {
    let unsup = |what: String| RewriteError::Unsupported {
        cascade: cascade.name.clone(),
        what,
    };
    let unsupported = |what: String| Err(unsup(what));
    if cascade.outputs.len() != 1 {
        return unsupported(format!(
            "{} outputs (the rewriter takes exactly one)",
            cascade.outputs.len()
        ));
    }
    if cascade.stop.is_some() || !cascade.iterative_ranks().is_empty() {
        return unsupported(
            "iterative ranks (rewrite the non-iterative form; the rewriter derives folds itself)"
                .into(),
        );
    }
    if let Some(r) = cascade.ranks.iter().find(|r| r.split.is_some()) {
        return unsupported(format!(
            "the split of rank {} (the rewriter introduces splits itself)",
            r.name
        ));
    }
    let var = |r: crate::ast::RankId| cascade.var_name(r);
    let mut b = Builder::default();
    // The term of every written tensor and the index variables of its definition.
    let mut defs: HashMap<usize, (Id, Vec<String>)> = HashMap::new();
    for id in cascade.einsum_ids() {
        let e: &Einsum = cascade.einsum(id);
        let out = cascade.tensor(e.output.tensor);
        if e.section == Section::Init {
            return unsupported(format!("the init section (Einsum writing {})", out.name));
        }
        if defs.contains_key(&e.output.tensor.index()) {
            return unsupported(format!("{} is written twice", out.name));
        }
        let out_vars = plain_vars(cascade, &e.output.indices).ok_or_else(|| {
            unsup(format!(
                "the output indices of {} (only plain variables)",
                out.name
            ))
        })?;
        let mut term = lift_expr(cascade, e.value, &defs, &mut b)?;
        let op = match &e.reduction {
            Some(r) => r.op,
            None => ReduceOp::Sum,
        };
        let mut reduced = cascade.reduced_ranks(id);
        // Innermost reduction first: reduce the last-declared rank innermost.
        reduced.reverse();
        for r in reduced {
            let rv = b.name(&var(r));
            term = b.add(match op {
                ReduceOp::Sum => Cx::Sum([rv, term]),
                ReduceOp::Max => Cx::RMax([rv, term]),
                ReduceOp::Min => Cx::RMin([rv, term]),
                ReduceOp::Prod => Cx::RProd([rv, term]),
            });
        }
        if b.names[usize::from(term)].is_none() {
            b.names[usize::from(term)] = Some(out.name.clone());
        }
        defs.insert(e.output.tensor.index(), (term, out_vars));
    }
    let output = cascade.outputs[0];
    let Some((root, out_vars)) = defs.get(&output.index()).cloned() else {
        return unsupported(format!(
            "output {} is never written",
            cascade.tensor(output).name
        ));
    };
    // The root must be the last node of the RecExpr: re-adding is a no-op, so copy it to the end
    // only when something else was built after it.
    let expr = reorder_root(&b.expr, root);
    let names = reorder_names(&b, root);
    Ok(Lifted {
        expr,
        names,
        signature: Signature {
            name: cascade.name.clone(),
            ranks: cascade
                .ranks
                .iter()
                .map(|r| (r.name.clone(), r.is_param))
                .collect(),
            inputs: cascade
                .tensors
                .iter()
                .filter(|t| t.kind == TensorKind::Input)
                .map(|t| {
                    (
                        t.name.clone(),
                        t.ranks
                            .iter()
                            .map(|r| cascade.rank(*r).name.clone())
                            .collect(),
                    )
                })
                .collect(),
            output: (cascade.tensor(output).name.clone(), out_vars),
            masks: b.masks.clone(),
            tiles: Tiles::of_cascade(cascade),
        },
    })
}

/// Keeps only the nodes reachable from `root`, in order, so that `root` is the last node.
fn reorder_root(expr: &RecExpr<Cx>, root: Id) -> RecExpr<Cx> {
    let (keep, map) = reachable(expr, root);
    let mut out = RecExpr::default();
    for i in keep {
        out.add(
            expr[Id::from(i)]
                .clone()
                .map_children(|c| map[&usize::from(c)]),
        );
    }
    out
}

fn reorder_names(b: &Builder, root: Id) -> Vec<Option<String>> {
    let (keep, _) = reachable(&b.expr, root);
    keep.into_iter().map(|i| b.names[i].clone()).collect()
}

fn reachable(expr: &RecExpr<Cx>, root: Id) -> (Vec<usize>, HashMap<usize, Id>) {
    let n = usize::from(root) + 1;
    let mut live = vec![false; n];
    live[n - 1] = true;
    for i in (0..n).rev() {
        if live[i] {
            for c in egg::Language::children(&expr[Id::from(i)]) {
                live[usize::from(*c)] = true;
            }
        }
    }
    let keep: Vec<usize> = (0..n).filter(|i| live[*i]).collect();
    let map = keep
        .iter()
        .enumerate()
        .map(|(new, old)| (*old, Id::from(new)))
        .collect();
    (keep, map)
}

fn plain_vars(cascade: &Cascade, indices: &[IndexExpr]) -> Option<Vec<String>> {
    let mut vars = Vec::new();
    for idx in indices {
        match idx {
            IndexExpr::Var(r) => {
                let v = cascade.var_name(*r);
                if vars.contains(&v) {
                    return None;
                }
                vars.push(v);
            }
            _ => return None,
        }
    }
    Some(vars)
}

fn lift_expr(
    cascade: &Cascade,
    id: ExprId,
    defs: &HashMap<usize, (Id, Vec<String>)>,
    b: &mut Builder,
) -> Result<Id, RewriteError> {
    let unsupported = |what: String| RewriteError::Unsupported {
        cascade: cascade.name.clone(),
        what,
    };
    Ok(match cascade.expr(id) {
        Expr::Access(a) => {
            let t = cascade.tensor(a.tensor);
            if !a.filters.is_empty() && t.kind != TensorKind::Input {
                return Err(unsupported(format!(
                    "the filter on {} (filters on inputs only)",
                    t.name
                )));
            }
            let vars = plain_vars(cascade, &a.indices).ok_or_else(|| {
                unsupported(format!(
                    "the indices of {} (only plain, distinct variables)",
                    t.name
                ))
            })?;
            match t.kind {
                TensorKind::Input => {
                    let mut children = vec![b.name(&t.name)];
                    children.extend(vars.iter().map(|v| b.name(v)));
                    let access = b.add(Cx::At(children.into_boxed_slice()));
                    if a.filters.is_empty() {
                        access
                    } else {
                        // The conjunction of every condition, whatever position carries it.
                        let conds: Vec<Compare> = a
                            .filters
                            .iter()
                            .flat_map(|f| f.conds.iter().cloned())
                            .collect();
                        let k = match b.masks.iter().position(|m| *m == conds) {
                            Some(k) => k,
                            None => {
                                b.masks.push(conds);
                                b.masks.len() - 1
                            }
                        };
                        let mask = b.add(Cx::Mask(Mask(k as u32)));
                        b.add(Cx::Where([mask, access]))
                    }
                }
                TensorKind::Intermediate => {
                    let Some((term, def_vars)) = defs.get(&a.tensor.index()) else {
                        return Err(unsupported(format!(
                            "{} is read before it is written",
                            t.name
                        )));
                    };
                    if *def_vars == vars {
                        *term
                    } else {
                        let map: HashMap<String, String> =
                            def_vars.iter().cloned().zip(vars.iter().cloned()).collect();
                        rename(b, *term, &map).ok_or_else(|| {
                            unsupported(format!(
                                "{} read with indices that clash with its reductions",
                                t.name
                            ))
                        })?
                    }
                }
            }
        }
        Expr::Const(c) => b.add(Cx::Lit(match c {
            Constant::Num(x) if x.is_finite() => Lit::num(*x),
            Constant::Num(x) => return Err(unsupported(format!("the constant {x}"))),
            Constant::NegInf => Lit::NegInf,
            Constant::InvSqrtSize(r) => Lit::InvSqrt(Symbol::from(cascade.rank(*r).name.as_str())),
        })),
        Expr::Unary(op, arg) => {
            let a = lift_expr(cascade, *arg, defs, b)?;
            b.add(Cx::Unary(*op, [a]))
        }
        Expr::Binary {
            op,
            merge,
            lhs,
            rhs,
        } => {
            let (l, r) = (
                lift_expr(cascade, *lhs, defs, b)?,
                lift_expr(cascade, *rhs, defs, b)?,
            );
            b.add(binary_node(*op, *merge, [l, r]))
        }
    })
}

/// Renames free index variables of `term`; `None` when a renamed variable would be captured
/// by a reduction inside the term.
fn rename(b: &mut Builder, term: Id, map: &HashMap<String, String>) -> Option<Id> {
    let node = b.expr[term].clone();
    match &node {
        // A filter names its variables inside the condition; renaming them is not supported.
        Cx::Mask(_) => None,
        Cx::Name(s) => Some(match map.get(s.as_str()) {
            Some(to) => b.name(to),
            None => term,
        }),
        Cx::At(children) => {
            let mut out = vec![children[0]];
            for c in &children[1..] {
                out.push(rename(b, *c, map)?);
            }
            Some(b.add(Cx::At(out.into_boxed_slice())))
        }
        Cx::Sum([r, _]) | Cx::RMax([r, _]) | Cx::RMin([r, _]) | Cx::RProd([r, _]) => {
            let Cx::Name(bound) = b.expr[*r] else {
                return None;
            };
            let bound = bound.as_str().to_string();
            if map.values().any(|v| *v == bound) {
                return None;
            }
            let mut inner = map.clone();
            inner.remove(&bound);
            let body = node.children()[1];
            let body = rename(b, body, &inner)?;
            let children = [*r, body];
            Some(b.add(match node {
                Cx::Sum(_) => Cx::Sum(children),
                Cx::RMax(_) => Cx::RMax(children),
                Cx::RMin(_) => Cx::RMin(children),
                _ => Cx::RProd(children),
            }))
        }
        _ => {
            let mut failed = false;
            let renamed = node.clone().map_children(|c| match rename(b, c, map) {
                Some(id) => id,
                None => {
                    failed = true;
                    c
                }
            });
            (!failed).then(|| b.add(renamed))
        }
    }
}

use egg::Language as _;

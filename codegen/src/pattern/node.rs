//! The scalar expressions of the fused kernel — the score of one key for one query, and the
//! value of one output point — built by inlining the cascade's pointwise Einsums into one tree.
//!
//! Starting from an access (the scores the max reads, or an output), every computed tensor with
//! a single pointwise definition in the expected phase is replaced by its right-hand side with
//! the indices substituted, its filters becoming [`Node::Guard`]s; inputs become
//! [`Node::Load`]s; the product `sum(e) Q·K` becomes a [`Node::Qk`] leaf times its other factors
//! (`Q·K·T[p]` sums to `(Q·K)·T[p]`); after the loop, the final states become the
//! [`Node::Numerator`], [`Node::Denominator`] and [`Node::RowMax`] leaves. Nothing else is
//! inlined, so a tree means exactly what its Einsums compute, presence included.

use cascade_ir::plan::Phase;
use cascade_ir::{
    Access, BinaryOp, Compare, Constant, EinsumId, Expr, ExprId, IndexExpr, Merge, RankId,
    ReduceOp, TensorId, UnaryOp,
};

use super::{Ctx, M, filter_conds, subst, subst_cond};

/// Deeper trees are refused (the generic lowering takes them): the kernel's expressions stay
/// readable and this recursion shallow.
const MAX_DEPTH: usize = 64;

/// A scalar expression of the fused kernel over its variables (`m`, `p`, `f`, heads).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `sum(e) Q·K` of product leaf `i`, present where its conditions hold.
    Qk(usize),
    /// The final numerator of one output element (`RNV[f,M1,p]`, or `sum(m) w·V`).
    Numerator,
    /// The final denominator of its row (`RD[M1,p]`, or `sum(m) w`).
    Denominator,
    /// The final running max of its row (`RM[M1,p]`), in the cascade's units.
    RowMax,
    Const(Constant),
    /// An input read at these indices.
    Load(TensorId, Vec<IndexExpr>),
    Unary(UnaryOp, Box<Node>),
    Binary(BinaryOp, Merge, Box<Node>, Box<Node>),
    /// Absent where any of the conditions fails.
    Guard(Vec<Compare>, Box<Node>),
}

impl Node {
    /// Whether any leaf satisfies `f`.
    pub fn any(&self, f: &dyn Fn(&Node) -> bool) -> bool {
        if f(self) {
            return true;
        }
        match self {
            Node::Unary(_, a) | Node::Guard(_, a) => a.any(f),
            Node::Binary(_, _, a, b) => a.any(f) || b.any(f),
            _ => false,
        }
    }

    /// The same tree with every load index and guard condition rewritten.
    pub fn map(
        &self,
        idx: &dyn Fn(&IndexExpr) -> IndexExpr,
        cond: &dyn Fn(&Compare) -> Compare,
    ) -> Node {
        match self {
            Node::Load(t, i) => Node::Load(*t, i.iter().map(idx).collect()),
            Node::Unary(op, a) => Node::Unary(*op, Box::new(a.map(idx, cond))),
            Node::Binary(op, m, a, b) => Node::Binary(
                *op,
                *m,
                Box::new(a.map(idx, cond)),
                Box::new(b.map(idx, cond)),
            ),
            Node::Guard(k, a) => {
                Node::Guard(k.iter().map(cond).collect(), Box::new(a.map(idx, cond)))
            }
            other => other.clone(),
        }
    }

    /// Every load, left to right.
    pub fn loads(&self) -> Vec<(TensorId, Vec<IndexExpr>)> {
        let mut out = Vec::new();
        self.collect_loads(&mut out);
        out
    }

    fn collect_loads(&self, out: &mut Vec<(TensorId, Vec<IndexExpr>)>) {
        match self {
            Node::Load(t, idx) if !out.iter().any(|(u, j)| u == t && j == idx) => {
                out.push((*t, idx.clone()));
            }
            Node::Unary(_, a) | Node::Guard(_, a) => a.collect_loads(out),
            Node::Binary(_, _, a, b) => {
                a.collect_loads(out);
                b.collect_loads(out);
            }
            _ => {}
        }
    }

    /// Every condition of every guard.
    pub fn guards(&self) -> Vec<Compare> {
        let mut out = Vec::new();
        self.collect_guards(&mut out);
        out
    }

    fn collect_guards(&self, out: &mut Vec<Compare>) {
        match self {
            Node::Guard(conds, a) => {
                out.extend(conds.iter().cloned());
                a.collect_guards(out);
            }
            Node::Unary(_, a) => a.collect_guards(out),
            Node::Binary(_, _, a, b) => {
                a.collect_guards(out);
                b.collect_guards(out);
            }
            _ => {}
        }
    }

    /// Variables the indices of loads and guard conditions use.
    pub fn vars(&self) -> Vec<RankId> {
        let mut vars = Vec::new();
        for (_, idx) in self.loads() {
            for i in &idx {
                i.collect_vars(&mut vars);
            }
        }
        for k in self.guards() {
            k.lhs.collect_vars(&mut vars);
            k.rhs.collect_vars(&mut vars);
        }
        vars
    }
}

/// One `sum(e) Q·K` leaf: its operands (inputs, keys in the key form) and the conditions under
/// which it is present.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub q: Access,
    pub k: Access,
    pub e: RankId,
    pub conds: Vec<Compare>,
}

/// The final states of the online form, which the epilogue reads at `M1`.
#[derive(Debug, Clone, Copy)]
pub struct States {
    pub m1: RankId,
    pub rm: TensorId,
    pub rd: TensorId,
    pub rnv: TensorId,
}

/// What an inlining may meet besides pointwise Einsums and inputs.
#[derive(Debug, Clone, Copy)]
pub enum Leaves {
    /// Products `sum(e) Q·K` (the scores).
    Products,
    /// The final states (an epilogue).
    Final(States),
}

/// One inlining: the phase its Einsums run in, what it may meet, and the products found.
pub struct Chain {
    pub phase: Phase,
    pub leaves: Leaves,
    pub products: Vec<Product>,
    pub role: &'static str,
}

impl Chain {
    pub fn new(phase: Phase, leaves: Leaves, role: &'static str) -> Chain {
        Chain {
            phase,
            leaves,
            products: Vec::new(),
            role,
        }
    }
}

impl Ctx<'_> {
    /// The tree of an access, read in the caller's variables.
    pub(super) fn inline(&mut self, a: &Access, chain: &mut Chain) -> M<Node> {
        self.inline_access(a, &[], chain, 0)
    }

    /// The tree of an expression of the caller.
    pub(super) fn inline_value(&mut self, id: ExprId, chain: &mut Chain) -> M<Node> {
        self.inline_expr(id, &[], chain, 0)
    }

    fn inline_access(
        &mut self,
        a: &Access,
        map: &[(RankId, IndexExpr)],
        chain: &mut Chain,
        depth: usize,
    ) -> M<Node> {
        if depth > MAX_DEPTH {
            return Err("the expression is too deep for the fused kernel".into());
        }
        let c = self.c;
        let mapped = Access {
            tensor: a.tensor,
            indices: a
                .indices
                .iter()
                .map(|i| self.key.normalise(&subst(i, map)))
                .collect(),
            filters: a
                .filters
                .iter()
                .map(|f| cascade_ir::Filter {
                    position: f.position,
                    conds: f
                        .conds
                        .iter()
                        .map(|k| self.key.normalise_cond(&subst_cond(k, map)))
                        .collect(),
                })
                .collect(),
        };
        let guard = filter_conds(&mapped);
        let node = if let Some(leaf) = self.final_state(&mapped, chain)? {
            leaf
        } else if let Some(input) = self.input_access(&mapped) {
            Node::Load(input.tensor, input.indices)
        } else {
            let [def] = self.defs(a.tensor)[..] else {
                return Err(format!(
                    "{} is not defined by exactly one Einsum",
                    c.tensor(a.tensor).name
                ));
            };
            if self.plan.phase(def) != chain.phase {
                return Err(format!(
                    "`{}` runs {} where the fused kernel needs it {}",
                    cascade_ir::dsl::print_einsum(c, def),
                    self.plan.phase(def).name(),
                    chain.phase.name()
                ));
            }
            self.inline_def(def, &mapped, chain, depth)?
        };
        Ok(guarded(guard, node))
    }

    /// A final state read by an epilogue at `M1`, as its leaf.
    fn final_state(&self, a: &Access, chain: &Chain) -> M<Option<Node>> {
        let Leaves::Final(s) = chain.leaves else {
            return Ok(None);
        };
        let leaf = if a.tensor == s.rnv {
            Node::Numerator
        } else if a.tensor == s.rd {
            Node::Denominator
        } else if a.tensor == s.rm {
            Node::RowMax
        } else {
            return Ok(None);
        };
        let t = self.c.tensor(a.tensor);
        let at_end = t.ranks.iter().zip(&a.indices).all(|(r, i)| {
            if *r == s.m1 {
                *i == IndexExpr::Size(s.m1)
            } else {
                *i == IndexExpr::Var(*r)
            }
        });
        if !at_end || !a.filters.is_empty() {
            return Err(format!(
                "{} is read after the loop other than at its final step, point by point",
                t.name
            ));
        }
        Ok(Some(leaf))
    }

    /// The definition of an access's tensor, inlined at the access's indices.
    fn inline_def(
        &mut self,
        def: EinsumId,
        at: &Access,
        chain: &mut Chain,
        depth: usize,
    ) -> M<Node> {
        let c = self.c;
        let e = c.einsum(def);
        let mut map = Vec::new();
        for (i, idx) in e.output.indices.iter().enumerate() {
            let IndexExpr::Var(v) = idx else {
                return Err(format!(
                    "`{}` writes its output at computed indices",
                    cascade_ir::dsl::print_einsum(c, def)
                ));
            };
            if map.iter().any(|(w, _)| w == v) {
                return Err(format!(
                    "`{}` repeats an output index",
                    cascade_ir::dsl::print_einsum(c, def)
                ));
            }
            map.push((*v, at.indices[i].clone()));
        }
        let out_guard: Vec<Compare> = filter_conds(&e.output)
            .iter()
            .map(|k| self.key.normalise_cond(&subst_cond(k, &map)))
            .collect();
        let node = if c.reduce_op(def).is_some() {
            if !matches!(chain.leaves, Leaves::Products) {
                return Err(format!(
                    "`{}` reduces where the fused kernel expects a pointwise step",
                    cascade_ir::dsl::print_einsum(c, def)
                ));
            }
            self.product(def, &map, out_guard.clone(), chain)?
        } else {
            self.role(chain.role, def);
            self.inline_expr(e.value, &map, chain, depth + 1)?
        };
        Ok(guarded(out_guard, node))
    }

    fn inline_expr(
        &mut self,
        id: ExprId,
        map: &[(RankId, IndexExpr)],
        chain: &mut Chain,
        depth: usize,
    ) -> M<Node> {
        if depth > MAX_DEPTH {
            return Err("the expression is too deep for the fused kernel".into());
        }
        let c = self.c;
        Ok(match c.expr(id) {
            Expr::Access(a) => self.inline_access(a, map, chain, depth + 1)?,
            Expr::Const(k) => Node::Const(*k),
            Expr::Unary(op, arg) => {
                // exp of a parenthesised difference keeps eval's rule for a present -inf on
                // the left, which the kernel's expressions do not spell; the generic lowering does.
                if *op == UnaryOp::Exp
                    && matches!(
                        c.expr(*arg),
                        Expr::Binary {
                            op: BinaryOp::Sub,
                            ..
                        }
                    )
                {
                    return Err("exp of a parenthesised difference".into());
                }
                Node::Unary(
                    *op,
                    Box::new(self.inline_expr(*arg, map, chain, depth + 1)?),
                )
            }
            Expr::Binary {
                op,
                merge,
                lhs,
                rhs,
            } => Node::Binary(
                *op,
                *merge,
                Box::new(self.inline_expr(*lhs, map, chain, depth + 1)?),
                Box::new(self.inline_expr(*rhs, map, chain, depth + 1)?),
            ),
        })
    }

    /// `sum(e) Q·K·X…` as the leaf `Qk(i)` times the factors `X` that do not use `e`.
    fn product(
        &mut self,
        def: EinsumId,
        map: &[(RankId, IndexExpr)],
        out_guard: Vec<Compare>,
        chain: &mut Chain,
    ) -> M<Node> {
        let c = self.c;
        let text = cascade_ir::dsl::print_einsum(c, def);
        let reduced = c.reduced_ranks(def);
        let [e] = reduced[..] else {
            return Err(format!("`{text}` does not sum over one rank"));
        };
        if c.reduce_op(def) != Some(ReduceOp::Sum) {
            return Err(format!("`{text}` is not a sum"));
        }
        let mut factors = Vec::new();
        self.factors(c.einsum(def).value, &mut factors, 0)?;
        let (mut q, mut k, mut rest) = (None, None, Vec::new());
        for f in factors {
            match c.expr(f) {
                Expr::Access(a) => {
                    let mut vars = Vec::new();
                    a.collect_vars(&mut vars);
                    if !vars.contains(&e) {
                        rest.push(f);
                        continue;
                    }
                    let mapped = Access {
                        tensor: a.tensor,
                        indices: a.indices.iter().map(|i| subst(i, map)).collect(),
                        filters: a
                            .filters
                            .iter()
                            .map(|g| cascade_ir::Filter {
                                position: g.position,
                                conds: g.conds.iter().map(|k| subst_cond(k, map)).collect(),
                            })
                            .collect(),
                    };
                    let Some(input) = self.input_access(&mapped) else {
                        return Err(format!(
                            "`{text}` multiplies {}, which is computed: the fused kernel reads Q and K from inputs",
                            c.tensor(a.tensor).name
                        ));
                    };
                    let mut uses = Vec::new();
                    for i in &input.indices {
                        i.collect_vars(&mut uses);
                    }
                    let slot = if uses.contains(&self.key.m) {
                        &mut k
                    } else {
                        &mut q
                    };
                    if slot.replace(input).is_some() {
                        return Err(format!("`{text}` is not a product of one Q and one K"));
                    }
                }
                Expr::Const(_) => rest.push(f),
                _ => return Err(format!("`{text}` is not a product of accesses")),
            }
        }
        let (Some(q), Some(k)) = (q, k) else {
            return Err(format!("`{text}` is not a product of one Q and one K"));
        };
        let mut conds = out_guard;
        for k in filter_conds(&q).iter().chain(&filter_conds(&k)) {
            let mut vars = Vec::new();
            k.lhs.collect_vars(&mut vars);
            k.rhs.collect_vars(&mut vars);
            if vars.contains(&e) {
                return Err(format!(
                    "`{text}` filters the contracted rank {}; the fused kernel masks whole scores",
                    c.var_name(e)
                ));
            }
            conds.push(self.key.normalise_cond(k));
        }
        let strip = |a: Access| Access {
            filters: Vec::new(),
            ..a
        };
        let product = Product {
            q: strip(q),
            k: strip(k),
            e,
            conds,
        };
        if let Some(first) = chain.products.first()
            && (first.q != product.q || first.k != product.k || first.e != product.e)
        {
            return Err(
                "the scores combine products of different operands; the fused kernel computes one Q·K"
                    .into(),
            );
        }
        let leaf = chain.products.len();
        chain.products.push(product);
        self.role("scores (MMA 1)", def);
        let mut node = Node::Qk(leaf);
        for f in rest {
            let factor = self.inline_expr(f, map, chain, 1)?;
            node = Node::Binary(
                BinaryOp::Mul,
                Merge::Intersect,
                Box::new(node),
                Box::new(factor),
            );
        }
        Ok(node)
    }

    /// The operands of a product tree whose every node is `*` with merge ∩.
    fn factors(&self, id: ExprId, out: &mut Vec<ExprId>, depth: usize) -> M<()> {
        if depth > MAX_DEPTH {
            return Err("the scores' product is too deep for the fused kernel".into());
        }
        match self.c.expr(id) {
            Expr::Binary {
                op: BinaryOp::Mul,
                merge: Merge::Intersect,
                lhs,
                rhs,
            } => {
                self.factors(*lhs, out, depth + 1)?;
                self.factors(*rhs, out, depth + 1)
            }
            Expr::Binary { .. } | Expr::Unary(..) => {
                Err("the scores' product has a term other than factors".into())
            }
            _ => {
                out.push(id);
                Ok(())
            }
        }
    }
}

fn guarded(conds: Vec<Compare>, node: Node) -> Node {
    if conds.is_empty() {
        node
    } else {
        Node::Guard(conds, Box::new(node))
    }
}

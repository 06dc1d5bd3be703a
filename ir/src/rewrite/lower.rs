//! Expression → cascade: one Einsum per reduction, fold and map op, as the paper writes them.
//!
//! A map op that is the body of a reduction and has no other use is fused into the reduction's
//! Einsum (`QK[m,p] = Q[e,p] * K[e,m]`); every other op gets its own Einsum named after the
//! original tensor it computes when there is one. `(split m x)` lowers `x` with `m` replaced by
//! `(m1, m0)` and copies split inputs in the Initialization section (`BK[e,m1,m0] =
//! K[e, m1*M0+m0]`). A fold becomes a state tensor with one init and one step Einsum; its final
//! value is read at `M1`, `(scan …)` at `m1+1` and `(state …)`/`(scan-prev …)` at `m1`.
//!
//! Names: the tile ranks are the signature's [`super::lang::Tiles`], and a new tensor shares its
//! name with no rank, rank variable or reserved word, so the printed cascade parses.
//! Lowering refuses (as [`RewriteError::Internal`]) what it cannot write faithfully: a tile
//! variable bound inside the split of its rank around a use of the rank (ranks cannot be
//! renamed), a reduction over a rank its body does not read, and a term that reads a variable
//! the output lacks. With an iterative rank the body is ordered by the loop plan's [`Phase`](crate::plan::Phase):
//! Einsums that run before the loop, the loop's, then those that read its results, each in
//! dependency order; [`phase_problems`] states what a lowered cascade must not contain.

use std::collections::{BTreeSet, HashMap, HashSet};

use egg::{Id, Language, RecExpr};

use super::RewriteError;
use super::lang::{Cx, Lit, Mask, binary_of, binder, is_map};
use super::lift::Signature;
use crate::ast::{
    Access, BinaryOp, Cascade, Compare, CompareOp, Constant, Einsum, Expr, ExprId, Filter,
    IndexExpr, Rank, RankId, ReduceOp, Reduction, Section, Tensor, TensorId, TensorKind,
};
use crate::plan::{Ambiguity, LoopPlan};

/// Writes an expression back as a cascade with the interface `sig`.
pub fn lower(
    expr: &RecExpr<Cx>,
    names: &[Option<String>],
    sig: &Signature,
) -> Result<Cascade, RewriteError> {
    if expr.as_ref().is_empty() {
        return Err(RewriteError::Internal("an empty term".into()));
    }
    let mut l = Lower::new(expr, names, sig);
    let root = Id::from(expr.as_ref().len() - 1);
    // A free variable the output lacks would be summed away by the output's Einsum.
    if let Some(v) = l.fv[usize::from(root)]
        .iter()
        .find(|v| !sig.output.1.contains(v))
    {
        return Err(RewriteError::Internal(format!(
            "the term reads the index variable {v}, which output {} does not have",
            sig.output.0
        )));
    }
    l.prelower(root)?;
    let val = l.lower(root, None, None)?;
    l.finish(val)
}

#[derive(Debug, Clone)]
enum Val {
    Const(Constant),
    /// A tensor read at these indices, absent where a filter fails.
    Access(TensorId, Vec<IndexExpr>, Vec<Filter>),
}

#[derive(Debug, Clone)]
struct Fold {
    tensor: TensorId,
    var: String,
    dims: Vec<String>,
    /// The update Einsum has been written (or is being written).
    done: bool,
}

#[derive(Clone, Copy)]
enum At {
    Prev,
    Next,
    Final,
}

type Key = (usize, Option<Env>, Option<usize>);

/// The split a sub-term is lowered under: `var := var1·VAR0 + var0`, or with `key` the
/// split's second variable in place of `var0` (`(split-key m x)`: `m := m1·M0 + n0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Env {
    var: String,
    key: bool,
}

struct Lower<'a> {
    expr: &'a RecExpr<Cx>,
    names: &'a [Option<String>],
    sig: &'a Signature,
    cascade: Cascade,
    init: Vec<Einsum>,
    body: Vec<Einsum>,
    fv: Vec<BTreeSet<String>>,
    state: Vec<bool>,
    rank_name: Vec<Option<String>>,
    uses: Vec<u32>,
    /// Whether each node is (part of) a softmax score: see [`Self::scaled_sum`].
    score: Vec<bool>,
    memo: HashMap<Key, Val>,
    folds: Vec<Fold>,
    fold_keys: HashMap<(usize, usize, usize, Option<Env>), usize>,
    split_inputs: HashMap<(usize, String, bool), Val>,
    /// Tensors written at a split index by a join: the parent rank of the split.
    joined: HashMap<TensorId, RankId>,
    used: HashSet<String>,
    counter: usize,
    iterative: Option<String>,
}

impl<'a> Lower<'a> {
    fn new(expr: &'a RecExpr<Cx>, names: &'a [Option<String>], sig: &'a Signature) -> Self {
        let nodes = expr.as_ref();
        let mask_vars = sig.mask_vars();
        let mut fv: Vec<BTreeSet<String>> = Vec::with_capacity(nodes.len());
        let mut state = Vec::with_capacity(nodes.len());
        let mut rank_name: Vec<Option<String>> = Vec::with_capacity(nodes.len());
        let mut uses = vec![0u32; nodes.len()];
        for node in nodes {
            for c in node.children() {
                uses[usize::from(*c)] += 1;
            }
            let rn = |id: &Id| rank_name[usize::from(*id)].clone().unwrap_or_default();
            let un = |ids: &[Id]| {
                let mut v = BTreeSet::new();
                let mut s = false;
                for id in ids {
                    v.extend(fv[usize::from(*id)].iter().cloned());
                    s |= state[usize::from(*id)];
                }
                (v, s)
            };
            let (r, v, s) = match node {
                Cx::Name(s) => (Some(s.as_str().to_string()), BTreeSet::new(), false),
                Cx::Outer(m) => (Some(sig.tiles.outer(&rn(m))), BTreeSet::new(), false),
                Cx::Inner(m) => (Some(sig.tiles.inner(&rn(m))), BTreeSet::new(), false),
                Cx::Key(m) => (Some(sig.tiles.key(&rn(m))), BTreeSet::new(), false),
                Cx::Tri(m) => {
                    let m = rn(m);
                    let v = BTreeSet::from([sig.tiles.inner(&m), sig.tiles.key(&m)]);
                    (None, v, false)
                }
                Cx::SplitKey([m, x]) => {
                    let (mut v, s) = un(&[*x]);
                    let m = rn(m);
                    if v.remove(&m) {
                        v.insert(sig.tiles.outer(&m));
                        v.insert(sig.tiles.key(&m));
                    }
                    (None, v, s)
                }
                Cx::Lit(_) => (None, BTreeSet::new(), false),
                Cx::Mask(k) => (
                    None,
                    mask_vars.get(k.0 as usize).cloned().unwrap_or_default(),
                    false,
                ),
                Cx::At(ch) => (None, ch[1..].iter().map(rn).collect(), false),
                Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => {
                    let (mut v, s) = un(&[*x]);
                    v.remove(&rn(r));
                    (None, v, s)
                }
                Cx::Split([m, x]) => {
                    let (mut v, s) = un(&[*x]);
                    let m = rn(m);
                    if v.remove(&m) {
                        v.insert(sig.tiles.outer(&m));
                        v.insert(sig.tiles.inner(&m));
                    }
                    (None, v, s)
                }
                Cx::Join([h, x]) => {
                    let (mut v, s) = un(&[*x]);
                    let h = rn(h);
                    let had = v.remove(&sig.tiles.outer(&h)) | v.remove(&sig.tiles.inner(&h));
                    if had {
                        v.insert(h);
                    }
                    (None, v, s)
                }
                Cx::Fold([i, a, b]) => {
                    let (mut v, _) = un(&[*a, *b]);
                    v.remove(&rn(i));
                    (None, v, false)
                }
                Cx::Scan([i, a, b]) | Cx::ScanPrev([i, a, b]) => {
                    let (mut v, _) = un(&[*a, *b]);
                    v.insert(rn(i));
                    (None, v, false)
                }
                Cx::State(i) => (None, BTreeSet::from([rn(i)]), true),
                other => {
                    let (v, s) = un(other.children());
                    (None, v, s)
                }
            };
            rank_name.push(r);
            fv.push(v);
            state.push(s);
        }
        // Softmax scores: values that reach an exp-shift or a max through map ops, splits and
        // filters (parents come after their children, so one backward sweep marks them all).
        let mut score = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate().rev() {
            match node {
                Cx::SubExp(ch) | Cx::Max(ch) => {
                    ch.iter().for_each(|c| score[usize::from(*c)] = true)
                }
                Cx::RMax([_, x]) => score[usize::from(*x)] = true,
                Cx::Split([_, x]) | Cx::SplitKey([_, x]) | Cx::Where([_, x]) if score[i] => {
                    score[usize::from(*x)] = true
                }
                _ if score[i] && is_map(node) => node
                    .children()
                    .iter()
                    .for_each(|c| score[usize::from(*c)] = true),
                _ => {}
            }
        }
        let mut ranks: Vec<Rank> = sig
            .ranks
            .iter()
            .map(|(n, p)| Rank {
                name: n.clone(),
                split: None,
                range_of: None,
                is_param: *p,
            })
            .collect();
        // The cascade's own splits stay as declared.
        let position = |ranks: &[Rank], name: &str| ranks.iter().position(|r| r.name == name);
        for (parent, outer, inner) in &sig.splits {
            if let (Some(p), Some(o), Some(i)) = (
                position(&ranks, parent),
                position(&ranks, outer),
                position(&ranks, inner),
            ) {
                ranks[p].split = Some((RankId(o as u32), RankId(i as u32)));
                // Its second variable (`N0` over `M0`), if the cascade declares one.
                let key = sig.tiles.key(&parent.to_lowercase()).to_uppercase();
                if let Some(k) = position(&ranks, &key) {
                    ranks[k].range_of = Some(RankId(i as u32));
                }
            }
        }
        let tensors: Vec<Tensor> = Vec::new();
        let mut l = Lower {
            expr,
            names,
            sig,
            cascade: Cascade {
                name: sig.name.clone(),
                ranks,
                tensors,
                exprs: Vec::new(),
                einsums: Vec::new(),
                outputs: Vec::new(),
                stop: None,
            },
            init: Vec::new(),
            body: Vec::new(),
            fv,
            state,
            rank_name,
            uses,
            score,
            memo: HashMap::new(),
            folds: Vec::new(),
            fold_keys: HashMap::new(),
            split_inputs: HashMap::new(),
            joined: HashMap::new(),
            used: HashSet::new(),
            counter: 0,
            iterative: None,
        };
        // A new tensor may share its name with no rank, rank variable (tiles included) or
        // reserved word: the printed cascade must parse.
        for (name, _) in &sig.ranks {
            let v = name.to_lowercase();
            l.used.insert(sig.tiles.outer(&v).to_uppercase());
            l.used.insert(sig.tiles.inner(&v).to_uppercase());
            l.used.insert(sig.tiles.outer(&v));
            l.used.insert(sig.tiles.inner(&v));
            l.used.insert(sig.tiles.key(&v).to_uppercase());
            l.used.insert(sig.tiles.key(&v));
            l.used.insert(v);
            l.used.insert(name.clone());
        }
        l.used
            .extend(crate::dsl::RESERVED.iter().map(|w| w.to_string()));
        for (name, ranks) in &sig.inputs {
            let ranks = ranks.iter().map(|r| l.rank_id_by_name(r)).collect();
            l.used.insert(name.clone());
            l.cascade.tensors.push(Tensor {
                name: name.clone(),
                kind: TensorKind::Input,
                ranks,
            });
        }
        l.used.insert(sig.output.0.clone());
        l
    }

    fn err(&self, what: impl Into<String>) -> RewriteError {
        RewriteError::Unsupported {
            cascade: self.sig.name.clone(),
            what: what.into(),
        }
    }

    fn rank_id_by_name(&self, name: &str) -> RankId {
        RankId(
            self.cascade
                .ranks
                .iter()
                .position(|r| r.name == name)
                .expect("declared rank") as u32,
        )
    }

    /// The rank iterated by variable `var`, declaring split ranks on first use.
    fn rank_of_var(&mut self, var: &str) -> Result<RankId, RewriteError> {
        if let Some(i) = self
            .cascade
            .ranks
            .iter()
            .position(|r| r.name.to_lowercase() == var)
        {
            return Ok(RankId(i as u32));
        }
        // A tile variable `m1`/`m0` of a declared rank `M`.
        if let Some((parent, _)) = self.sig.tiles.parent_of(var)
            && let Some(p) = self
                .cascade
                .ranks
                .iter()
                .position(|r| r.name.to_lowercase() == parent)
        {
            self.ensure_split(RankId(p as u32))?;
            return self.rank_of_var(var);
        }
        // The second variable `n0` of a split of a declared rank `M`.
        if let Some(parent) = self.sig.tiles.key_parent_of(var)
            && let Some(p) = self
                .cascade
                .ranks
                .iter()
                .position(|r| r.name.to_lowercase() == parent)
        {
            return self.ensure_key(RankId(p as u32));
        }
        Err(self.err(format!(
            "the index variable {var}, which names no declared rank"
        )))
    }

    /// The inner variable of a split environment: `m0`, or the second variable `n0`.
    fn env_inner(&self, e: &Env) -> String {
        if e.key {
            self.sig.tiles.key(&e.var)
        } else {
            self.sig.tiles.inner(&e.var)
        }
    }

    /// The index a split environment substitutes for `parent`: `m1*M0+m0`, or `m1*M0+n0`.
    fn env_index(&mut self, parent: RankId, e: &Env) -> Result<IndexExpr, RewriteError> {
        let (outer, inner) = self.ensure_split(parent)?;
        let mut idx = tiled_index(outer, inner);
        if e.key
            && let IndexExpr::Add(_, last) = &mut idx
        {
            **last = IndexExpr::Var(self.ensure_key(parent)?);
        }
        Ok(idx)
    }

    /// The second variable over the inner rank of `parent`'s split (`N0` beside `M0`),
    /// declared on first use with the inner rank's range.
    fn ensure_key(&mut self, parent: RankId) -> Result<RankId, RewriteError> {
        let (_, inner) = self.ensure_split(parent)?;
        if let Some(k) = self.cascade.second_variable(inner) {
            return Ok(k);
        }
        let v = self.cascade.ranks[parent.index()].name.to_lowercase();
        let name = self.sig.tiles.key(&v).to_uppercase();
        if let Some(p) = self.cascade.ranks.iter().position(|r| r.name == name) {
            // Declared by the input cascade (`split M -> M1 M0 N0`).
            self.cascade.ranks[p].range_of = Some(inner);
            return Ok(RankId(p as u32));
        }
        let id = RankId(self.cascade.ranks.len() as u32);
        self.cascade.ranks.push(Rank {
            name,
            split: None,
            range_of: Some(inner),
            is_param: false,
        });
        Ok(id)
    }

    fn ensure_split(&mut self, parent: RankId) -> Result<(RankId, RankId), RewriteError> {
        if let Some(s) = self.cascade.ranks[parent.index()].split {
            return Ok(s);
        }
        let base = self.cascade.ranks[parent.index()].name.clone();
        let v = base.to_lowercase();
        let mut ids = [RankId(0); 2];
        let names = [self.sig.tiles.outer(&v), self.sig.tiles.inner(&v)];
        for (k, var) in names.iter().enumerate() {
            let name = var.to_uppercase();
            if self.cascade.ranks.iter().any(|r| r.name == name) {
                return Err(self.err(format!("splitting {base}: rank {name} already exists")));
            }
            ids[k] = RankId(self.cascade.ranks.len() as u32);
            self.cascade.ranks.push(Rank {
                name,
                split: None,
                range_of: None,
                is_param: false,
            });
        }
        self.cascade.ranks[parent.index()].split = Some((ids[0], ids[1]));
        Ok((ids[0], ids[1]))
    }

    /// Sort key of an index variable: declaration order, sub-ranks right after their parent.
    fn order(&self, var: &str) -> (usize, usize) {
        let pos = |v: &str| {
            self.cascade
                .ranks
                .iter()
                .position(|r| r.name.to_lowercase() == v)
        };
        for (i, r) in self.cascade.ranks.iter().enumerate() {
            if let Some((a, b)) = r.split {
                if self.cascade.ranks[a.index()].name.to_lowercase() == var {
                    return (i, 1);
                }
                if self.cascade.ranks[b.index()].name.to_lowercase() == var {
                    return (i, 2);
                }
                if let Some(k) = self.cascade.second_variable(b)
                    && self.cascade.ranks[k.index()].name.to_lowercase() == var
                {
                    return (i, 3);
                }
            }
        }
        (pos(var).unwrap_or(usize::MAX), 0)
    }

    fn sorted(
        &mut self,
        vars: impl IntoIterator<Item = String>,
    ) -> Result<Vec<String>, RewriteError> {
        let mut v: Vec<String> = vars
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for x in &v {
            self.rank_of_var(x)?;
        }
        v.sort_by_key(|x| self.order(x));
        Ok(v)
    }

    /// The free variables of node `id` under a split of `env`.
    fn dims(
        &mut self,
        vars: &BTreeSet<String>,
        env: &Option<Env>,
    ) -> Result<Vec<String>, RewriteError> {
        let mut out: BTreeSet<String> = vars.clone();
        if let Some(e) = env
            && out.remove(&e.var)
        {
            out.insert(self.sig.tiles.outer(&e.var));
            out.insert(self.env_inner(e));
        }
        self.sorted(out)
    }

    /// The dimensions of node `i`'s tensor: its free variables under the split, plus the
    /// dimensions of the fold state it reads (a `(state i)` leaf only knows `i`).
    fn node_dims(
        &mut self,
        i: usize,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<Vec<String>, RewriteError> {
        let vars = self.fv[i].clone();
        let mut dims = self.dims(&vars, env)?;
        if let Some(f) = ctx {
            dims.extend(self.folds[f].dims.iter().cloned());
        }
        self.sorted(dims)
    }

    fn fresh(&mut self, hint: Option<&str>, prefix: &str) -> String {
        if let Some(h) = hint
            && self.used.insert(h.to_string())
        {
            return h.to_string();
        }
        // Multi-letter prefixes say what the tensor is (`RM`, `LM`): try them bare first.
        if prefix.len() > 1 && self.used.insert(prefix.to_string()) {
            return prefix.to_string();
        }
        loop {
            self.counter += 1;
            let name = format!("{prefix}{}", self.counter);
            if self.used.insert(name.clone()) {
                return name;
            }
        }
    }

    fn push_expr(&mut self, e: Expr) -> ExprId {
        self.cascade.exprs.push(e);
        ExprId(self.cascade.exprs.len() as u32 - 1)
    }

    fn var_index(&mut self, var: &str) -> Result<IndexExpr, RewriteError> {
        Ok(IndexExpr::Var(self.rank_of_var(var)?))
    }

    fn val_expr(&mut self, val: Val) -> ExprId {
        match val {
            Val::Const(c) => self.push_expr(Expr::Const(c)),
            Val::Access(tensor, indices, filters) => self.push_expr(Expr::Access(Access {
                tensor,
                indices,
                filters,
            })),
        }
    }

    fn new_tensor(&mut self, name: String, dims: &[String]) -> Result<TensorId, RewriteError> {
        let mut ranks = Vec::new();
        for d in dims {
            ranks.push(self.rank_of_var(d)?);
        }
        self.cascade.tensors.push(Tensor {
            name,
            kind: TensorKind::Intermediate,
            ranks,
        });
        Ok(TensorId(self.cascade.tensors.len() as u32 - 1))
    }

    /// Adds a body Einsum writing a new tensor over `dims`; returns the access to it.
    fn einsum(
        &mut self,
        id: Id,
        env: &Option<Env>,
        prefix: &str,
        dims: Vec<String>,
        reduction: Option<Reduction>,
        value: ExprId,
    ) -> Result<Val, RewriteError> {
        let hint = self
            .names
            .get(usize::from(id))
            .cloned()
            .flatten()
            .map(|n| match env {
                Some(_) => format!("B{n}"),
                None => n,
            });
        let name = self.fresh(hint.as_deref(), prefix);
        let tensor = self.new_tensor(name, &dims)?;
        let mut indices = Vec::new();
        for d in &dims {
            indices.push(self.var_index(d)?);
        }
        self.body.push(Einsum {
            section: Section::Body,
            output: Access {
                tensor,
                indices: indices.clone(),
                filters: Vec::new(),
            },
            reduction,
            value,
        });
        Ok(Val::Access(tensor, indices, Vec::new()))
    }

    fn operand(
        &mut self,
        id: Id,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<ExprId, RewriteError> {
        let val = self.lower(id, env.clone(), ctx)?;
        Ok(self.val_expr(val))
    }

    /// The expression of a map node whose operands are lowered separately.
    fn map_expr(
        &mut self,
        id: Id,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<ExprId, RewriteError> {
        let node = self.expr[id].clone();
        if let Some((op, merge)) = binary_of(&node) {
            let [a, b] = [node.children()[0], node.children()[1]];
            let lhs = self.operand(a, env, ctx)?;
            let rhs = self.operand(b, env, ctx)?;
            return Ok(self.push_expr(Expr::Binary {
                op,
                merge,
                lhs,
                rhs,
            }));
        }
        let uop = match &node {
            Cx::Unary(op, _) => *op,
            other => return Err(self.err(format!("`{other}` where a map op was expected"))),
        };
        let arg = self.operand(node.children()[0], env, ctx)?;
        Ok(self.push_expr(Expr::Unary(uop, arg)))
    }

    /// The memo key of node `id` lowered under `env` and `ctx`: the split and the fold state
    /// matter only where the node reads them.
    fn key(&self, id: Id, env: Option<Env>, ctx: Option<usize>) -> Key {
        let i = usize::from(id);
        (
            i,
            env.filter(|e| self.fv[i].contains(&e.var)),
            ctx.filter(|_| self.state[i]),
        )
    }

    /// Lowers the sub-terms of `root` bottom-up from an explicit stack, so that lowering any
    /// node finds its operands already lowered and recurses one node deep at most: the depth
    /// of the term never reaches the call stack.
    fn prelower(&mut self, root: Id) -> Result<(), RewriteError> {
        let mut stack: Vec<(Key, bool)> = vec![(self.key(root, None, None), false)];
        while let Some((key, expanded)) = stack.pop() {
            if self.memo.contains_key(&key) {
                continue;
            }
            let (i, env, ctx) = key.clone();
            if expanded {
                self.lower(Id::from(i), env, ctx)?;
                continue;
            }
            stack.push((key, true));
            // Reversed, so that operands are lowered left to right, as written.
            for sub in self.sub_keys(Id::from(i), &env, ctx)?.into_iter().rev() {
                if !self.memo.contains_key(&sub) {
                    stack.push((sub, false));
                }
            }
        }
        Ok(())
    }

    /// The keys [`Self::lower`] asks for when it lowers node `id` (its operands, or a fused
    /// body's operands), declaring a fold's state first so that its step can read it.
    fn sub_keys(
        &mut self,
        id: Id,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<Vec<Key>, RewriteError> {
        let node = self.expr[id].clone();
        let operands = |l: &Self, x: Id, env: &Option<Env>, ctx: Option<usize>| -> Vec<Key> {
            l.expr[x]
                .children()
                .iter()
                .map(|c| l.key(*c, env.clone(), ctx))
                .collect()
        };
        Ok(match &node {
            Cx::Lit(_)
            | Cx::At(_)
            | Cx::Mask(_)
            | Cx::Name(_)
            | Cx::Outer(_)
            | Cx::Inner(_)
            | Cx::Key(_)
            | Cx::Tri(_)
            | Cx::State(_) => Vec::new(),
            Cx::Split([m, x]) | Cx::SplitKey([m, x]) => {
                let var = self.rank_name[usize::from(*m)].clone().unwrap_or_default();
                let key = matches!(node, Cx::SplitKey(_));
                vec![self.key(*x, Some(Env { var, key }), ctx)]
            }
            Cx::Fold([v, a, b]) | Cx::Scan([v, a, b]) | Cx::ScanPrev([v, a, b]) => {
                let hint = self.names.get(usize::from(id)).cloned().flatten();
                let f = self.fold_alloc(*v, *a, *b, env, hint)?;
                if self.folds[f].done {
                    Vec::new()
                } else if is_map(&self.expr[*b]) {
                    operands(self, *b, env, Some(f))
                } else {
                    vec![self.key(*b, env.clone(), Some(f))]
                }
            }
            Cx::Sum([_, x]) | Cx::RMax([_, x]) | Cx::RMin([_, x]) | Cx::RProd([_, x]) => {
                if is_map(&self.expr[*x]) && self.uses[usize::from(*x)] == 1 {
                    operands(self, *x, env, ctx)
                } else {
                    vec![self.key(*x, env.clone(), ctx)]
                }
            }
            Cx::Where([_, x]) | Cx::Join([_, x]) => vec![self.key(*x, env.clone(), ctx)],
            _ if self.scaled_sum(id, &node).is_some() => {
                let (sum, _) = self.scaled_sum(id, &node).expect("checked");
                let x = self.expr[sum].children()[1];
                if is_map(&self.expr[x]) && self.uses[usize::from(x)] == 1 {
                    operands(self, x, env, ctx)
                } else {
                    vec![self.key(x, env.clone(), ctx)]
                }
            }
            other => other
                .children()
                .iter()
                .map(|c| self.key(*c, env.clone(), ctx))
                .collect(),
        })
    }

    fn lower(&mut self, id: Id, env: Option<Env>, ctx: Option<usize>) -> Result<Val, RewriteError> {
        let key = self.key(id, env, ctx);
        let (i, env, ctx) = key.clone();
        if let Some(v) = self.memo.get(&key) {
            return Ok(v.clone());
        }
        let node = self.expr[id].clone();
        // `(split m x)` substitutes `m1·M0+m0` for `m` in `x`; a binder of `m1` or `m0` inside
        // `x` that encloses a use of `m` would capture it, and ranks cannot be renamed.
        if let (Some(e), Some(r)) = (&env, binder(&node)) {
            let bound = self.rank_name[usize::from(r)].clone().unwrap_or_default();
            if bound == self.sig.tiles.outer(&e.var) || bound == self.env_inner(e) {
                return Err(RewriteError::Internal(format!(
                    "{bound} is bound inside the split of {}, where it would be captured",
                    e.var
                )));
            }
        }
        let val = match &node {
            Cx::Lit(lit) => Val::Const(match lit {
                Lit::Num(bits) => Constant::Num(f64::from_bits(*bits)),
                Lit::NegInf => Constant::NegInf,
                Lit::InvSqrt(r) => {
                    let r = r.as_str().to_string();
                    match self.cascade.ranks.iter().position(|x| x.name == r) {
                        Some(p) => Constant::InvSqrtSize(RankId(p as u32)),
                        None => return Err(self.err(format!("1/sqrt of undeclared rank {r}"))),
                    }
                }
            }),
            Cx::At(children) => self.access(children, &env)?,
            Cx::Split([m, x]) | Cx::SplitKey([m, x]) => {
                if env.is_some() {
                    return Err(self.err("a split nested in another split"));
                }
                let var = self.rank_name[usize::from(*m)].clone().unwrap_or_default();
                let key = matches!(node, Cx::SplitKey(_));
                let parent = self.rank_of_var(&var)?;
                self.ensure_split(parent)?;
                if key {
                    self.ensure_key(parent)?;
                }
                self.lower(*x, Some(Env { var, key }), ctx)?
            }
            Cx::State(_) => {
                let Some(f) = ctx else {
                    return Err(self.err("a fold state outside its fold"));
                };
                self.fold_access(f, At::Prev)?
            }
            Cx::Fold([v, a, b]) | Cx::Scan([v, a, b]) | Cx::ScanPrev([v, a, b]) => {
                let hint = self.names.get(i).cloned().flatten();
                let f = self.fold(*v, *a, *b, &env, hint)?;
                let at = match node {
                    Cx::Fold(_) => At::Final,
                    Cx::Scan(_) => At::Next,
                    _ => At::Prev,
                };
                self.fold_access(f, at)?
            }
            Cx::Join([h, x]) => self.join(id, *h, *x, &env, ctx)?,
            _ if self.scaled_sum(id, &node).is_some() => {
                let (sum, c) = self.scaled_sum(id, &node).expect("checked");
                let sum_node = self.expr[sum].clone();
                let [r, x] = [sum_node.children()[0], sum_node.children()[1]];
                self.scaled_reduction(id, &sum_node, r, x, Some(c), &env, ctx)?
            }
            Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => {
                self.reduction(id, &node, *r, *x, &env, ctx)?
            }
            Cx::Where([c, x]) => self.filtered(*c, *x, &env, ctx)?,
            Cx::Mask(_) | Cx::Tri(_) => return Err(self.err("a filter condition used as a value")),
            Cx::Name(_) | Cx::Outer(_) | Cx::Inner(_) | Cx::Key(_) => {
                return Err(self.err("a rank variable used as a value"));
            }
            _ => {
                let value = self.map_expr(id, &env, ctx)?;
                let dims = self.node_dims(i, &env, ctx)?;
                self.einsum(id, &env, "T", dims, None, value)?
            }
        };
        self.memo.insert(key, val.clone());
        Ok(val)
    }

    /// `(join h x)`: a tensor over `h` written at the split index, `T[…, g*R+r, …] = X[…, g, r, …]`.
    fn join(
        &mut self,
        id: Id,
        h: Id,
        x: Id,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<Val, RewriteError> {
        let hv = self.rank_name[usize::from(h)].clone().unwrap_or_default();
        if env.as_ref().is_some_and(|e| e.var == hv) {
            return Err(self.err("a join inside a split of the same rank"));
        }
        let parent = self.rank_of_var(&hv)?;
        let (outer, inner) = self.ensure_split(parent)?;
        let value = self.operand(x, env, ctx)?;
        let dims = self.node_dims(usize::from(id), env, ctx)?;
        let val = self.einsum(id, env, "J", dims, None, value)?;
        let Val::Access(t, ..) = &val else {
            unreachable!("an Einsum's value is an access")
        };
        let last = self.body.last_mut().expect("the join's Einsum");
        for idx in &mut last.output.indices {
            if *idx == IndexExpr::Var(parent) {
                *idx = tiled_index(outer, inner);
            }
        }
        self.joined.insert(*t, parent);
        Ok(val)
    }

    /// A reduction node: one Einsum, with the body fused when it is a map used only here.
    /// `c · Σ_r x` or `(Σ_r x) · c` with a constant `c` and a reduction read only here: the sum
    /// and the constant, written as one Einsum `Σ_r x·c`.
    ///
    /// The normal form of a constant scale (`1/sqrt(E)`, a temperature constant) of a softmax
    /// score: since `c · Σ_r x = Σ_r x·c`, the scale of a contraction whose value reaches an
    /// exp-shift or a max is written inside it, the shape in which the fused kernel applies it
    /// once per score (FuseMax's and FlashAttention's scaled scores). Elsewhere (sigmoid
    /// attention's scores) the scale stays outside: inside, the op counts charge it once per
    /// point of the contraction, and no fused lowering looks for it there.
    fn scaled_sum(&self, id: Id, node: &Cx) -> Option<(Id, Id)> {
        let Cx::Mul([a, b]) = node else {
            return None;
        };
        if !self.score[usize::from(id)] {
            return None;
        }
        let constant = |id: &Id| matches!(self.expr[*id], Cx::Lit(Lit::Num(_) | Lit::InvSqrt(_)));
        let sum =
            |id: &Id| matches!(self.expr[*id], Cx::Sum(_)) && self.uses[usize::from(*id)] == 1;
        if constant(a) && sum(b) {
            Some((*b, *a))
        } else if constant(b) && sum(a) {
            Some((*a, *b))
        } else {
            None
        }
    }

    fn reduction(
        &mut self,
        id: Id,
        node: &Cx,
        r: Id,
        x: Id,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<Val, RewriteError> {
        self.scaled_reduction(id, node, r, x, None, env, ctx)
    }

    /// A reduction Einsum, its body multiplied by the constant `scale` when there is one.
    #[allow(clippy::too_many_arguments)]
    fn scaled_reduction(
        &mut self,
        id: Id,
        node: &Cx,
        r: Id,
        x: Id,
        scale: Option<Id>,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<Val, RewriteError> {
        let op = match node {
            Cx::Sum(_) => ReduceOp::Sum,
            Cx::RMax(_) => ReduceOp::Max,
            Cx::RMin(_) => ReduceOp::Min,
            _ => ReduceOp::Prod,
        };
        let rv = self.rank_name[usize::from(r)].clone().unwrap_or_default();
        if !self.fv[usize::from(x)].contains(&rv) {
            return Err(RewriteError::Internal(format!(
                "a reduction over {rv} of a value that does not read it"
            )));
        }
        let rank = self.rank_of_var(&rv)?;
        let mut body = if is_map(&self.expr[x]) && self.uses[usize::from(x)] == 1 {
            self.map_expr(x, env, ctx)?
        } else {
            self.operand(x, env, ctx)?
        };
        if let Some(c) = scale {
            let rhs = self.operand(c, env, ctx)?;
            body = self.push_expr(Expr::Binary {
                op: BinaryOp::Mul,
                merge: BinaryOp::Mul.default_merge(),
                lhs: body,
                rhs,
            });
        }
        let dims = self.node_dims(usize::from(id), env, ctx)?;
        let reduction = (op != ReduceOp::Sum).then(|| Reduction {
            op,
            ranks: vec![rank],
        });
        // Reductions over the inner rank of a split are per tile: local.
        let local = self.order(&rv).1 == 2;
        let prefix = match op {
            ReduceOp::Sum if local => "SL",
            ReduceOp::Max if local => "LM",
            ReduceOp::Sum => "S",
            ReduceOp::Max => "MX",
            ReduceOp::Min => "MN",
            ReduceOp::Prod => "PR",
        };
        self.einsum(id, env, prefix, dims, reduction, body)
    }

    /// `(where (mask:k) x)`: the access to `x` with the mask's conditions as a filter, on the
    /// tiles under a split.
    fn filtered(
        &mut self,
        c: Id,
        x: Id,
        env: &Option<Env>,
        ctx: Option<usize>,
    ) -> Result<Val, RewriteError> {
        let mut conds = match self.expr[c] {
            Cx::Mask(Mask(k)) => self.sig.masks.get(k as usize).cloned().unwrap_or_default(),
            // `n0 <= m0` within a chunk of rank variable `m`.
            Cx::Tri(m) => {
                let m = self.rank_name[usize::from(m)].clone().unwrap_or_default();
                let parent = self.rank_of_var(&m)?;
                let (_, inner) = self.ensure_split(parent)?;
                let key = self.ensure_key(parent)?;
                vec![Compare {
                    lhs: IndexExpr::Var(key),
                    op: CompareOp::Le,
                    rhs: IndexExpr::Var(inner),
                }]
            }
            _ => return Err(self.err("a filter whose condition is not a mask")),
        };
        let Val::Access(t, idx, mut filters) = self.lower(x, env.clone(), ctx)? else {
            return Err(self.err("a filter on a constant"));
        };
        if let Some(e) = env {
            let parent = self.rank_of_var(&e.var)?;
            let tiled = self.env_index(parent, e)?;
            for c in &mut conds {
                c.lhs = substitute(&c.lhs, parent, &tiled);
                c.rhs = substitute(&c.rhs, parent, &tiled);
            }
        }
        // Attach the conditions to the last index that reads one of their variables.
        let mut vars = Vec::new();
        for c in &conds {
            c.lhs.collect_vars(&mut vars);
            c.rhs.collect_vars(&mut vars);
        }
        let position = idx
            .iter()
            .rposition(|i| {
                let mut v = Vec::new();
                i.collect_vars(&mut v);
                v.iter().any(|r| vars.contains(r))
            })
            .unwrap_or(0);
        if idx.is_empty() {
            return Err(self.err("a filter on a scalar"));
        }
        match filters.iter_mut().find(|f| f.position == position) {
            Some(f) => f.conds.extend(conds),
            None => {
                filters.push(Filter { position, conds });
                filters.sort_by_key(|f| f.position);
            }
        }
        Ok(Val::Access(t, idx, filters))
    }

    fn access(&mut self, children: &[Id], env: &Option<Env>) -> Result<Val, RewriteError> {
        let tname = self.rank_name[usize::from(children[0])]
            .clone()
            .unwrap_or_default();
        let Some(t) = self
            .cascade
            .tensors
            .iter()
            .position(|x| x.name == tname && x.kind == TensorKind::Input)
        else {
            return Err(self.err(format!("an access to {tname}, which is not an input")));
        };
        let vars: Vec<String> = children[1..]
            .iter()
            .map(|c| self.rank_name[usize::from(*c)].clone().unwrap_or_default())
            .collect();
        let mut indices = Vec::new();
        for v in &vars {
            indices.push(self.var_index(v)?);
        }
        let Some(e) = env else {
            return Ok(Val::Access(TensorId(t as u32), indices, Vec::new()));
        };
        let m = &e.var;
        let key = (t, m.clone(), e.key);
        if let Some(v) = self.split_inputs.get(&key) {
            return Ok(v.clone());
        }
        // BK[e,m1,m0] = K[e, m1*M0+m0] in the init section.
        let parent = self.rank_of_var(m)?;
        let tiled = self.env_index(parent, e)?;
        let mut src = Vec::new();
        let mut out_dims = Vec::new();
        for v in &vars {
            if v == m {
                src.push(tiled.clone());
                out_dims.push(self.sig.tiles.outer(m));
                out_dims.push(self.env_inner(e));
            } else {
                src.push(self.var_index(v)?);
                out_dims.push(v.clone());
            }
        }
        let name = self.fresh(Some(&format!("B{tname}")), "B");
        let tensor = self.new_tensor(name, &out_dims)?;
        let mut out_idx = Vec::new();
        for d in &out_dims {
            out_idx.push(self.var_index(d)?);
        }
        let value = self.push_expr(Expr::Access(Access {
            tensor: TensorId(t as u32),
            indices: src,
            filters: Vec::new(),
        }));
        self.init.push(Einsum {
            section: Section::Init,
            output: Access {
                tensor,
                indices: out_idx.clone(),
                filters: Vec::new(),
            },
            reduction: None,
            value,
        });
        let val = Val::Access(tensor, out_idx, Vec::new());
        self.split_inputs.insert(key, val.clone());
        Ok(val)
    }

    /// The state tensor of a fold with its initial Einsum, and its update once the step is
    /// lowered: `S[0, …] = init` and `S[i+1, …] = step`.
    fn fold(
        &mut self,
        v: Id,
        init: Id,
        step: Id,
        env: &Option<Env>,
        hint: Option<String>,
    ) -> Result<usize, RewriteError> {
        let f = self.fold_alloc(v, init, step, env, hint)?;
        if self.folds[f].done {
            return Ok(f);
        }
        self.folds[f].done = true;
        let value = if is_map(&self.expr[step]) {
            self.map_expr(step, env, Some(f))?
        } else {
            self.operand(step, env, Some(f))?
        };
        let Val::Access(tensor, idx, _) = self.fold_access(f, At::Next)? else {
            unreachable!("fold access")
        };
        self.body.push(Einsum {
            section: Section::Body,
            output: Access {
                tensor,
                indices: idx,
                filters: Vec::new(),
            },
            reduction: None,
            value,
        });
        Ok(f)
    }

    /// The state tensor of a fold and its initial Einsum, declared once per fold.
    fn fold_alloc(
        &mut self,
        v: Id,
        init: Id,
        step: Id,
        env: &Option<Env>,
        hint: Option<String>,
    ) -> Result<usize, RewriteError> {
        let key = (
            usize::from(v),
            usize::from(init),
            usize::from(step),
            env.clone(),
        );
        if let Some(f) = self.fold_keys.get(&key) {
            return Ok(*f);
        }
        let var = self.rank_name[usize::from(v)].clone().unwrap_or_default();
        match &self.iterative {
            Some(other) if *other != var => {
                return Err(self.err(format!("folds over two ranks ({other} and {var})")));
            }
            _ => self.iterative = Some(var.clone()),
        }
        let init_val = match &self.expr[init] {
            Cx::Lit(Lit::Num(bits)) => Constant::Num(f64::from_bits(*bits)),
            Cx::Lit(Lit::NegInf) => Constant::NegInf,
            Cx::Lit(Lit::InvSqrt(r)) => {
                let r = r.as_str();
                match self.cascade.ranks.iter().position(|x| x.name == r) {
                    Some(p) => Constant::InvSqrtSize(RankId(p as u32)),
                    None => return Err(self.err(format!("1/sqrt of undeclared rank {r}"))),
                }
            }
            _ => return Err(self.err("a fold whose initial value is not a constant")),
        };
        let mut vars = self.fv[usize::from(step)].clone();
        vars.extend(self.fv[usize::from(init)].iter().cloned());
        vars.insert(var.clone());
        let dims = self.dims(&vars, env)?;
        // A running max (`RM`), a running sum (`RS`), or the reduction it replaces (`RSD`).
        let prefix = match &self.expr[step] {
            Cx::Max(_) => "RM",
            Cx::Add(_) => "RS",
            _ => "R",
        };
        let name = self.fresh(hint.as_deref(), prefix);
        let tensor = self.new_tensor(name, &dims)?;
        let f = self.folds.len();
        self.folds.push(Fold {
            tensor,
            var: var.clone(),
            dims: dims.clone(),
            done: false,
        });
        self.fold_keys.insert(key, f);
        // S[0, …] = init.
        let mut idx0 = Vec::new();
        for d in &dims {
            idx0.push(if *d == var {
                IndexExpr::Lit(0)
            } else {
                self.var_index(d)?
            });
        }
        let value = self.push_expr(Expr::Const(init_val));
        self.init.push(Einsum {
            section: Section::Init,
            output: Access {
                tensor,
                indices: idx0,
                filters: Vec::new(),
            },
            reduction: None,
            value,
        });
        Ok(f)
    }

    fn fold_access(&mut self, f: usize, at: At) -> Result<Val, RewriteError> {
        let Fold {
            tensor, var, dims, ..
        } = self.folds[f].clone();
        let rank = self.rank_of_var(&var)?;
        let mut indices = Vec::new();
        for d in &dims {
            indices.push(if *d == var {
                match at {
                    At::Prev => IndexExpr::Var(rank),
                    At::Next => {
                        IndexExpr::Add(Box::new(IndexExpr::Var(rank)), Box::new(IndexExpr::Lit(1)))
                    }
                    At::Final => IndexExpr::Size(rank),
                }
            } else {
                self.var_index(d)?
            });
        }
        Ok(Val::Access(tensor, indices, Vec::new()))
    }

    fn finish(mut self, val: Val) -> Result<Cascade, RewriteError> {
        let (out_name, out_vars) = self.sig.output.clone();
        let mut out_idx = Vec::new();
        for v in &out_vars {
            out_idx.push(self.var_index(v)?);
        }
        // Rename the last Einsum's tensor to the output when it is the root's own tensor.
        let renamable = match (&val, self.body.last()) {
            (Val::Access(t, idx, filters), Some(last)) => {
                last.output.tensor == *t
                    && idx.iter().all(|x| matches!(x, IndexExpr::Var(_)))
                    && self.body.iter().filter(|e| e.output.tensor == *t).count() == 1
                    && idx.len() == out_idx.len()
                    && filters.is_empty()
            }
            _ => false,
        };
        let output = if renamable {
            let Val::Access(t, _, _) = val else {
                unreachable!("checked above")
            };
            self.cascade.tensors[t.index()].name = out_name;
            let ranks: Vec<RankId> = out_idx
                .iter()
                .map(|x| match x {
                    IndexExpr::Var(r) => *r,
                    _ => unreachable!("plain output variables"),
                })
                .collect();
            self.cascade.tensors[t.index()].ranks = ranks;
            // A tensor written through a join keeps its split index.
            if let Some(&parent) = self.joined.get(&t) {
                let (outer, inner) = self.ensure_split(parent)?;
                for idx in &mut out_idx {
                    if *idx == IndexExpr::Var(parent) {
                        *idx = tiled_index(outer, inner);
                    }
                }
            }
            self.body.last_mut().expect("checked above").output.indices = out_idx;
            t
        } else {
            let value = self.val_expr(val);
            let ranks = out_idx
                .iter()
                .map(|x| match x {
                    IndexExpr::Var(r) => *r,
                    _ => unreachable!("plain output variables"),
                })
                .collect();
            self.cascade.tensors.push(Tensor {
                name: out_name,
                kind: TensorKind::Intermediate,
                ranks,
            });
            let t = TensorId(self.cascade.tensors.len() as u32 - 1);
            self.body.push(Einsum {
                section: Section::Body,
                output: Access {
                    tensor: t,
                    indices: out_idx,
                    filters: Vec::new(),
                },
                reduction: None,
                value,
            });
            t
        };
        self.cascade.outputs = vec![output];
        if let Some(var) = self.iterative.clone() {
            let r = self.rank_of_var(&var)?;
            self.cascade.stop = Some(Compare {
                lhs: IndexExpr::Var(r),
                op: CompareOp::Ge,
                rhs: IndexExpr::Size(r),
            });
        }
        // Before-loop Einsums first, then the loop, then what reads its results: each phase
        // keeps program (dependency) order.
        if let Some(var) = self.iterative.clone() {
            // Fails when the fold's variable names no rank.
            self.rank_of_var(&var)?;
            // The loop plan of the cascade as written so far decides each Einsum's phase.
            let mut draft = self.cascade.clone();
            draft.einsums = self.init.iter().chain(&self.body).cloned().collect();
            let plan = LoopPlan::new(&draft);
            let first = self.init.len();
            let phase = |k: usize| plan.phase(crate::ast::EinsumId((first + k) as u32));
            let mut order: Vec<usize> = (0..self.body.len()).collect();
            order.sort_by_key(|k| phase(*k));
            let mut body: Vec<Option<Einsum>> = std::mem::take(&mut self.body)
                .into_iter()
                .map(Some)
                .collect();
            self.body = order.into_iter().filter_map(|k| body[k].take()).collect();
        }
        let mut einsums = std::mem::take(&mut self.init);
        einsums.append(&mut self.body);
        self.cascade.einsums = einsums;
        drop_unused_splits(&mut self.cascade);
        Ok(self.cascade)
    }
}

/// Drops a split the input declared whose parts the derived cascade no longer uses (the
/// recurrence derived from a chunked cascade by `scan-chunk-rev` runs over `M` itself). Only
/// trailing ranks are dropped, so no rank id changes; a split part declared before a used
/// rank stays, and `verify` then names it.
fn drop_unused_splits(c: &mut Cascade) {
    let used = crate::verify::used_ranks(c);
    let mut keep = c.ranks.len();
    while keep > 0 && !used[keep - 1] {
        let r = RankId(keep as u32 - 1);
        // A part of a split both of whose parts are unused, or an unused second variable.
        let part = c.ranks.iter().any(|p| {
            p.split
                .is_some_and(|(o, i)| (o == r || i == r) && !used[o.index()] && !used[i.index()])
        });
        if !part && c.ranks[r.index()].range_of.is_none() {
            break;
        }
        keep -= 1;
    }
    if keep == c.ranks.len() {
        return;
    }
    c.ranks.truncate(keep);
    for r in &mut c.ranks {
        if r.split
            .is_some_and(|(o, i)| o.index() >= keep || i.index() >= keep)
        {
            r.split = None;
        }
        if r.range_of.is_some_and(|i| i.index() >= keep) {
            r.range_of = None;
        }
    }
}

/// `m1*M0 + m0`: the index of a split rank from its parts.
fn tiled_index(outer: RankId, inner: RankId) -> IndexExpr {
    IndexExpr::Add(
        Box::new(IndexExpr::Mul(
            Box::new(IndexExpr::Var(outer)),
            Box::new(IndexExpr::Size(inner)),
        )),
        Box::new(IndexExpr::Var(inner)),
    )
}

/// `idx` with the variable of `rank` replaced by `to`.
fn substitute(idx: &IndexExpr, rank: RankId, to: &IndexExpr) -> IndexExpr {
    let sub = |x: &IndexExpr| Box::new(substitute(x, rank, to));
    match idx {
        IndexExpr::Var(r) if *r == rank => to.clone(),
        IndexExpr::Var(_) | IndexExpr::Size(_) | IndexExpr::Lit(_) => idx.clone(),
        IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
        IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
        IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
    }
}

/// Problems a lowered cascade must not have: the loop plan's ambiguities (a per-step Einsum
/// that reads an after-loop tensor or a final state, …, see [`crate::plan`]). Empty for a valid
/// cascade.
pub fn phase_problems(c: &Cascade) -> Vec<String> {
    let plan = LoopPlan::new(c);
    let name = |t: TensorId| c.tensor(t).name.clone();
    let out = |id: crate::ast::EinsumId| name(c.einsum(id).output.tensor);
    let mut problems: Vec<String> = plan
        .ambiguities
        .iter()
        .map(|a| match a {
            Ambiguity::LoopReadsPostLoop { einsum, tensor, .. } => format!(
                "{}, written once per step, reads {}, which is ready only after the loop",
                out(*einsum),
                name(*tensor)
            ),
            Ambiguity::ReadsOtherStep { einsum, tensor, .. } => format!(
                "{}, written once per step, reads another step of {} (a later one or the final state)",
                out(*einsum),
                name(*tensor)
            ),
            Ambiguity::InitWritesStep { einsum } => {
                format!("init writes {} at a step", out(*einsum))
            }
            Ambiguity::SeveralIterativeRanks { ranks } => {
                format!("{} iterative ranks", ranks.len())
            }
        })
        .collect();
    problems.sort();
    problems.dedup();
    problems
}

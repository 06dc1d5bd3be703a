//! Cascade → expression: every intermediate tensor is inlined into the output's expression.
//!
//! Every valid cascade with one output lifts, whatever its loop plan:
//!
//! * an input read `K[e,m]` is `(at K e m)`; read at a split index `K[e, m1*M0+m0]` of the
//!   cascade's own split `M -> M1 M0` it is `(split m (at K e m))`, and the split's tile
//!   variables are the cascade's own parts (see [`Tiles::of_cascade`]);
//! * an intermediate read is its writer's term, with the writer's index variables renamed to the
//!   reader's (capture-avoiding) and split where the reader uses a split index; a tensor written
//!   at a split index (`OUT[f, g*R+r] = …`) is a `(join h …)` of its value;
//! * a filter on any access, or on an Einsum's output, is `(where (mask:k) …)` around the value
//!   it filters;
//! * a running state `S` of the iterative rank `r` (written at `r+1` by one update, initialised
//!   to a constant at `0` or never, which is absent) is a recurrence over `r` whose step is the
//!   update's term: read at `r+1` it is `(scan r init step)`, at `r` `(scan-prev r init step)`
//!   (inside its own update `(state r)`), at the end `(fold r init step)`, at `0` its
//!   initial constant.
//!
//! What still cannot be lifted is refused as [`RewriteError::Unsupported`], naming the Einsum
//! and what to write instead: several outputs, two states whose updates read each other, a
//! stop condition other than `r >= R`, nested splits, and index arithmetic other than
//! plain variables, a split's `o*I+i` (or `o*I+n` with its second variable `n`, as
//! `(split-key …)`) and a state's `r`, `r+1`, `R` and `0`.
//!
//! Nothing here recurses with the size of the cascade: tensors are lifted in dependency order
//! from an explicit work stack, expressions in arena order (children first), and renaming walks
//! the term with an explicit stack.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use egg::{Id, Language, RecExpr, Symbol};

use super::RewriteError;
use super::lang::{Cx, Lit, Mask, Tiles, binary_node};
use crate::ast::{
    Access, Cascade, Compare, CompareOp, Constant, EinsumId, Expr, ExprId, IndexExpr, RankId,
    ReduceOp, Section, TensorId, TensorKind,
};
use crate::dsl;

/// The expression of a cascade plus what is needed to write it back as a cascade.
#[derive(Debug, Clone)]
pub struct Lifted {
    pub expr: RecExpr<Cx>,
    /// The original tensor each expression node computes, if any (parallel to `expr`). A fold,
    /// scan or scan-prev node is named after the running state it reads.
    pub names: Vec<Option<String>>,
    pub signature: Signature,
}

/// The interface of a cascade that rewriting keeps: name, ranks, inputs and output.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub name: String,
    /// Declared rank names in order, with whether each is a parameter.
    pub ranks: Vec<(String, bool)>,
    /// The cascade's own splits, as (parent, outer, inner) rank names.
    pub splits: Vec<(String, String, String)>,
    /// Input tensors with their rank names.
    pub inputs: Vec<(String, Vec<String>)>,
    /// The output tensor and its index variables in order.
    pub output: (String, Vec<String>),
    /// Filter conditions of the cascade (`m <= p`), each a conjunction, by mask number.
    pub masks: Vec<Vec<Compare>>,
    /// The names of the tile variables a split of each rank uses (fresh for the cascade, or
    /// the cascade's own parts).
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

    /// The mask number of a conjunction of conditions, added on first use.
    pub fn mask(&mut self, conds: Vec<Compare>) -> Id {
        let k = match self.masks.iter().position(|m| *m == conds) {
            Some(k) => k,
            None => {
                self.masks.push(conds);
                self.masks.len() - 1
            }
        };
        self.add(Cx::Mask(Mask(k as u32)))
    }
}

/// Converts a cascade into one expression (see the module documentation).
pub fn lift(cascade: &Cascade) -> Result<Lifted, RewriteError> {
    let mut l = Lifter::new(cascade)?;
    let output = cascade.outputs[0];
    let Some(Kind::Written(_)) = l.kinds.get(output.index()) else {
        return Err(l.refuse(
            None,
            format!(
                "the output {} is a running state",
                cascade.tensor(output).name
            ),
            "write the final state into a tensor of its own (`OUT[…] = S[…, R, …]`) and output that",
        ));
    };
    let key = (output, Ctx::Top);
    l.ensure(key)?;
    let def = l.defs[&key].clone();
    let out_vars: Vec<String> = def.vars.iter().flatten().cloned().collect();
    let root = def.term;
    let expr = reorder_root(&l.b.expr, root);
    let names = reorder_names(&l.b, root);
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
            splits: cascade
                .ranks
                .iter()
                .filter_map(|r| {
                    let (o, i) = r.split?;
                    Some((
                        r.name.clone(),
                        cascade.rank(o).name.clone(),
                        cascade.rank(i).name.clone(),
                    ))
                })
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
            masks: l.b.masks.clone(),
            tiles: l.tiles.clone(),
        },
    })
}

/// Whose step a term is built for: inside the update of state `S`, a read of `S[r]` is the
/// fold's own `(state r)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ctx {
    Top,
    Step(TensorId),
}

/// How a tensor gets its values.
#[derive(Debug, Clone)]
enum Kind {
    Input,
    /// One Einsum writes it (Initialization or body).
    Written(EinsumId),
    /// A running state: `update` writes it at `r+1` in dimension `dim`, starting from `init`.
    State {
        update: EinsumId,
        init: Lit,
        dim: usize,
    },
}

/// The term of a tensor and the index variable of each of its dimensions (`None`: the state
/// dimension of a running state's step).
#[derive(Debug, Clone)]
struct Def {
    term: Id,
    vars: Vec<Option<String>>,
}

type Key = (TensorId, Ctx);

/// Where a state is read along the iterative rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateAt {
    Prev,
    Next,
    Final,
    Zero,
}

struct Lifter<'a> {
    c: &'a Cascade,
    iterative: Option<RankId>,
    kinds: Vec<Kind>,
    tiles: Tiles,
    b: Builder,
    /// Free index variables of every node of `b.expr`.
    fv: Vec<BTreeSet<String>>,
    defs: HashMap<Key, Def>,
}

impl<'a> Lifter<'a> {
    fn new(c: &'a Cascade) -> Result<Lifter<'a>, RewriteError> {
        let mut l = Lifter {
            c,
            iterative: None,
            kinds: Vec::new(),
            tiles: Tiles::of_cascade(c),
            b: Builder::default(),
            fv: Vec::new(),
            defs: HashMap::new(),
        };
        if c.outputs.len() != 1 {
            let names: Vec<&str> = c
                .outputs
                .iter()
                .map(|t| c.tensor(*t).name.as_str())
                .collect();
            return Err(l.refuse(
                None,
                format!("{} outputs ({})", c.outputs.len(), names.join(", ")),
                "the rewriter derives one output at a time: keep one `output` line per copy of the cascade",
            ));
        }
        for r in &c.ranks {
            if let Some((o, i)) = r.split
                && (c.rank(o).split.is_some() || c.rank(i).split.is_some())
            {
                return Err(l.refuse(
                    None,
                    format!("the nested split of rank {}", r.name),
                    "split each rank once (`split M -> M1 M0`); the rewriter tiles further itself",
                ));
            }
        }
        // `verify` has rejected ambiguous loop phases; one iterative rank is what is left.
        let iterative = c.iterative_ranks();
        if iterative.len() > 1 {
            return Err(l.refuse(
                None,
                format!("{} iterative ranks", iterative.len()),
                "run `cascade check` and write what it suggests",
            ));
        }
        l.iterative = iterative.first().copied();
        if let Some(r) = l.iterative {
            let want = Compare {
                lhs: IndexExpr::Var(r),
                op: CompareOp::Ge,
                rhs: IndexExpr::Size(r),
            };
            let rank = &c.rank(r).name;
            if c.stop.as_ref() != Some(&want) {
                let v = c.var_name(r);
                return Err(l.refuse(
                    None,
                    format!("a loop over {rank} without the stop condition `{v} >= {rank}`"),
                    &format!(
                        "write `stop {v} >= {rank}`: the rewriter runs the loop over all of {rank}"
                    ),
                ));
            }
            if c.rank(r).split.is_some() {
                return Err(l.refuse(
                    None,
                    format!("a loop over {rank}, which the cascade also splits"),
                    "iterate over one part of the split (`m1`) instead",
                ));
            }
        }
        l.kinds = l.classify()?;
        Ok(l)
    }

    /// A refusal naming the Einsum (if any), what is not supported and what to write instead.
    fn refuse(&self, einsum: Option<EinsumId>, what: String, fix: &str) -> RewriteError {
        let at = einsum.map_or(String::new(), |id| {
            format!(" in `{}`", dsl::print_einsum(self.c, id).trim())
        });
        RewriteError::Unsupported {
            cascade: self.c.name.clone(),
            what: format!("{what}{at}; {fix}"),
        }
    }

    /// The kind of every tensor, from its writers.
    fn classify(&self) -> Result<Vec<Kind>, RewriteError> {
        let c = self.c;
        let mut writers: Vec<Vec<EinsumId>> = vec![Vec::new(); c.tensors.len()];
        for id in c.einsum_ids() {
            writers[c.einsum(id).output.tensor.index()].push(id);
        }
        let mut kinds = Vec::with_capacity(c.tensors.len());
        for (t, ws) in writers.iter().enumerate() {
            let tensor = &c.tensors[t];
            if tensor.kind == TensorKind::Input {
                kinds.push(Kind::Input);
                continue;
            }
            let step_dim = |id: EinsumId| {
                let r = self.iterative?;
                c.einsum(id)
                    .output
                    .indices
                    .iter()
                    .position(|i| i.shifted_var() == Some(r))
            };
            let updates: Vec<EinsumId> = ws
                .iter()
                .copied()
                .filter(|w| step_dim(*w).is_some())
                .collect();
            match (&ws[..], &updates[..]) {
                ([], _) => {
                    return Err(self.refuse(
                        None,
                        format!("{}, which is read but never written", tensor.name),
                        "write it or declare it an input",
                    ));
                }
                ([w], []) => kinds.push(Kind::Written(*w)),
                (_, [update]) => {
                    let dim = step_dim(*update).expect("an update");
                    let idx = &c.einsum(*update).output.indices[dim];
                    if *idx
                        != IndexExpr::Add(
                            Box::new(IndexExpr::Var(self.iterative.expect("a loop"))),
                            Box::new(IndexExpr::Lit(1)),
                        )
                    {
                        return Err(self.refuse(
                            Some(*update),
                            format!("the state index `{}`", dsl::print_index(c, idx)),
                            "write each step's state at `r+1`, read the previous one at `r`",
                        ));
                    }
                    let mut init = Lit::num(0.0);
                    for w in ws.iter().filter(|w| *w != update) {
                        let e = c.einsum(*w);
                        let at_zero = e.section == Section::Init
                            && e.output.indices.get(dim) == Some(&IndexExpr::Lit(0));
                        if !at_zero {
                            return Err(self.refuse(
                                Some(*w),
                                format!("a second writer of the running state {}", tensor.name),
                                "initialise a state once in `init` at index 0 and update it once per step",
                            ));
                        }
                        init = match c.expr(e.value) {
                            Expr::Const(Constant::Num(x)) if x.is_finite() => Lit::num(*x),
                            Expr::Const(Constant::NegInf) => Lit::NegInf,
                            Expr::Const(Constant::InvSqrtSize(r)) => {
                                Lit::InvSqrt(Symbol::from(c.rank(*r).name.as_str()))
                            }
                            _ => {
                                return Err(self.refuse(
                                    Some(*w),
                                    format!("the initial state of {} is not a constant", tensor.name),
                                    "start the state from a constant (`S[…, 0, …] = 0`) and fold the first value in with the update",
                                ));
                            }
                        };
                    }
                    kinds.push(Kind::State {
                        update: *update,
                        init,
                        dim,
                    });
                }
                (_, []) => {
                    return Err(self.refuse(
                        Some(ws[1]),
                        format!("{} is written twice", tensor.name),
                        "give each written tensor a name of its own",
                    ));
                }
                (_, _) => {
                    return Err(self.refuse(
                        Some(updates[1]),
                        format!("a second update of the running state {}", tensor.name),
                        "update each state once per step",
                    ));
                }
            }
        }
        Ok(kinds)
    }

    // -----------------------------------------------------------------------------------------
    // Terms, with their free variables.

    fn add(&mut self, node: Cx) -> Id {
        let before = self.b.expr.as_ref().len();
        let id = self.b.add(node);
        if self.b.expr.as_ref().len() > before {
            let vars = self.node_vars(&self.b.expr[id].clone());
            self.fv.push(vars);
        }
        id
    }

    fn name(&mut self, s: &str) -> Id {
        self.add(Cx::Name(Symbol::from(s)))
    }

    fn mask(&mut self, conds: Vec<Compare>) -> Id {
        let before = self.b.expr.as_ref().len();
        let id = self.b.mask(conds);
        if self.b.expr.as_ref().len() > before {
            let vars = self.node_vars(&self.b.expr[id].clone());
            self.fv.push(vars);
        }
        id
    }

    /// The rank variable a name node stands for (`m`, and the tiles of `(outer m)`).
    fn var_of(&self, id: Id) -> String {
        match &self.b.expr[id] {
            Cx::Name(s) => s.as_str().to_string(),
            Cx::Outer(m) => self.tiles.outer(&self.var_of(*m)),
            Cx::Inner(m) => self.tiles.inner(&self.var_of(*m)),
            Cx::Key(m) => self.tiles.key(&self.var_of(*m)),
            _ => String::new(),
        }
    }

    /// The free index variables of a node, from its children's (as the analysis computes them).
    fn node_vars(&self, node: &Cx) -> BTreeSet<String> {
        let fv = |id: &Id| self.fv[usize::from(*id)].clone();
        match node {
            Cx::Name(_) | Cx::Outer(_) | Cx::Inner(_) | Cx::Key(_) | Cx::Lit(_) => BTreeSet::new(),
            Cx::Mask(Mask(k)) => {
                let mut ranks = Vec::new();
                for cond in &self.b.masks[*k as usize] {
                    cond.lhs.collect_vars(&mut ranks);
                    cond.rhs.collect_vars(&mut ranks);
                }
                ranks.iter().map(|r| self.c.var_name(*r)).collect()
            }
            Cx::At(ch) => ch[1..].iter().map(|v| self.var_of(*v)).collect(),
            Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => {
                let mut v = fv(x);
                v.remove(&self.var_of(*r));
                v
            }
            Cx::Split([m, x]) | Cx::SplitKey([m, x]) => {
                let mut v = fv(x);
                let m = self.var_of(*m);
                if v.remove(&m) {
                    v.insert(self.tiles.outer(&m));
                    v.insert(match node {
                        Cx::Split(_) => self.tiles.inner(&m),
                        _ => self.tiles.key(&m),
                    });
                }
                v
            }
            Cx::Join([h, x]) => {
                let mut v = fv(x);
                let h = self.var_of(*h);
                let had = v.remove(&self.tiles.outer(&h)) | v.remove(&self.tiles.inner(&h));
                if had {
                    v.insert(h);
                }
                v
            }
            Cx::Fold([i, a, s]) => {
                let mut v = fv(a);
                v.extend(fv(s));
                v.remove(&self.var_of(*i));
                v
            }
            Cx::Scan([i, a, s]) | Cx::ScanPrev([i, a, s]) => {
                let mut v = fv(a);
                v.extend(fv(s));
                v.insert(self.var_of(*i));
                v
            }
            Cx::State(i) => BTreeSet::from([self.var_of(*i)]),
            other => other.children().iter().flat_map(fv).collect(),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Dependency-ordered lifting with an explicit stack.

    /// Lifts `root` and everything it reads; refuses a cycle between running states.
    fn ensure(&mut self, root: Key) -> Result<(), RewriteError> {
        let mut stack: Vec<(Key, bool)> = vec![(root, false)];
        let mut open: HashSet<Key> = HashSet::new();
        let mut path: Vec<Key> = Vec::new();
        while let Some((key, expanded)) = stack.pop() {
            if self.defs.contains_key(&key) {
                continue;
            }
            if expanded {
                let def = self.compute(key)?;
                open.remove(&key);
                path.pop();
                self.defs.insert(key, def);
                continue;
            }
            if !open.insert(key) {
                return Err(self.cycle(&path, key));
            }
            path.push(key);
            stack.push((key, true));
            for dep in self.deps(key)? {
                if !self.defs.contains_key(&dep) {
                    stack.push((dep, false));
                }
            }
        }
        Ok(())
    }

    /// The refusal of two running states whose updates read each other.
    fn cycle(&self, path: &[Key], key: Key) -> RewriteError {
        let from = path.iter().position(|k| *k == key).unwrap_or(0);
        let states: Vec<String> = path[from..]
            .iter()
            .filter_map(|(t, ctx)| match ctx {
                Ctx::Step(s) if s == t => Some(self.c.tensor(*t).name.clone()),
                _ => None,
            })
            .collect();
        let update = match self.kinds[key.0.index()] {
            Kind::State { update, .. } => Some(update),
            Kind::Written(w) => Some(w),
            Kind::Input => None,
        };
        self.refuse(
            update,
            format!(
                "running states whose updates read each other ({})",
                states.join(", ")
            ),
            "let each state's update read only its own previous value and states that do not read it (merge the two into one state, or compute one from the other)",
        )
    }

    /// The writer Einsum of a key: a tensor's writer, or a state's update for its step.
    fn writer(&self, key: Key) -> EinsumId {
        match self.kinds[key.0.index()] {
            Kind::Written(w) => w,
            Kind::State { update, .. } => update,
            Kind::Input => unreachable!("inputs have no writer"),
        }
    }

    fn deps(&self, key: Key) -> Result<Vec<Key>, RewriteError> {
        let (_, ctx) = key;
        let e = self.c.einsum(self.writer(key));
        let mut out = Vec::new();
        for a in self.c.accesses(e.value) {
            match self.kinds[a.tensor.index()] {
                Kind::Input => {}
                Kind::Written(_) => out.push((a.tensor, ctx)),
                Kind::State { dim, .. } => {
                    let at = self.state_at(a, dim, self.writer(key))?;
                    let own = ctx == Ctx::Step(a.tensor) && at == StateAt::Prev;
                    if at != StateAt::Zero && !own {
                        out.push((a.tensor, Ctx::Step(a.tensor)));
                    }
                }
            }
        }
        Ok(out)
    }

    fn state_at(&self, a: &Access, dim: usize, reader: EinsumId) -> Result<StateAt, RewriteError> {
        let r = self.iterative.expect("states need a loop");
        let next = IndexExpr::Add(Box::new(IndexExpr::Var(r)), Box::new(IndexExpr::Lit(1)));
        match &a.indices[dim] {
            IndexExpr::Var(v) if *v == r => Ok(StateAt::Prev),
            IndexExpr::Size(v) if *v == r => Ok(StateAt::Final),
            IndexExpr::Lit(0) => Ok(StateAt::Zero),
            idx if *idx == next => Ok(StateAt::Next),
            idx => Err(self.refuse(
                Some(reader),
                format!(
                    "the read of state {} at `{}`",
                    self.c.tensor(a.tensor).name,
                    dsl::print_index(self.c, idx)
                ),
                "read a state at `r` (the previous step), `r+1` (this step), the final size or 0",
            )),
        }
    }

    /// The term of one key, once everything it reads is lifted.
    fn compute(&mut self, key: Key) -> Result<Def, RewriteError> {
        let (t, ctx) = key;
        let id = self.writer(key);
        let state_dim = match self.kinds[t.index()] {
            Kind::State { dim, .. } => Some(dim),
            _ => None,
        };
        let c = self.c;
        let e = c.einsum(id);
        let mut vars: Vec<Option<String>> = Vec::new();
        let mut joins: Vec<RankId> = Vec::new();
        for (d, idx) in e.output.indices.iter().enumerate() {
            if Some(d) == state_dim {
                vars.push(None);
                continue;
            }
            match idx {
                IndexExpr::Var(v) => vars.push(Some(c.var_name(*v))),
                _ => match self.split_parent(idx) {
                    Some((p, false)) => {
                        vars.push(Some(c.var_name(p)));
                        joins.push(p);
                    }
                    _ => {
                        return Err(self.refuse(
                            Some(id),
                            format!("the output index `{}`", dsl::print_index(c, idx)),
                            "write outputs at plain index variables or at a split index `o*I+i`",
                        ));
                    }
                },
            }
        }
        let named: Vec<&String> = vars.iter().flatten().collect();
        if named.iter().collect::<BTreeSet<_>>().len() != named.len() {
            return Err(self.refuse(
                Some(id),
                "an output indexed twice by one rank".into(),
                "give each dimension of the output its own rank",
            ));
        }
        let mut term = self.expr_term(e.value, ctx, id)?;
        let conds: Vec<Compare> = e
            .output
            .filters
            .iter()
            .flat_map(|f| f.conds.iter().cloned())
            .collect();
        if !conds.is_empty() {
            let mask = self.mask(conds);
            term = self.add(Cx::Where([mask, term]));
        }
        let op = e.reduction.as_ref().map_or(ReduceOp::Sum, |r| r.op);
        let mut reduced = c.reduced_ranks(id);
        // Innermost reduction first: reduce the last-declared rank innermost.
        reduced.reverse();
        for r in reduced {
            let rv = self.name(&c.var_name(r));
            term = self.add(match op {
                ReduceOp::Sum => Cx::Sum([rv, term]),
                ReduceOp::Max => Cx::RMax([rv, term]),
                ReduceOp::Min => Cx::RMin([rv, term]),
                ReduceOp::Prod => Cx::RProd([rv, term]),
            });
        }
        for p in joins {
            let h = self.name(&c.var_name(p));
            term = self.add(Cx::Join([h, term]));
        }
        if state_dim.is_none() && self.b.names[usize::from(term)].is_none() {
            self.b.names[usize::from(term)] = Some(c.tensor(t).name.clone());
        }
        Ok(Def { term, vars })
    }

    /// The parent of a split whose index `idx` is (`m1*M0+m0` gives `M`), and whether the
    /// index uses the split's second variable (`m1*M0+n0`).
    fn split_parent(&self, idx: &IndexExpr) -> Option<(RankId, bool)> {
        self.c.ranks.iter().enumerate().find_map(|(i, r)| {
            let (o, inner) = r.split?;
            let p = RankId(i as u32);
            if *idx == IndexExpr::tiled(o, inner) {
                return Some((p, false));
            }
            let second = self.c.second_variable(inner)?;
            let mut keyed = IndexExpr::tiled(o, inner);
            if let IndexExpr::Add(_, last) = &mut keyed {
                **last = IndexExpr::Var(second);
            }
            (*idx == keyed).then_some((p, true))
        })
    }

    /// `(split m term)`, or `(split-key m term)` for a split read at its second variable.
    fn split_term(&mut self, p: RankId, key: bool, term: Id) -> Id {
        let m = self.name(&self.c.var_name(p));
        self.add(if key {
            Cx::SplitKey([m, term])
        } else {
            Cx::Split([m, term])
        })
    }

    /// The term of an expression, node by node in arena order (children come first).
    fn expr_term(&mut self, root: ExprId, ctx: Ctx, reader: EinsumId) -> Result<Id, RewriteError> {
        let c = self.c;
        let mut ids: Vec<ExprId> = Vec::new();
        let mut stack = vec![root];
        let mut seen = HashSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            ids.push(id);
            match c.expr(id) {
                Expr::Unary(_, a) => stack.push(*a),
                Expr::Binary { lhs, rhs, .. } => stack.extend([*lhs, *rhs]),
                Expr::Access(_) | Expr::Const(_) => {}
            }
        }
        ids.sort();
        let mut terms: HashMap<ExprId, Id> = HashMap::new();
        for id in ids {
            let term = match c.expr(id) {
                Expr::Access(a) => self.read(a, ctx, reader)?,
                Expr::Const(k) => self.add(Cx::Lit(match k {
                    Constant::Num(x) if x.is_finite() => Lit::num(*x),
                    Constant::Num(x) => {
                        return Err(self.refuse(
                            Some(reader),
                            format!("the constant {x}"),
                            "use finite constants or -inf",
                        ));
                    }
                    Constant::NegInf => Lit::NegInf,
                    Constant::InvSqrtSize(r) => {
                        Lit::InvSqrt(Symbol::from(c.rank(*r).name.as_str()))
                    }
                })),
                Expr::Unary(op, a) => {
                    let a = terms[a];
                    self.add(Cx::Unary(*op, [a]))
                }
                Expr::Binary {
                    op,
                    merge,
                    lhs,
                    rhs,
                } => {
                    let ab = [terms[lhs], terms[rhs]];
                    self.add(binary_node(*op, *merge, ab))
                }
            };
            terms.insert(id, term);
        }
        Ok(terms[&root])
    }

    /// The term of one access in `ctx`, its filters applied.
    fn read(&mut self, a: &Access, ctx: Ctx, reader: EinsumId) -> Result<Id, RewriteError> {
        let c = self.c;
        let name = c.tensor(a.tensor).name.clone();
        let term = match self.kinds[a.tensor.index()].clone() {
            Kind::Input => {
                let mut vars = Vec::new();
                let mut split = None;
                for idx in &a.indices {
                    match idx {
                        IndexExpr::Var(v) => vars.push(c.var_name(*v)),
                        _ => match self.split_parent(idx) {
                            Some(p) if split.is_none() => {
                                split = Some(p);
                                vars.push(c.var_name(p.0));
                            }
                            _ => return Err(self.bad_index(a, reader)),
                        },
                    }
                }
                if vars.iter().collect::<BTreeSet<_>>().len() != vars.len() {
                    return Err(self.refuse(
                        Some(reader),
                        format!("the read of {name} with one variable twice"),
                        "read each dimension with its own rank variable",
                    ));
                }
                let mut children = vec![self.name(&name)];
                for v in &vars {
                    children.push(self.name(v));
                }
                let mut term = self.add(Cx::At(children.into_boxed_slice()));
                if let Some((p, key)) = split {
                    term = self.split_term(p, key, term);
                }
                term
            }
            Kind::Written(_) => {
                let def = self.defs[&(a.tensor, ctx)].clone();
                self.remap(&def, a, reader)?
            }
            Kind::State { init, dim, .. } => match self.state_at(a, dim, reader)? {
                StateAt::Zero if init == Lit::num(0.0) => {
                    return Err(self.refuse(
                        Some(reader),
                        format!("the read of {name}'s initial state, which is absent"),
                        "read a constant instead",
                    ));
                }
                StateAt::Zero => self.add(Cx::Lit(init)),
                StateAt::Prev if ctx == Ctx::Step(a.tensor) => {
                    let own = self.defs_vars_of_update(a.tensor);
                    let plain = a.indices.iter().enumerate().all(|(d, idx)| {
                        d == dim
                            || matches!(idx, IndexExpr::Var(v) if Some(c.var_name(*v)) == own[d])
                    });
                    if !plain {
                        return Err(self.refuse(
                            Some(reader),
                            format!("the read of {name}'s previous state at other indices than its update writes"),
                            "read the previous state at the indices its update writes",
                        ));
                    }
                    let r = self.name(&c.var_name(self.iterative.expect("a loop")));
                    self.add(Cx::State(r))
                }
                at => {
                    let step = self.defs[&(a.tensor, Ctx::Step(a.tensor))].clone();
                    let r = self.name(&c.var_name(self.iterative.expect("a loop")));
                    let init = self.add(Cx::Lit(init));
                    let children = [r, init, step.term];
                    let node = self.add(match at {
                        StateAt::Prev => Cx::ScanPrev(children),
                        StateAt::Next => Cx::Scan(children),
                        _ => Cx::Fold(children),
                    });
                    if self.b.names[usize::from(node)].is_none() {
                        self.b.names[usize::from(node)] = Some(name.clone());
                    }
                    let def = Def {
                        term: node,
                        vars: step.vars,
                    };
                    self.remap(&def, a, reader)?
                }
            },
        };
        let conds: Vec<Compare> = a
            .filters
            .iter()
            .flat_map(|f| f.conds.iter().cloned())
            .collect();
        if conds.is_empty() {
            return Ok(term);
        }
        let mask = self.mask(conds);
        Ok(self.add(Cx::Where([mask, term])))
    }

    /// The rank a variable iterates.
    fn rank_of_var(&self, v: &str) -> Option<RankId> {
        (0..self.c.ranks.len())
            .map(|i| RankId(i as u32))
            .find(|r| self.c.var_name(*r) == v)
    }

    /// The index variables a state's update writes, by dimension (`None` along the loop).
    fn defs_vars_of_update(&self, state: TensorId) -> Vec<Option<String>> {
        let Kind::State { update, dim, .. } = self.kinds[state.index()] else {
            return Vec::new();
        };
        self.c
            .einsum(update)
            .output
            .indices
            .iter()
            .enumerate()
            .map(|(d, idx)| match idx {
                IndexExpr::Var(v) if d != dim => Some(self.c.var_name(*v)),
                _ => None,
            })
            .collect()
    }

    fn bad_index(&self, a: &Access, reader: EinsumId) -> RewriteError {
        let idx: Vec<String> = a
            .indices
            .iter()
            .map(|i| dsl::print_index(self.c, i))
            .collect();
        self.refuse(
            Some(reader),
            format!(
                "the read `{}[{}]`",
                self.c.tensor(a.tensor).name,
                idx.join(", ")
            ),
            "the rewriter reads tensors at plain index variables or at one split index `o*I+i`: pass the shifted tensor as an input instead",
        )
    }

    /// A definition read through an access: its variables renamed to the reader's, split
    /// where the reader uses a split index.
    fn remap(&mut self, def: &Def, a: &Access, reader: EinsumId) -> Result<Id, RewriteError> {
        let c = self.c;
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        let mut split: Option<(RankId, bool)> = None;
        for (d, idx) in a.indices.iter().enumerate() {
            let Some(Some(dv)) = def.vars.get(d) else {
                continue;
            };
            let to = match idx {
                IndexExpr::Var(w) => c.var_name(*w),
                _ => match self.split_parent(idx) {
                    Some(p) if split.is_none() => {
                        split = Some(p);
                        c.var_name(p.0)
                    }
                    _ => return Err(self.bad_index(a, reader)),
                },
            };
            if map.values().any(|w| *w == to) {
                return Err(self.refuse(
                    Some(reader),
                    format!(
                        "the read of {} with one variable twice",
                        c.tensor(a.tensor).name
                    ),
                    "read each dimension with its own rank variable",
                ));
            }
            map.insert(dv.clone(), to);
        }
        map.retain(|k, v| k != v);
        let term = self.rename(def.term, &map).ok_or_else(|| {
            self.refuse(
                Some(reader),
                format!(
                    "the read of {} with variables its definition binds",
                    c.tensor(a.tensor).name
                ),
                "read it with ranks its definition does not reduce",
            )
        })?;
        let Some((p, key)) = split else {
            return Ok(term);
        };
        let pv = c.var_name(p);
        // A split read of a joined write is the value itself.
        if let Cx::Join([h, x]) = self.b.expr[term].clone()
            && !key
            && self.var_of(h) == pv
            && !self.fv[usize::from(x)].contains(&pv)
        {
            return Ok(x);
        }
        Ok(self.split_term(p, key, term))
    }

    /// `term` with free index variables renamed by `map`, walking with an explicit stack;
    /// `None` when a renamed variable would be captured by a binder inside the term.
    fn rename(&mut self, term: Id, map: &BTreeMap<String, String>) -> Option<Id> {
        type Map = Vec<(String, String)>;
        let restrict = |fv: &BTreeSet<String>, m: &Map| -> Map {
            m.iter().filter(|(k, _)| fv.contains(k)).cloned().collect()
        };
        let top: Map = restrict(
            &self.fv[usize::from(term)],
            &map.clone().into_iter().collect(),
        );
        if top.is_empty() {
            return Some(term);
        }
        let mut done: HashMap<(Id, Map), Id> = HashMap::new();
        let mut stack: Vec<(Id, Map, bool)> = vec![(term, top.clone(), false)];
        while let Some((id, m, expanded)) = stack.pop() {
            if done.contains_key(&(id, m.clone())) {
                continue;
            }
            let node = self.b.expr[id].clone();
            // The map each child is renamed with, restricted to its free variables.
            let mut kids: Vec<(Id, Map)> = Vec::new();
            let bound = |v: String, m: &Map| -> Option<Map> {
                // A renamed variable that becomes `v` inside a binder of `v` is captured.
                if m.iter().any(|(_, to)| *to == v) {
                    return None;
                }
                Some(m.iter().filter(|(k, _)| *k != v).cloned().collect())
            };
            match &node {
                Cx::At(_) | Cx::Name(_) | Cx::Outer(_) | Cx::Inner(_) | Cx::Key(_) | Cx::Lit(_) => {
                }
                Cx::Mask(_) => {}
                Cx::State(_) => return None,
                Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => {
                    let inner = bound(self.var_of(*r), &m)?;
                    kids.push((*x, restrict(&self.fv[usize::from(*x)], &inner)));
                }
                Cx::Fold([i, a, s]) | Cx::Scan([i, a, s]) | Cx::ScanPrev([i, a, s]) => {
                    let iv = self.var_of(*i);
                    if m.iter().any(|(k, _)| *k == iv) {
                        return None;
                    }
                    let inner = bound(iv, &m)?;
                    kids.push((*a, restrict(&self.fv[usize::from(*a)], &inner)));
                    kids.push((*s, restrict(&self.fv[usize::from(*s)], &inner)));
                }
                Cx::Split([v, x]) | Cx::SplitKey([v, x]) => {
                    let mv = self.var_of(*v);
                    let (o, i) = match node {
                        Cx::Split(_) => (self.tiles.outer(&mv), self.tiles.inner(&mv)),
                        _ => (self.tiles.outer(&mv), self.tiles.key(&mv)),
                    };
                    if m.iter()
                        .any(|(k, to)| *k == o || *k == i || *to == o || *to == i)
                    {
                        return None;
                    }
                    let inner = bound(mv, &m)?;
                    kids.push((*x, restrict(&self.fv[usize::from(*x)], &inner)));
                }
                Cx::Join([h, x]) => {
                    let hv = self.var_of(*h);
                    let (o, i) = (self.tiles.outer(&hv), self.tiles.inner(&hv));
                    if m.iter().any(|(k, to)| *k == hv || *to == o || *to == i) {
                        return None;
                    }
                    kids.push((*x, restrict(&self.fv[usize::from(*x)], &m)));
                }
                other => {
                    for ch in other.children() {
                        kids.push((*ch, restrict(&self.fv[usize::from(*ch)], &m)));
                    }
                }
            }
            if !expanded {
                stack.push((id, m.clone(), true));
                for (k, km) in kids {
                    if !km.is_empty() && !done.contains_key(&(k, km.clone())) {
                        stack.push((k, km, false));
                    }
                }
                continue;
            }
            let renamed_kids: HashMap<Id, Id> = kids
                .iter()
                .map(|(k, km)| {
                    (
                        *k,
                        if km.is_empty() {
                            *k
                        } else {
                            done[&(*k, km.clone())]
                        },
                    )
                })
                .collect();
            let to = |v: &str| -> String {
                m.iter()
                    .find(|(k, _)| k == v)
                    .map_or(v.to_string(), |(_, t)| t.clone())
            };
            let new = match &node {
                Cx::At(ch) => {
                    let mut out = vec![ch[0]];
                    for v in &ch[1..] {
                        let name = to(&self.var_of(*v));
                        out.push(self.name(&name));
                    }
                    self.add(Cx::At(out.into_boxed_slice()))
                }
                Cx::Mask(Mask(k)) => {
                    let conds = self.b.masks[*k as usize].clone();
                    let ranks: Vec<(RankId, RankId)> = m
                        .iter()
                        .filter_map(|(from, t)| {
                            Some((self.rank_of_var(from)?, self.rank_of_var(t)?))
                        })
                        .collect();
                    let conds = conds
                        .iter()
                        .map(|cond| Compare {
                            lhs: rename_index(&cond.lhs, &ranks),
                            op: cond.op,
                            rhs: rename_index(&cond.rhs, &ranks),
                        })
                        .collect();
                    self.mask(conds)
                }
                _ => {
                    let renamed = node
                        .clone()
                        .map_children(|ch| renamed_kids.get(&ch).copied().unwrap_or(ch));
                    self.add(renamed)
                }
            };
            done.insert((id, m), new);
        }
        done.get(&(term, top)).copied()
    }
}

/// `idx` with the variables of `ranks` (from, to) replaced.
fn rename_index(idx: &IndexExpr, ranks: &[(RankId, RankId)]) -> IndexExpr {
    let sub = |x: &IndexExpr| Box::new(rename_index(x, ranks));
    match idx {
        IndexExpr::Var(r) => IndexExpr::Var(
            ranks
                .iter()
                .find(|(from, _)| from == r)
                .map_or(*r, |(_, to)| *to),
        ),
        IndexExpr::Size(_) | IndexExpr::Lit(_) => idx.clone(),
        IndexExpr::Add(a, b) => IndexExpr::Add(sub(a), sub(b)),
        IndexExpr::Sub(a, b) => IndexExpr::Sub(sub(a), sub(b)),
        IndexExpr::Mul(a, b) => IndexExpr::Mul(sub(a), sub(b)),
    }
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
            for c in expr[Id::from(i)].children() {
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

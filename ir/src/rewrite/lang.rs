//! The e-graph language of cascade expressions and its analysis (free index variables).
//!
//! A cascade's output is one expression in which every intermediate tensor is inlined. Map,
//! reduce, rank split and fold are separate operators so that rules compose:
//!
//! * `(at T i j)`: an input access `T[i,j]` (plain index variables only).
//! * `(sum r x)`, `(rmax r x)`, `(rmin r x)`, `(rprod r x)`: a reduction of `x` over rank
//!   variable `r`; `r` is bound inside `x`, lexically, so `(rmax m QK)` inside `(sum m …)` means
//!   the global max, and hash-consing shares it with every other use.
//! * `(split m x)`: `x` with `m := m1·M0 + m0`. It binds `m` and introduces the sub-rank
//!   variables `(outer m)` (`m1`) and `(inner m)` (`m0`): an index let-binding, pushed through
//!   maps by rules instead of substituting eagerly.
//! * `(split-key m x)`: `x` with `m := m1·M0 + n0`, where `(key m)` (`n0`) is a second variable
//!   over the range of `(inner m)`: a chunk's keys beside its queries (`split M -> M1 M0 N0`).
//!   `(tri m)` is the causal condition `n0 <= m0` within a chunk, used as `(where (tri m) x)`.
//! * `(fold i init step)`: the state after the last step of a recurrence over rank `i`,
//!   `S[0] = init`, `S[i+1] = step` where `step` reads `S[i]` as `(state i)`.
//!   `(scan i init step)` is `S[i+1]` and `(scan-prev i init step)` is `S[i]`, read inside
//!   another fold's step; a fold binds the `(state i)` leaves of its own step.
//! * `(join h x)`: the inverse of a split, `x` with its tile variables `(outer h)`, `(inner h)`
//!   set to `h / |inner|` and `h mod |inner|`; it frees `h`. A cascade that writes a tensor at a
//!   split index (`OUT[f, g*R+r] = …`) lifts to a join; no rule matches it.
//! * Maps: `+ - * / max min subexp` (binary, default merges) and unary functions.
//!   A binary op with an explicit merge other than its default is its own operator,
//!   `(+{&} a b)` ([`MergedOp`]): rules written for the default merges never match it, and only
//!   the rules that hold for every pointwise op (`split-push-*`) are stated for it.
//!
//! The literal `0` as a fold's `init` means "absent", as `RD[0,p] = 0` does in the DSL.
//!
//! # Binders and fresh names
//!
//! Reductions, folds and scans bind their rank variable; `(split m x)` binds `m` in `x` and
//! substitutes `m1·M0 + m0` for it, capture-avoiding: a rule may only introduce the tile
//! variables where they are fresh (`Cond::Fresh`), and lowering refuses a term that would need
//! a bound tile variable renamed. The tile variables of a rank are named by [`Tiles`], which
//! picks names that no declared rank, rank variable or tensor uses (`m1`/`m0`, else `m_1`/`m_0`,
//! …), so a cascade that already has a rank `M1` never has it captured by a split of `M`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use egg::{Analysis, DidMerge, EGraph, Id, Language, Symbol, define_language};

use crate::ast::{BinaryOp, Merge, UnaryOp};

define_language! {
    /// Cascade expressions (see the module documentation for the meaning of each operator).
    pub enum Cx {
        "at" = At(Box<[Id]>),
        "sum" = Sum([Id; 2]),
        "rmax" = RMax([Id; 2]),
        "rmin" = RMin([Id; 2]),
        "rprod" = RProd([Id; 2]),
        "split" = Split([Id; 2]),
        "join" = Join([Id; 2]),
        "outer" = Outer(Id),
        "inner" = Inner(Id),
        "key" = Key(Id),
        "split-key" = SplitKey([Id; 2]),
        "tri" = Tri(Id),
        "fold" = Fold([Id; 3]),
        "scan" = Scan([Id; 3]),
        "scan-prev" = ScanPrev([Id; 3]),
        "state" = State(Id),
        "+" = Add([Id; 2]),
        "-" = Sub([Id; 2]),
        "*" = Mul([Id; 2]),
        "/" = Div([Id; 2]),
        "max" = Max([Id; 2]),
        "min" = Min([Id; 2]),
        "subexp" = SubExp([Id; 2]),
        // Every unary function of the operator table, spelled by its name (`(exp ?x)`).
        Unary(UnaryOp, [Id; 1]),
        "where" = Where([Id; 2]),
        Merged(MergedOp, [Id; 2]),
        Lit(Lit),
        Mask(Mask),
        Name(Symbol),
    }
}

/// A constant of a map action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lit {
    /// A finite number, stored by its bits so that it can be hashed.
    Num(u64),
    NegInf,
    /// `1/sqrt(R)` for the size of rank `R`.
    InvSqrt(Symbol),
}

impl Lit {
    pub fn num(x: f64) -> Lit {
        // `+ 0.0` folds -0.0 into 0.0 so that equal numbers hash equally.
        Lit::Num((x + 0.0).to_bits())
    }
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Num(bits) => write!(f, "{}", f64::from_bits(*bits)),
            Lit::NegInf => f.write_str("-inf"),
            Lit::InvSqrt(rank) => write!(f, "isqrt:{rank}"),
        }
    }
}

impl FromStr for Lit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "-inf" {
            return Ok(Lit::NegInf);
        }
        if let Some(rank) = s.strip_prefix("isqrt:") {
            return Ok(Lit::InvSqrt(Symbol::from(rank)));
        }
        match s.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Lit::num(x)),
            _ => Err(format!("not a constant: {s}")),
        }
    }
}

/// A filter condition of the input cascade, by its index in [`super::lift::Signature::masks`]:
/// `(where (mask:0) x)` is `x` where the condition holds and absent elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mask(pub u32);

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mask:{}", self.0)
    }
}

impl FromStr for Mask {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix("mask:")
            .and_then(|k| k.parse().ok())
            .map(Mask)
            .ok_or_else(|| format!("not a mask: {s}"))
    }
}

/// A binary map op with an explicit merge that is not its default (`+{&}`, `*{1}`, `/{|}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MergedOp {
    pub op: BinaryOp,
    pub merge: Merge,
}

const MERGES: [Merge; 4] = [Merge::Intersect, Merge::Union, Merge::Right, Merge::All];

impl MergedOp {
    /// A total order for the e-graph: by op, then by merge, in table order.
    fn key(&self) -> (usize, usize) {
        (
            BINARY.iter().position(|(_, o)| *o == self.op).unwrap_or(0),
            MERGES.iter().position(|m| *m == self.merge).unwrap_or(0),
        )
    }

    /// Every binary op with every merge that is not its default, in a fixed order.
    pub fn all() -> Vec<MergedOp> {
        let mut out = Vec::new();
        for (_, op) in BINARY {
            for merge in MERGES {
                if merge != op.default_merge() {
                    out.push(MergedOp { op, merge });
                }
            }
        }
        out
    }
}

/// The language's spelling of each binary op (with its default merge).
pub const BINARY: [(&str, BinaryOp); 7] = [
    ("+", BinaryOp::Add),
    ("-", BinaryOp::Sub),
    ("*", BinaryOp::Mul),
    ("/", BinaryOp::Div),
    ("max", BinaryOp::Max),
    ("min", BinaryOp::Min),
    ("subexp", BinaryOp::SubExp),
];

/// The spelling of a binary op.
pub fn binary_name(op: BinaryOp) -> &'static str {
    BINARY
        .iter()
        .find(|(_, o)| *o == op)
        .map_or("?", |(name, _)| name)
}

impl PartialOrd for MergedOp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MergedOp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for MergedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{{}}}", binary_name(self.op), self.merge)
    }
}

impl FromStr for MergedOp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("not a merged op: {s}");
        let (name, rest) = s.split_once('{').ok_or_else(bad)?;
        let merge = match rest.strip_suffix('}').ok_or_else(bad)? {
            "&" => Merge::Intersect,
            "|" => Merge::Union,
            "<-" => Merge::Right,
            "1" => Merge::All,
            _ => return Err(bad()),
        };
        let op = BINARY
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| *op)
            .ok_or_else(bad)?;
        if merge == op.default_merge() {
            // The default merge is spelled without braces: one spelling per meaning.
            return Err(bad());
        }
        Ok(MergedOp { op, merge })
    }
}

/// The binary map ops with their default merges, in the language's spelling.
pub const BINARY_OPS: [&str; 7] = ["+", "-", "*", "/", "max", "min", "subexp"];

/// The unary map ops: the operator table's names.
pub const UNARY_OPS: [&str; crate::ops::UNARY.len()] = {
    let mut names = [""; crate::ops::UNARY.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = crate::ops::UNARY[i].name;
        i += 1;
    }
    names
};

/// The reduction operators.
pub const REDUCE_OPS: [&str; 4] = ["sum", "rmax", "rmin", "rprod"];

/// What the analysis knows about an e-class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Set when the class is a rank variable (`m`, `(outer m)` = `m1`, `(inner m)` = `m0`).
    pub rank: Option<String>,
    /// Free index variables: the ranks the value depends on.
    pub vars: BTreeSet<String>,
    /// The value reads a fold state that no enclosing fold in this class binds.
    pub state: bool,
    /// The class contains a tensor or rank name leaf (not a value).
    pub name: bool,
    /// The value is present at every point (no filter, merge or empty fiber leaves one
    /// absent): a must-fact, set when one node of the class proves it.
    pub total: bool,
}

impl Facts {
    /// Whether the value certainly does not depend on rank variable `rank`.
    pub fn independent_of(&self, rank: &str) -> bool {
        !self.state && !self.vars.contains(rank)
    }
}

/// The free-variable analysis, with the caller's choice of ranks that rules may split or fold.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Rank variables that `split-*` rules may split (`m`).
    pub split: BTreeSet<String>,
    /// Rank variables that `rescale-*` rules may turn into iterative ranks (`m1`, `k`).
    pub fold: BTreeSet<String>,
    /// The index variables each filter condition reads, by [`Mask`] number.
    pub masks: Vec<BTreeSet<String>>,
    /// The names of the tile variables of each rank variable.
    pub tiles: Tiles,
}

/// The tile variables `(outer m)` and `(inner m)` of each rank variable, named so that no
/// declared rank, rank variable or tensor of the cascade has the same name.
///
/// A rank without an entry (an e-graph built without a cascade, as in tests) gets the plain
/// names [`outer_name`] and [`inner_name`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiles {
    by_var: BTreeMap<String, (String, String)>,
    /// The second variable over each rank's inner tile (`n0` beside `m0`).
    keys: BTreeMap<String, String>,
}

impl Tiles {
    /// Tile names for every rank in `ranks` (uppercase rank names), avoiding `ranks`, their
    /// index variables, `tensors`, the DSL's reserved words and each other.
    pub fn new<'a>(
        ranks: impl IntoIterator<Item = &'a str>,
        tensors: impl IntoIterator<Item = &'a str>,
    ) -> Tiles {
        let ranks: Vec<String> = ranks.into_iter().map(str::to_string).collect();
        // Names compared in lowercase: a rank's variable is its lowercase name, and a tensor
        // may share neither the rank's name nor its variable.
        let mut taken: BTreeSet<String> = ranks.iter().map(|r| r.to_lowercase()).collect();
        taken.extend(tensors.into_iter().map(str::to_lowercase));
        taken.extend(crate::dsl::RESERVED.iter().map(|w| w.to_string()));
        let mut by_var = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for rank in &ranks {
            let v = rank.to_lowercase();
            let mut pad = String::new();
            let (outer, inner, key) = loop {
                let (o, i, k) = (
                    format!("{v}{pad}1"),
                    format!("{v}{pad}0"),
                    format!("{v}{pad}k"),
                );
                if !taken.contains(&o) && !taken.contains(&i) && !taken.contains(&k) {
                    break (o, i, k);
                }
                pad.push('_');
            };
            taken.insert(outer.clone());
            taken.insert(inner.clone());
            taken.insert(key.clone());
            keys.insert(v.clone(), key);
            by_var.insert(v, (outer, inner));
        }
        Tiles { by_var, keys }
    }

    /// Tile names for the ranks of `cascade`, avoiding every name it declares; a rank the
    /// cascade splits itself (`split M -> M1 M0`) has the cascade's own parts as its tiles.
    pub fn of_cascade(cascade: &crate::ast::Cascade) -> Tiles {
        let mut tiles = Tiles::new(
            cascade.ranks.iter().map(|r| r.name.as_str()),
            cascade.tensors.iter().map(|t| t.name.as_str()),
        );
        for r in &cascade.ranks {
            if let Some((outer, inner)) = r.split {
                tiles.by_var.insert(
                    r.name.to_lowercase(),
                    (cascade.var_name(outer), cascade.var_name(inner)),
                );
                if let Some(second) = cascade.second_variable(inner) {
                    tiles
                        .keys
                        .insert(r.name.to_lowercase(), cascade.var_name(second));
                }
            }
        }
        tiles
    }

    /// The outer tile variable of rank variable `m` (`m1`).
    pub fn outer(&self, m: &str) -> String {
        self.by_var
            .get(m)
            .map_or_else(|| outer_name(m), |(o, _)| o.clone())
    }

    /// The inner tile variable of rank variable `m` (`m0`).
    pub fn inner(&self, m: &str) -> String {
        self.by_var
            .get(m)
            .map_or_else(|| inner_name(m), |(_, i)| i.clone())
    }

    /// The second variable over the inner tile of rank variable `m` (`n0` beside `m0`).
    pub fn key(&self, m: &str) -> String {
        self.keys.get(m).cloned().unwrap_or_else(|| format!("{m}k"))
    }

    /// The rank variable whose key variable (see [`Tiles::key`]) `var` is.
    pub fn key_parent_of(&self, var: &str) -> Option<String> {
        if let Some((m, _)) = self.keys.iter().find(|(_, k)| *k == var) {
            return Some(m.clone());
        }
        let parent = var.strip_suffix('k')?;
        (self.keys.is_empty() && !parent.is_empty()).then(|| parent.to_string())
    }

    /// The rank variable whose tile variable `var` is, and whether it is the outer one.
    pub fn parent_of(&self, var: &str) -> Option<(String, bool)> {
        for (m, (o, i)) in &self.by_var {
            if o == var {
                return Some((m.clone(), true));
            }
            if i == var {
                return Some((m.clone(), false));
            }
        }
        // Without an entry, the plain names `m1`/`m0` of some variable `m`.
        let (parent, last) = var.split_at(var.len().checked_sub(1)?);
        if self.by_var.is_empty() && !parent.is_empty() && (last == "1" || last == "0") {
            return Some((parent.to_string(), last == "1"));
        }
        None
    }
}

/// The e-graph type of the rewriter.
pub type CxGraph = EGraph<Cx, Scope>;

/// The name of the outer sub-rank variable of `m` (`m1`).
pub fn outer_name(m: &str) -> String {
    format!("{m}1")
}

/// The name of the inner sub-rank variable of `m` (`m0`).
pub fn inner_name(m: &str) -> String {
    format!("{m}0")
}

/// Whether a node's value is present everywhere, from its children's classes (conservative:
/// filters, folds and fold states are not).
fn node_total(egraph: &CxGraph, enode: &Cx) -> bool {
    let total = |id: &Id| egraph[*id].data.total;
    if let Some((_, merge)) = binary_of(enode) {
        let [a, b] = [enode.children()[0], enode.children()[1]];
        return match merge {
            Merge::Intersect => total(&a) && total(&b),
            Merge::Union => total(&a) || total(&b),
            Merge::Right => total(&b),
            Merge::All => true,
        };
    }
    match enode {
        Cx::At(_) | Cx::Lit(_) => true,
        Cx::Where(_)
        | Cx::Fold(_)
        | Cx::Scan(_)
        | Cx::ScanPrev(_)
        | Cx::State(_)
        | Cx::Name(_)
        | Cx::Outer(_)
        | Cx::Inner(_)
        | Cx::Key(_)
        | Cx::Tri(_)
        | Cx::Mask(_) => false,
        // A reduction over a non-empty rank of a total body; a split or unary op of one.
        Cx::Sum([_, x]) | Cx::RMax([_, x]) | Cx::RMin([_, x]) | Cx::RProd([_, x]) => total(x),
        Cx::Split([_, x]) | Cx::SplitKey([_, x]) | Cx::Join([_, x]) => total(x),
        other => other.children().iter().all(total),
    }
}

/// The facts of one node from its children's classes: what the analysis gives a class with
/// only this node (a class's facts are the intersection over its nodes).
pub fn node_facts(egraph: &CxGraph, enode: &Cx) -> Facts {
    {
        let data = |id: &Id| &egraph[*id].data;
        let rank_of = |id: &Id| data(id).rank.clone().unwrap_or_default();
        let union = |ids: &[Id]| {
            let mut vars = BTreeSet::new();
            let mut state = false;
            for id in ids {
                vars.extend(data(id).vars.iter().cloned());
                state |= data(id).state;
            }
            (vars, state)
        };
        let value = |vars, state| Facts {
            rank: None,
            vars,
            state,
            name: false,
            total: node_total(egraph, enode),
        };
        match enode {
            Cx::Name(s) => Facts {
                rank: Some(s.as_str().to_string()),
                vars: BTreeSet::new(),
                state: false,
                name: true,
                total: false,
            },
            Cx::Outer(m) => Facts {
                rank: Some(egraph.analysis.tiles.outer(&rank_of(m))),
                vars: BTreeSet::new(),
                state: false,
                name: true,
                total: false,
            },
            Cx::Inner(m) => Facts {
                rank: Some(egraph.analysis.tiles.inner(&rank_of(m))),
                vars: BTreeSet::new(),
                state: false,
                name: true,
                total: false,
            },
            Cx::Key(m) => Facts {
                rank: Some(egraph.analysis.tiles.key(&rank_of(m))),
                vars: BTreeSet::new(),
                state: false,
                name: true,
                total: false,
            },
            Cx::Tri(m) => {
                let tiles = &egraph.analysis.tiles;
                let m = rank_of(m);
                value(BTreeSet::from([tiles.inner(&m), tiles.key(&m)]), false)
            }
            Cx::SplitKey([m, x]) => {
                let (mut vars, state) = union(&[*x]);
                let m = rank_of(m);
                if vars.remove(&m) {
                    vars.insert(egraph.analysis.tiles.outer(&m));
                    vars.insert(egraph.analysis.tiles.key(&m));
                }
                value(vars, state)
            }
            Cx::Lit(_) => value(BTreeSet::new(), false),
            Cx::Mask(k) => {
                let vars = egraph
                    .analysis
                    .masks
                    .get(k.0 as usize)
                    .cloned()
                    .unwrap_or_default();
                value(vars, false)
            }
            Cx::At(children) => {
                let vars = children[1..].iter().map(rank_of).collect();
                value(vars, false)
            }
            Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => {
                let (mut vars, state) = union(&[*x]);
                vars.remove(&rank_of(r));
                value(vars, state)
            }
            Cx::Split([m, x]) => {
                let (mut vars, state) = union(&[*x]);
                let m = rank_of(m);
                if vars.remove(&m) {
                    vars.insert(egraph.analysis.tiles.outer(&m));
                    vars.insert(egraph.analysis.tiles.inner(&m));
                }
                value(vars, state)
            }
            Cx::Join([h, x]) => {
                let (mut vars, state) = union(&[*x]);
                let h = rank_of(h);
                let tiles = &egraph.analysis.tiles;
                let had = vars.remove(&tiles.outer(&h)) | vars.remove(&tiles.inner(&h));
                if had {
                    vars.insert(h);
                }
                value(vars, state)
            }
            Cx::Fold([i, init, step]) => {
                let (mut vars, _) = union(&[*init, *step]);
                vars.remove(&rank_of(i));
                value(vars, false)
            }
            Cx::Scan([i, init, step]) | Cx::ScanPrev([i, init, step]) => {
                let (mut vars, _) = union(&[*init, *step]);
                vars.insert(rank_of(i));
                value(vars, false)
            }
            Cx::State(i) => value(BTreeSet::from([rank_of(i)]), true),
            other => {
                let (vars, state) = union(other.children());
                value(vars, state)
            }
        }
    }
}

impl Analysis<Cx> for Scope {
    type Data = Facts;

    fn make(egraph: &mut CxGraph, enode: &Cx, _id: Id) -> Facts {
        node_facts(egraph, enode)
    }

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        // Equal values have equal dependences; intersecting keeps the analysis sound if a rule
        // ever proves that a value does not depend on a rank after all.
        let before = a.clone();
        a.vars = a.vars.intersection(&b.vars).cloned().collect();
        a.state &= b.state;
        a.name |= b.name;
        a.total |= b.total;
        if a.rank.is_none() {
            a.rank = b.rank.clone();
        }
        DidMerge(*a != before, *a != b)
    }
}

/// The analysis facts of a class.
pub fn facts(egraph: &CxGraph, id: Id) -> &Facts {
    &egraph[id].data
}

/// Whether a node is a reduction, and over which rank-variable class.
pub fn reduction(node: &Cx) -> Option<(Id, Id)> {
    match node {
        Cx::Sum([r, x]) | Cx::RMax([r, x]) | Cx::RMin([r, x]) | Cx::RProd([r, x]) => Some((*r, *x)),
        _ => None,
    }
}

/// Whether the node is one of the map ops (binary, with any merge, or unary).
pub fn is_map(node: &Cx) -> bool {
    let op = node.to_string();
    matches!(node, Cx::Merged(..))
        || BINARY_OPS.contains(&op.as_str())
        || UNARY_OPS.contains(&op.as_str())
}

/// The binary op and merge of a binary map node, default merges included.
pub fn binary_of(node: &Cx) -> Option<(BinaryOp, Merge)> {
    let op = match node {
        Cx::Merged(m, _) => return Some((m.op, m.merge)),
        Cx::Add(_) => BinaryOp::Add,
        Cx::Sub(_) => BinaryOp::Sub,
        Cx::Mul(_) => BinaryOp::Mul,
        Cx::Div(_) => BinaryOp::Div,
        Cx::Max(_) => BinaryOp::Max,
        Cx::Min(_) => BinaryOp::Min,
        Cx::SubExp(_) => BinaryOp::SubExp,
        _ => return None,
    };
    Some((op, op.default_merge()))
}

/// The node of binary op `op` with merge `merge` over `[a, b]`.
pub fn binary_node(op: BinaryOp, merge: Merge, ab: [Id; 2]) -> Cx {
    if merge != op.default_merge() {
        return Cx::Merged(MergedOp { op, merge }, ab);
    }
    match op {
        BinaryOp::Add => Cx::Add(ab),
        BinaryOp::Sub => Cx::Sub(ab),
        BinaryOp::Mul => Cx::Mul(ab),
        BinaryOp::Div => Cx::Div(ab),
        BinaryOp::Max => Cx::Max(ab),
        BinaryOp::Min => Cx::Min(ab),
        BinaryOp::SubExp => Cx::SubExp(ab),
    }
}

/// The rank variable a binder node binds (reductions, folds, scans, splits), as its class.
pub fn binder(node: &Cx) -> Option<Id> {
    match node {
        Cx::Sum([r, _])
        | Cx::RMax([r, _])
        | Cx::RMin([r, _])
        | Cx::RProd([r, _])
        | Cx::Split([r, _])
        | Cx::SplitKey([r, _])
        | Cx::Fold([r, _, _])
        | Cx::Scan([r, _, _])
        | Cx::ScanPrev([r, _, _]) => Some(*r),
        _ => None,
    }
}

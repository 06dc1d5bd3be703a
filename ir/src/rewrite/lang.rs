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
//! * `(fold i init step)`: the state after the last step of a recurrence over rank `i`,
//!   `S[0] = init`, `S[i+1] = step` where `step` reads `S[i]` as `(state i)`.
//!   `(scan i init step)` is `S[i+1]` and `(scan-prev i init step)` is `S[i]`, read inside
//!   another fold's step; a fold binds the `(state i)` leaves of its own step.
//! * Maps: `+ - * / max min subexp` (binary, default merges) and unary functions.
//!
//! The literal `0` as a fold's `init` means "absent", as `RD[0,p] = 0` does in the DSL.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use egg::{Analysis, DidMerge, EGraph, Id, Language, Symbol, define_language};

define_language! {
    /// Cascade expressions (see the module documentation for the meaning of each operator).
    pub enum Cx {
        "at" = At(Box<[Id]>),
        "sum" = Sum([Id; 2]),
        "rmax" = RMax([Id; 2]),
        "rmin" = RMin([Id; 2]),
        "rprod" = RProd([Id; 2]),
        "split" = Split([Id; 2]),
        "outer" = Outer(Id),
        "inner" = Inner(Id),
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
        "exp" = Exp(Id),
        "neg" = Neg(Id),
        "recip" = Recip(Id),
        "sqrt" = Sqrt(Id),
        "sigmoid" = Sigmoid(Id),
        "softplus" = Softplus(Id),
        "relu" = Relu(Id),
        "elu1" = Elu1(Id),
        "tanh" = Tanh(Id),
        "where" = Where([Id; 2]),
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

/// The binary map ops with their default merges, in the language's spelling.
pub const BINARY_OPS: [&str; 7] = ["+", "-", "*", "/", "max", "min", "subexp"];

/// The unary map ops.
pub const UNARY_OPS: [&str; 9] = [
    "exp", "neg", "recip", "sqrt", "sigmoid", "softplus", "relu", "elu1", "tanh",
];

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

impl Analysis<Cx> for Scope {
    type Data = Facts;

    fn make(egraph: &mut CxGraph, enode: &Cx, _id: Id) -> Facts {
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
        };
        match enode {
            Cx::Name(s) => Facts {
                rank: Some(s.as_str().to_string()),
                vars: BTreeSet::new(),
                state: false,
                name: true,
            },
            Cx::Outer(m) => Facts {
                rank: Some(outer_name(&rank_of(m))),
                vars: BTreeSet::new(),
                state: false,
                name: true,
            },
            Cx::Inner(m) => Facts {
                rank: Some(inner_name(&rank_of(m))),
                vars: BTreeSet::new(),
                state: false,
                name: true,
            },
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
                    vars.insert(outer_name(&m));
                    vars.insert(inner_name(&m));
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

    fn merge(&mut self, a: &mut Facts, b: Facts) -> DidMerge {
        // Equal values have equal dependences; intersecting keeps the analysis sound if a rule
        // ever proves that a value does not depend on a rank after all.
        let before = a.clone();
        a.vars = a.vars.intersection(&b.vars).cloned().collect();
        a.state &= b.state;
        a.name |= b.name;
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

/// Whether the node is one of the map ops (binary or unary).
pub fn is_map(node: &Cx) -> bool {
    let op = node.to_string();
    BINARY_OPS.contains(&op.as_str()) || UNARY_OPS.contains(&op.as_str())
}

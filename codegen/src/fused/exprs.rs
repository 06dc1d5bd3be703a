//! The fused kernel's per-score and per-output C code, rendered from the [`Attention`]'s
//! expression trees with the IR's presence rules (the merges, filters as absence).
//!
//! A score is present where a boolean formula over *atoms* holds — the distinct filter
//! conditions — and never depends on data (inputs are dense). For each key tile the kernel
//! classifies every atom as false everywhere, true everywhere or mixed (`tiles.rs`), evaluates
//! the formula in three-valued logic to skip tiles nobody sees, and takes a fast path where
//! every atom holds on the whole tile: there the score is rendered with every atom true. In the
//! other tiles each score evaluates the atoms it needs.
//!
//! Softmax scores are carried in base 2 (`s·log₂e`, so the kernel's exponential is one
//! `exp2`); a score that is `Q·K` times row constants (`1/sqrt(E)`, a temperature `T[p]`, a
//! scalar input) folds the constants and log₂e into one multiplier per row or per launch.
//! An output that is `RNV·X / D` (`X`, `D` per row) is a reciprocal per row and one multiply
//! per element, keeping the IR's `0/0 = 0`.

use cascade_ir::{
    BinaryOp, Cascade, Compare, CompareOp, Constant, IndexExpr, Merge, RankId, TensorId,
};

use crate::cexpr::{self, Names};
use crate::pattern::{Attention, Node, Weights};
use crate::{CodegenError, Result};

/// log₂e as the kernels spell it.
pub const LOG2E: &str = "1.4426950408889634f";

/// Where a score or output point is present: a formula over atoms (indices into a table).
#[derive(Debug, Clone, PartialEq)]
pub enum Pres {
    True,
    False,
    Atom(usize),
    And(Box<Pres>, Box<Pres>),
    Or(Box<Pres>, Box<Pres>),
}

impl Pres {
    fn and(a: Pres, b: Pres) -> Pres {
        match (a, b) {
            (Pres::True, x) | (x, Pres::True) => x,
            (Pres::False, _) | (_, Pres::False) => Pres::False,
            (x, y) if x == y => x,
            (x, y) => Pres::And(Box::new(x), Box::new(y)),
        }
    }

    fn or(a: Pres, b: Pres) -> Pres {
        match (a, b) {
            (Pres::False, x) | (x, Pres::False) => x,
            (Pres::True, _) | (_, Pres::True) => Pres::True,
            (x, y) if x == y => x,
            (x, y) => Pres::Or(Box::new(x), Box::new(y)),
        }
    }

    /// As a C boolean, each atom rendered by `atom`.
    pub fn c(&self, atom: &dyn Fn(usize) -> String) -> String {
        match self {
            Pres::True => "true".into(),
            Pres::False => "false".into(),
            Pres::Atom(k) => atom(*k),
            Pres::And(a, b) => format!("({} && {})", a.c(atom), b.c(atom)),
            Pres::Or(a, b) => format!("({} || {})", a.c(atom), b.c(atom)),
        }
    }

    /// As three-valued logic over the tile states `st[k]` (`TILE_SKIP` < `TILE_PARTIAL` <
    /// `TILE_FULL`): `and` is the minimum, `or` the maximum.
    pub fn kleene(&self) -> String {
        match self {
            Pres::True => "TILE_FULL".into(),
            Pres::False => "TILE_SKIP".into(),
            Pres::Atom(k) => format!("st[{k}]"),
            Pres::And(a, b) => format!("cascade_kmin({}, {})", a.kleene(), b.kleene()),
            Pres::Or(a, b) => format!("cascade_kmax({}, {})", a.kleene(), b.kleene()),
        }
    }

    pub fn atoms(&self, out: &mut Vec<usize>) {
        match self {
            Pres::Atom(k) if !out.contains(k) => out.push(*k),
            Pres::And(a, b) | Pres::Or(a, b) => {
                a.atoms(out);
                b.atoms(out);
            }
            _ => {}
        }
    }
}

/// How atoms read while rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atoms {
    /// Each atom is the local `a{k}`.
    Vars,
    /// Every atom holds (a tile where all are true everywhere).
    AllTrue,
    /// Each atom is its condition, written out.
    Inline,
}

/// The kernel's variable names: the key `key` (its split parts by the cascade's inner size),
/// the query `row_p`, the feature `col_f`, heads `hv_*`, sizes `a.s_*` (the `Args` fields).
pub struct KernelNames<'a> {
    pub c: &'a Cascade,
    pub att: &'a Attention,
    /// `a.s_` in kernels, `s_` in the launcher.
    pub size_prefix: &'a str,
}

impl Names for KernelNames<'_> {
    fn var(&self, r: RankId) -> String {
        let ranks = &self.att.ranks;
        let key = ranks.key;
        if r == key.m {
            return "key".into();
        }
        if let Some((outer, inner)) = key.split {
            if r == outer {
                return format!("(key / {})", self.size(inner));
            }
            if r == inner {
                return format!("(key % {})", self.size(inner));
            }
        }
        if let Some((outer, inner)) = ranks.query_split {
            if r == outer {
                return format!("(row_p / {})", self.size(inner));
            }
            if r == inner {
                return format!("(row_p % {})", self.size(inner));
            }
        }
        if r == ranks.p {
            "row_p".into()
        } else if r == ranks.f {
            "col_f".into()
        } else if ranks.heads.contains(&r) {
            format!("hv_{}", self.c.var_name(r))
        } else {
            // The recogniser admits no other variable where the kernel evaluates expressions.
            format!("/*unbound {}*/0LL", self.c.var_name(r))
        }
    }

    fn size(&self, r: RankId) -> String {
        format!("{}{}", self.size_prefix, self.c.rank(r).name)
    }
}

/// One renderer: atoms collected into a table, leaves named by the caller.
struct Render<'a> {
    names: &'a KernelNames<'a>,
    atoms: &'a mut Vec<Compare>,
    mode: Atoms,
    leaf: &'a dyn Fn(&Node) -> Option<String>,
    /// The presence conditions of each `Qk` leaf.
    leaves: &'a [Vec<Compare>],
}

impl Render<'_> {
    fn atom(&mut self, k: &Compare) -> Pres {
        if self.mode == Atoms::AllTrue {
            return Pres::True;
        }
        let i = match self.atoms.iter().position(|a| a == k) {
            Some(i) => i,
            None => {
                self.atoms.push(k.clone());
                self.atoms.len() - 1
            }
        };
        Pres::Atom(i)
    }

    fn conds(&mut self, conds: &[Compare]) -> Pres {
        let mut p = Pres::True;
        for k in conds {
            let a = self.atom(k);
            p = Pres::and(p, a);
        }
        p
    }

    fn pres_c(&self, p: &Pres) -> String {
        let atoms = &*self.atoms;
        let names = self.names;
        match self.mode {
            Atoms::Inline => p.c(&|k| cexpr::compare(&atoms[k], names)),
            _ => p.c(&|k| format!("a{k}")),
        }
    }

    /// `(value, presence)` of a node; the value is meaningful where it is present.
    fn node(&mut self, n: &Node) -> std::result::Result<(String, Pres), String> {
        if let Some(v) = (self.leaf)(n) {
            let p = match n {
                Node::Qk(i) => {
                    let conds = self.leaves[*i].clone();
                    self.conds(&conds)
                }
                _ => Pres::True,
            };
            return Ok((v, p));
        }
        Ok(match n {
            // 1/sqrt(|R|) is computed once by the launcher.
            Node::Const(Constant::InvSqrtSize(r)) if self.names.size_prefix == "a.s_" => (
                format!("a.inv_sqrt_{}", self.names.c.rank(*r).name),
                Pres::True,
            ),
            Node::Const(k) => (cexpr::constant(k, self.names), Pres::True),
            Node::Unary(op, a) => {
                let (v, p) = self.node(a)?;
                (cexpr::unary(*op, &v), p)
            }
            Node::Guard(conds, a) => {
                let (v, p) = self.node(a)?;
                let g = self.conds(conds);
                (v, Pres::and(p, g))
            }
            Node::Binary(op, merge, a, b) => {
                let (va, pa) = self.node(a)?;
                let (vb, pb) = self.node(b)?;
                self.merged(*op, *merge, (va, pa), (vb, pb))
            }
            other => return Err(format!("{other:?} where the kernel has no value for it")),
        })
    }

    /// `a op b` under `merge`, as `eval` defines it (the generic lowering's `merged`).
    fn merged(
        &self,
        op: BinaryOp,
        merge: Merge,
        a: (String, Pres),
        b: (String, Pres),
    ) -> (String, Pres) {
        let ((a, pa), (b, pb)) = (a, b);
        let both = cexpr::binary(op, &a, &b);
        let zero = |v: &str, p: &Pres| match p {
            Pres::True => v.to_string(),
            Pres::False => "0.0f".into(),
            _ => format!("({} ? {v} : 0.0f)", self.pres_c(p)),
        };
        match merge {
            Merge::Intersect => (both, Pres::and(pa, pb)),
            Merge::Union => {
                let identity = op.info().identity.map(cexpr::float_lit);
                let lone_lhs = identity
                    .as_ref()
                    .map_or(a.clone(), |k| cexpr::binary(op, &a, k));
                let lone_rhs = identity
                    .as_ref()
                    .map_or(b.clone(), |k| cexpr::binary(op, k, &b));
                let value = match (&pa, &pb) {
                    (Pres::True, Pres::True) => both,
                    (Pres::False, _) => lone_rhs,
                    (_, Pres::False) => lone_lhs,
                    (Pres::True, _) => format!("({} ? {both} : {lone_lhs})", self.pres_c(&pb)),
                    (_, Pres::True) => format!("({} ? {both} : {lone_rhs})", self.pres_c(&pa)),
                    _ => format!(
                        "(({} && {}) ? {both} : ({} ? {lone_lhs} : {lone_rhs}))",
                        self.pres_c(&pa),
                        self.pres_c(&pb),
                        self.pres_c(&pa)
                    ),
                };
                (value, Pres::or(pa, pb))
            }
            Merge::Right => (cexpr::binary(op, &zero(&a, &pa), &b), pb),
            Merge::All => (
                cexpr::binary(op, &zero(&a, &pa), &zero(&b, &pb)),
                Pres::True,
            ),
        }
    }
}

/// Whether a node uses a key variable (so it varies along a row).
fn uses_keys(att: &Attention, n: &Node) -> bool {
    let key = att.ranks.key;
    let mut keys = key.vars();
    keys.push(key.m);
    n.any(&|x| matches!(x, Node::Qk(_))) || n.vars().iter().any(|v| keys.contains(v))
}

/// `T[idx]` of batch entry `bz` as a C expression over the kernel's names.
pub fn load_expr(c: &Cascade, t: TensorId, idx: &[IndexExpr], names: &KernelNames) -> String {
    let ranks = &c.tensor(t).ranks;
    let extent = |d: usize| names.size(ranks[d]);
    let mut linear = String::new();
    for (d, ix) in idx.iter().enumerate().rev() {
        let i = cexpr::index(ix, names);
        linear = if linear.is_empty() {
            i
        } else {
            format!("{i} + {} * ({linear})", extent(d))
        };
    }
    if linear.is_empty() {
        linear = "0LL".into();
    }
    let numel = if ranks.is_empty() {
        "1LL".to_string()
    } else {
        (0..ranks.len()).map(extent).collect::<Vec<_>>().join(" * ")
    };
    format!("to_f(a.in_{}[bz * ({numel}) + {linear}])", c.tensor(t).name)
}

/// The bounds a load's variables must be inside where the kernel may evaluate it off the
/// problem (rows past the last query, keys past the last key, features past `F`).
fn load_bounds(att: &Attention, idx: &[IndexExpr], names: &KernelNames) -> Vec<String> {
    let mut vars = Vec::new();
    for i in idx {
        i.collect_vars(&mut vars);
    }
    let r = &att.ranks;
    let mut keys = r.key.vars();
    keys.push(r.key.m);
    let mut out = Vec::new();
    if vars.iter().any(|v| keys.contains(v)) {
        out.push(format!("key < {}", names.size(r.key.m)));
    }
    let mut queries = vec![r.p];
    if let Some((outer, inner)) = r.query_split {
        queries.extend([outer, inner]);
    }
    if vars.iter().any(|v| queries.contains(v)) {
        out.push(format!("row_p < {}", names.size(r.p)));
    }
    if vars.contains(&r.f) {
        out.push(format!("col_f < {}", names.size(r.f)));
    }
    out
}

/// The per-score code of the fused kernel.
#[derive(Debug, Clone, Default)]
pub struct ScoreCode {
    /// The presence atoms, in the key form.
    pub atoms: Vec<Compare>,
    /// The score's presence over the tile states, in three-valued logic.
    pub kleene: String,
    /// Statements setting `sv` from `qk` in a tile where every atom holds everywhere, and in
    /// any other tile.
    pub fast: Vec<String>,
    pub general: Vec<String>,
    /// Statements setting `rowv[r][k]` for one row slot `r` (with `row_p`, `row_ok` bound).
    pub row_setup: Vec<String>,
    pub n_rowv: usize,
    /// A constant the launcher folds log₂e into (`a.score_scale`), as C over its sizes.
    pub launch_scale: Option<String>,
}

pub fn score_code(c: &Cascade, att: &Attention, causal: bool) -> Result<ScoreCode> {
    let names = KernelNames {
        c,
        att,
        size_prefix: "a.s_",
    };
    let launch_names = KernelNames {
        c,
        att,
        size_prefix: "s_",
    };
    let fail = |why: String| CodegenError::Unsupported {
        cascade: c.name.clone(),
        reason: format!("the fused kernel cannot render the scores: {why}"),
    };
    let softmax = att.weights == Weights::Softmax;
    let value = &att.score.value;
    // Row-level loads (no key index) are read once per row slot.
    let row_loads: Vec<(TensorId, Vec<IndexExpr>)> = value
        .loads()
        .into_iter()
        .filter(|(t, idx)| !uses_keys(att, &Node::Load(*t, idx.clone())))
        .collect();
    let mut code = ScoreCode {
        n_rowv: row_loads.len(),
        ..ScoreCode::default()
    };
    for (k, (t, idx)) in row_loads.iter().enumerate() {
        code.row_setup.push(format!(
            "rowv[r][{k}] = row_ok ? {} : 0.0f;",
            load_expr(c, *t, idx, &names)
        ));
    }
    let leaf = |n: &Node| -> Option<String> {
        match n {
            Node::Qk(_) => Some("qk".into()),
            Node::Load(t, idx) => Some(
                match row_loads.iter().position(|(u, j)| u == t && j == idx) {
                    Some(k) => format!("rowv[r][{k}]"),
                    None => {
                        let bounds = load_bounds(att, idx, &names);
                        format!(
                            "(({}) ? {} : 0.0f)",
                            bounds.join(" && "),
                            load_expr(c, *t, idx, &names)
                        )
                    }
                },
            ),
            _ => None,
        }
    };
    // Q·K times row constants: one multiplier (with log₂e) per row or per launch.
    let multiplier = if softmax && att.score.leaves.len() == 1 {
        multiplier(att, &mut code, &names, &launch_names, &leaf).map_err(fail)?
    } else {
        None
    };
    // The fast path: every atom holds.
    let mut atoms = Vec::new();
    let fast = {
        let mut r = Render {
            names: &names,
            atoms: &mut atoms,
            mode: Atoms::AllTrue,
            leaf: &leaf,
            leaves: &att.score.leaves,
        };
        r.node(value).map_err(fail)?.0
    };
    let (general, pres) = {
        let mut r = Render {
            names: &names,
            atoms: &mut code.atoms,
            mode: Atoms::Vars,
            leaf: &leaf,
            leaves: &att.score.leaves,
        };
        let (v, mut p) = r.node(value).map_err(fail)?;
        if causal {
            let key = IndexExpr::Var(att.ranks.key.m);
            let causal = r.atom(&Compare {
                lhs: key,
                op: CompareOp::Le,
                rhs: IndexExpr::Var(att.ranks.p),
            });
            p = Pres::and(p, causal);
        }
        (v, p)
    };
    code.kleene = pres.kleene();
    let mut used = Vec::new();
    pres.atoms(&mut used);
    // Atoms the value reads inside ∪ merges are used too.
    for k in 0..code.atoms.len() {
        if general.contains(&format!("a{k}")) && !used.contains(&k) {
            used.push(k);
        }
    }
    used.sort();
    for k in used {
        code.general.push(format!(
            "const bool a{k} = st[{k}] == TILE_FULL || (st[{k}] == TILE_PARTIAL && {});",
            cexpr::compare(&code.atoms[k], &names)
        ));
    }
    let present = match &pres {
        Pres::True => "key < k_end".to_string(),
        p => format!("key < k_end && {}", p.c(&|k| format!("a{k}"))),
    };
    let (fast_v, general_v) = match (&multiplier, softmax) {
        (Some(m), _) => (format!("qk * {m}"), format!("qk * {m}")),
        (None, true) => (
            format!("({fast}) * {LOG2E}"),
            format!("({general}) * {LOG2E}"),
        ),
        (None, false) => (fast, general),
    };
    let absent = if softmax { "-INFINITY" } else { "0.0f" };
    code.fast.push(format!("sv = {fast_v};"));
    code.general
        .push(format!("sv = ({present}) ? {general_v} : {absent};"));
    Ok(code)
}

/// For scores `Q·K × X…` with every `X` a constant or a per-row load: the one multiplier
/// (the factors times log₂e), as `a.score_scale` set by the launcher when all are constants,
/// else as a per-row value it adds to `code`'s row setup. `None` for any other score.
fn multiplier(
    att: &Attention,
    code: &mut ScoreCode,
    names: &KernelNames,
    launch_names: &KernelNames,
    leaf: &dyn Fn(&Node) -> Option<String>,
) -> std::result::Result<Option<String>, String> {
    let mut factors = Vec::new();
    flatten_mul(&att.score.value, &mut factors);
    let qk_only = factors.iter().filter(|f| matches!(f, Node::Qk(_))).count() == 1;
    let rest: Vec<&Node> = factors
        .iter()
        .copied()
        .filter(|f| !matches!(f, Node::Qk(_)))
        .collect();
    if !qk_only {
        return Ok(None);
    }
    let constants: Option<Vec<String>> = rest
        .iter()
        .map(|f| match f {
            Node::Const(k) => Some(cexpr::constant(k, launch_names)),
            _ => None,
        })
        .collect();
    if let Some(constants) = constants {
        let product: Vec<String> = constants.into_iter().chain([LOG2E.to_string()]).collect();
        code.launch_scale = Some(product.join(" * "));
        return Ok(Some("a.score_scale".to_string()));
    }
    let row_level = |f: &&Node| matches!(f, Node::Const(_) | Node::Load(..)) && !uses_keys(att, f);
    if !rest.iter().all(row_level) {
        return Ok(None);
    }
    let mut atoms = Vec::new();
    let mut r = Render {
        names,
        atoms: &mut atoms,
        mode: Atoms::AllTrue,
        leaf,
        leaves: &att.score.leaves,
    };
    let parts: Vec<String> = rest
        .iter()
        .map(|f| r.node(f).map(|(v, _)| v))
        .collect::<std::result::Result<_, _>>()?;
    let k = code.n_rowv;
    code.n_rowv += 1;
    code.row_setup
        .push(format!("rowv[r][{k}] = {} * {LOG2E};", parts.join(" * ")));
    Ok(Some(format!("rowv[r][{k}]")))
}

/// The operands of the top product chain (`*` with merge ∩).
fn flatten_mul<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    match n {
        Node::Binary(BinaryOp::Mul, Merge::Intersect, a, b) => {
            flatten_mul(a, out);
            flatten_mul(b, out);
        }
        other => out.push(other),
    }
}

/// The code of the outputs after the key loop.
#[derive(Debug, Clone, Default)]
pub struct EpilogueCode {
    /// Statements setting `rowe[r][k]` for one row slot (`rd_fin`, `rm_fin`, `row_p`, `row_ok`
    /// bound).
    pub row_setup: Vec<String>,
    pub n_rowe: usize,
    /// Per element output: the statement setting `ov` from `o_fin` (and `col_f`).
    pub elem: Vec<(TensorId, String)>,
    /// Per row output: its tensor and the value expression.
    pub rows: Vec<(TensorId, String)>,
}

pub fn epilogue_code(c: &Cascade, att: &Attention) -> Result<EpilogueCode> {
    let names = KernelNames {
        c,
        att,
        size_prefix: "a.s_",
    };
    let fail = |why: String| CodegenError::Unsupported {
        cascade: c.name.clone(),
        reason: format!("the fused kernel cannot render the epilogue: {why}"),
    };
    let f = att.ranks.f;
    let mut row_loads: Vec<(TensorId, Vec<IndexExpr>)> = Vec::new();
    for o in &att.outputs {
        for (t, idx) in o.value.loads() {
            let mut vars = Vec::new();
            for i in &idx {
                i.collect_vars(&mut vars);
            }
            if !vars.contains(&f) && !row_loads.contains(&(t, idx.clone())) {
                row_loads.push((t, idx));
            }
        }
    }
    let mut code = EpilogueCode {
        n_rowe: row_loads.len(),
        ..EpilogueCode::default()
    };
    for (k, (t, idx)) in row_loads.iter().enumerate() {
        code.row_setup.push(format!(
            "rowe[r][{k}] = row_ok ? {} : 0.0f;",
            load_expr(c, *t, idx, &names)
        ));
    }
    let leaf = |n: &Node| -> Option<String> {
        Some(match n {
            Node::Numerator => "o_fin".into(),
            Node::Denominator => "rd_fin".into(),
            Node::RowMax => "rm_fin".into(),
            Node::Load(t, idx) => match row_loads.iter().position(|(u, j)| u == t && j == idx) {
                Some(k) => format!("rowe[r][{k}]"),
                None => format!(
                    "(({}) ? {} : 0.0f)",
                    load_bounds(att, idx, &names).join(" && "),
                    load_expr(c, *t, idx, &names)
                ),
            },
            _ => return None,
        })
    };
    for o in &att.outputs {
        let mut atoms = Vec::new();
        let mut r = Render {
            names: &names,
            atoms: &mut atoms,
            mode: Atoms::Inline,
            leaf: &leaf,
            leaves: &[],
        };
        if !o.per_row
            && let Some((num, den)) = reciprocal_form(&o.value, f)
        {
            let (den_v, den_p) = r.node(den).map_err(fail)?;
            let (num_v, num_p) = match num {
                Some(x) => {
                    let (v, p) = r.node(x).map_err(fail)?;
                    (Some(v), p)
                }
                None => (None, Pres::True),
            };
            if den_p == Pres::True && num_p == Pres::True {
                let k = code.n_rowe;
                code.n_rowe += 2;
                code.row_setup.push(format!("rowe[r][{k}] = {den_v};"));
                code.row_setup
                    .push(format!("rowe[r][{}] = 1.0f / rowe[r][{k}];", k + 1));
                let n = match num_v {
                    Some(v) => {
                        let j = code.n_rowe;
                        code.n_rowe += 1;
                        code.row_setup.push(format!("rowe[r][{j}] = {v};"));
                        format!("(o_fin * rowe[r][{j}])")
                    }
                    None => "o_fin".to_string(),
                };
                code.elem.push((
                    o.tensor,
                    format!(
                        "const float ov = (rowe[r][{k}] == 0.0f && {n} == 0.0f) ? 0.0f : {n} * rowe[r][{}];",
                        k + 1
                    ),
                ));
                continue;
            }
        }
        let (v, p) = r.node(&o.value).map_err(fail)?;
        let value = match p {
            Pres::True => v,
            p => format!("({}) ? ({v}) : 0.0f", r.pres_c(&p)),
        };
        if o.per_row {
            code.rows.push((o.tensor, value));
        } else {
            code.elem
                .push((o.tensor, format!("const float ov = {value};")));
        }
    }
    Ok(code)
}

/// `Numerator·X / D` or `Numerator / D` (`X`, `D` per row: neither the numerator nor the
/// feature `f`; the division `←` or `∩`): `(X, D)`.
fn reciprocal_form(n: &Node, f: RankId) -> Option<(Option<&Node>, &Node)> {
    let Node::Binary(BinaryOp::Div, Merge::Right | Merge::Intersect, num, den) = n else {
        return None;
    };
    let per_row = |x: &Node| !x.any(&|y| matches!(y, Node::Numerator)) && !x.vars().contains(&f);
    if !per_row(den) {
        return None;
    }
    match &**num {
        Node::Numerator => Some((None, den)),
        Node::Binary(BinaryOp::Mul, Merge::Intersect, a, b) => match (&**a, &**b) {
            (Node::Numerator, x) | (x, Node::Numerator) if per_row(x) => Some((Some(x), den)),
            _ => None,
        },
        _ => None,
    }
}

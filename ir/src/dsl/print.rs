//! The normalised pretty-printer: `parse(print(c)) == c` for every cascade the parser builds.

use std::fmt::Write;

use crate::ast::*;

/// Prints a cascade in normalised form: declarations, `init`/`einsums` sections with aligned
/// `=`, then `stop` and `output`. Comments are not part of the IR, so none are printed.
pub fn print(c: &Cascade) -> String {
    let mut out = format!("cascade {}\n", c.name);
    declarations(c, &mut out);
    let init: Vec<&Einsum> = c
        .einsums
        .iter()
        .filter(|e| e.section == Section::Init)
        .collect();
    let body: Vec<&Einsum> = c
        .einsums
        .iter()
        .filter(|e| e.section == Section::Body)
        .collect();
    if !init.is_empty() {
        out.push_str("\ninit\n");
        section(c, &init, &mut out);
        out.push_str("\neinsums\n");
        section(c, &body, &mut out);
    } else if !body.is_empty() {
        out.push('\n');
        section(c, &body, &mut out);
    }
    if c.stop.is_some() || !c.outputs.is_empty() {
        out.push('\n');
    }
    if let Some(stop) = &c.stop {
        let _ = writeln!(out, "stop {}", compare(c, stop));
    }
    if !c.outputs.is_empty() {
        let names: Vec<&str> = c
            .outputs
            .iter()
            .map(|t| c.tensor(*t).name.as_str())
            .collect();
        let _ = writeln!(out, "output {}", names.join(" "));
    }
    out
}

/// One Einsum as a single line of DSL text (`LM[m1,p] = max(m0) BQK[m1,m0,p]`), for reports and
/// for comments in generated code.
pub fn print_einsum(c: &Cascade, id: EinsumId) -> String {
    let mut out = String::new();
    section(c, &[c.einsum(id)], &mut out);
    out.trim_end().to_string()
}

fn declarations(c: &Cascade, out: &mut String) {
    // Ranks print in arena order; consecutive plain ranks (or params) share a line, and a split
    // prints where its outer rank sits (its inner rank follows it).
    let parent_of = |r: RankId| {
        let part = c.rank(r).range_of.unwrap_or(r);
        c.ranks
            .iter()
            .position(|p| p.split.is_some_and(|(o, i)| o == part || i == part))
            .map(|p| RankId(p as u32))
    };
    let mut lines: Vec<(&str, String)> = Vec::new();
    for (i, rank) in c.ranks.iter().enumerate() {
        let id = RankId(i as u32);
        if let Some(parent) = parent_of(id) {
            let (outer, inner) = c.rank(parent).split.expect("parent is split");
            if outer == id {
                let mut text = format!(
                    "split {} -> {} {}",
                    c.rank(parent).name,
                    c.rank(outer).name,
                    c.rank(inner).name
                );
                if let Some(second) = c.second_variable(inner) {
                    text.push(' ');
                    text.push_str(&c.rank(second).name);
                }
                lines.push(("split", text));
            }
            continue;
        }
        let kind = if rank.is_param { "param" } else { "ranks" };
        match lines.last_mut() {
            Some((k, text)) if *k == kind => {
                text.push(' ');
                text.push_str(&rank.name);
            }
            _ => lines.push((kind, format!("{kind} {}", rank.name))),
        }
    }
    for (_, text) in lines {
        out.push_str(&text);
        out.push('\n');
    }
    let inputs: Vec<String> = c
        .tensors
        .iter()
        .filter(|t| t.kind == TensorKind::Input)
        .map(|t| {
            let ranks: Vec<&str> = t.ranks.iter().map(|r| c.rank(*r).name.as_str()).collect();
            format!("{}[{}]", t.name, ranks.join(","))
        })
        .collect();
    if !inputs.is_empty() {
        let _ = writeln!(out, "input {}", inputs.join(" "));
    }
}

fn section(c: &Cascade, einsums: &[&Einsum], out: &mut String) {
    let lhs: Vec<String> = einsums.iter().map(|e| access(c, &e.output)).collect();
    let width = lhs.iter().map(|s| s.chars().count()).max().unwrap_or(0);
    for (e, l) in einsums.iter().zip(&lhs) {
        let pad = width - l.chars().count();
        let _ = write!(out, "{l}{} = ", " ".repeat(pad));
        if let Some(red) = &e.reduction {
            let vars: Vec<String> = red.ranks.iter().map(|r| c.var_name(*r)).collect();
            let _ = write!(out, "{}({}) ", red.op, vars.join(", "));
        }
        expr(c, e.value, out);
        out.push('\n');
    }
}

/// Binding strength: 1 for `+ -`, 2 for `* /`, 3 for everything printed as one operand.
fn prec(c: &Cascade, id: ExprId) -> u8 {
    match c.expr(id) {
        Expr::Binary {
            op: BinaryOp::Add | BinaryOp::Sub,
            ..
        } => 1,
        Expr::Binary {
            op: BinaryOp::Mul | BinaryOp::Div,
            ..
        } => 2,
        _ => 3,
    }
}

fn merge_suffix(op: BinaryOp, merge: Merge) -> String {
    if merge == op.default_merge() {
        String::new()
    } else {
        format!("{{{merge}}}")
    }
}

/// One expression node (`exp(a - b)`), as the DSL writes it.
pub fn print_expr(c: &Cascade, id: ExprId) -> String {
    let mut out = String::new();
    expr(c, id, &mut out);
    out
}

/// A piece of printed text: literal text, or a node still to print (in parentheses or not).
enum Piece {
    Str(&'static str),
    Text(String),
    Node(ExprId, bool),
}

/// Prints the expression rooted at `root` with an explicit stack of pieces, so that an
/// expression of any depth prints without recursion.
fn expr(c: &Cascade, root: ExprId, out: &mut String) {
    let mut stack = vec![Piece::Node(root, false)];
    while let Some(piece) = stack.pop() {
        match piece {
            Piece::Str(s) => out.push_str(s),
            Piece::Text(s) => out.push_str(&s),
            Piece::Node(id, true) => {
                stack.extend([Piece::Str(")"), Piece::Node(id, false), Piece::Str("(")]);
            }
            Piece::Node(id, false) => stack.extend(pieces(c, id).into_iter().rev()),
        }
    }
}

/// What one node prints as, left to right, its operands as nodes still to print.
fn pieces(c: &Cascade, id: ExprId) -> Vec<Piece> {
    use Piece::{Node, Str, Text};
    match c.expr(id) {
        Expr::Access(a) => vec![Text(access(c, a))],
        Expr::Const(k) => vec![Text(constant(c, *k))],
        Expr::Unary(UnaryOp::Neg, arg) => {
            let bare = matches!(c.expr(*arg), Expr::Access(_));
            vec![Str("-"), Node(*arg, !bare)]
        }
        Expr::Unary(op, arg) => {
            // `exp(a - b)` would read back as sub-then-exp, so a subtraction gets its own parens.
            let sub = matches!(
                c.expr(*arg),
                Expr::Binary {
                    op: BinaryOp::Sub,
                    ..
                }
            );
            vec![
                Text(format!("{op}(")),
                Node(*arg, sub && *op == UnaryOp::Exp),
                Str(")"),
            ]
        }
        Expr::Binary {
            op,
            merge,
            lhs,
            rhs,
        } => {
            let m = merge_suffix(*op, *merge);
            match op {
                BinaryOp::SubExp => vec![
                    Text(format!("exp{m}(")),
                    Node(*lhs, false),
                    Str(" - "),
                    Node(*rhs, prec(c, *rhs) <= 1),
                    Str(")"),
                ],
                BinaryOp::Max | BinaryOp::Min => vec![
                    Text(format!("{}{m}(", op.info().name)),
                    Node(*lhs, false),
                    Str(", "),
                    Node(*rhs, false),
                    Str(")"),
                ],
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                    let sym = op.info().symbol.unwrap_or("?");
                    let p = if matches!(op, BinaryOp::Add | BinaryOp::Sub) {
                        1
                    } else {
                        2
                    };
                    vec![
                        Node(*lhs, prec(c, *lhs) < p),
                        Text(format!(" {sym}{m} ")),
                        Node(*rhs, prec(c, *rhs) <= p),
                    ]
                }
            }
        }
    }
}

fn constant(c: &Cascade, k: Constant) -> String {
    match k {
        Constant::NegInf => "-inf".to_string(),
        Constant::InvSqrtSize(r) => format!("1/sqrt({})", c.rank(r).name),
        Constant::Num(x) => number(x),
    }
}

/// Shortest text that reads back as the same f64; exponent form for very large or small values.
fn number(x: f64) -> String {
    if x == f64::INFINITY {
        "inf".to_string()
    } else if x == f64::NEG_INFINITY {
        "-inf".to_string()
    } else if x == 0.0 || (1e-4..1e15).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// `T[i,j : cond && cond]`, or the bare name for a scalar.
pub(crate) fn access(c: &Cascade, a: &Access) -> String {
    let mut s = String::new();
    write_access(c, a, &mut s);
    s
}

fn write_access(c: &Cascade, a: &Access, s: &mut String) {
    s.push_str(&c.tensor(a.tensor).name);
    if a.indices.is_empty() {
        return;
    }
    s.push('[');
    for (pos, idx) in a.indices.iter().enumerate() {
        if pos > 0 {
            s.push(',');
        }
        write_index(c, idx, s);
        let mut first = true;
        for cond in a
            .filters
            .iter()
            .filter(|f| f.position == pos)
            .flat_map(|f| &f.conds)
        {
            s.push_str(if first { " : " } else { " && " });
            first = false;
            write_compare(c, cond, s);
        }
    }
    s.push(']');
}

/// An affine comparison as the DSL writes it (`m <= p`).
pub fn print_compare(c: &Cascade, cmp: &Compare) -> String {
    compare(c, cmp)
}

/// An index expression as the DSL writes it (`m1*M0+m0`).
pub fn print_index(c: &Cascade, e: &IndexExpr) -> String {
    let mut s = String::new();
    write_index(c, e, &mut s);
    s
}

pub(crate) fn compare(c: &Cascade, cmp: &Compare) -> String {
    let mut s = String::new();
    write_compare(c, cmp, &mut s);
    s
}

fn write_compare(c: &Cascade, cmp: &Compare, s: &mut String) {
    write_index(c, &cmp.lhs, s);
    let _ = write!(s, " {} ", cmp.op);
    write_index(c, &cmp.rhs, s);
}

/// Index arithmetic without spaces (`m1*M0+m0`, `p-m`), parenthesised only where needed. Its
/// depth is bounded (`verify::MAX_INDEX_DEPTH`), so it recurses.
fn write_index(c: &Cascade, e: &IndexExpr, s: &mut String) {
    let additive = |e: &IndexExpr| matches!(e, IndexExpr::Add(..) | IndexExpr::Sub(..));
    let wrap = |e: &IndexExpr, paren: bool, s: &mut String| {
        if paren {
            s.push('(');
            write_index(c, e, s);
            s.push(')');
        } else {
            write_index(c, e, s);
        }
    };
    match e {
        IndexExpr::Var(r) => s.push_str(&c.var_name(*r)),
        IndexExpr::Size(r) => s.push_str(&c.rank(*r).name),
        IndexExpr::Lit(k) => {
            let _ = write!(s, "{k}");
        }
        IndexExpr::Add(a, b) | IndexExpr::Sub(a, b) => {
            write_index(c, a, s);
            s.push(if matches!(e, IndexExpr::Add(..)) {
                '+'
            } else {
                '-'
            });
            wrap(b, additive(b), s);
        }
        IndexExpr::Mul(a, b) => {
            wrap(a, additive(a), s);
            s.push('*');
            wrap(b, additive(b) || matches!(**b, IndexExpr::Mul(..)), s);
        }
    }
}

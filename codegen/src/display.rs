//! One-line DSL text of an Einsum, for the comments that tie generated code to its cascade.

use cascade_ir::{Access, BinaryOp, Cascade, Constant, EinsumId, Expr, ExprId, IndexExpr};

pub fn einsum(c: &Cascade, id: EinsumId) -> String {
    let e = c.einsum(id);
    let red = match &e.reduction {
        Some(r) => {
            let ranks: Vec<String> = r.ranks.iter().map(|&k| c.var_name(k)).collect();
            format!("{}({}) ", r.op, ranks.join(","))
        }
        None => String::new(),
    };
    format!("{} = {red}{}", access(c, &e.output), expr(c, e.value))
}

fn index(c: &Cascade, e: &IndexExpr) -> String {
    match e {
        IndexExpr::Var(r) => c.var_name(*r),
        IndexExpr::Size(r) => c.rank(*r).name.clone(),
        IndexExpr::Lit(k) => k.to_string(),
        IndexExpr::Add(a, b) => format!("{}+{}", index(c, a), index(c, b)),
        IndexExpr::Sub(a, b) => format!("{}-{}", index(c, a), index(c, b)),
        IndexExpr::Mul(a, b) => format!("{}*{}", index(c, a), index(c, b)),
    }
}

fn access(c: &Cascade, a: &Access) -> String {
    let name = &c.tensor(a.tensor).name;
    if a.indices.is_empty() {
        return name.clone();
    }
    let parts: Vec<String> = a
        .indices
        .iter()
        .enumerate()
        .map(|(i, ix)| {
            let mut s = index(c, ix);
            for f in a.filters.iter().filter(|f| f.position == i) {
                let conds: Vec<String> = f
                    .conds
                    .iter()
                    .map(|k| format!("{} {} {}", index(c, &k.lhs), k.op, index(c, &k.rhs)))
                    .collect();
                s.push_str(&format!(" : {}", conds.join(" && ")));
            }
            s
        })
        .collect();
    format!("{name}[{}]", parts.join(","))
}

fn expr(c: &Cascade, id: ExprId) -> String {
    match c.expr(id) {
        Expr::Access(a) => access(c, a),
        Expr::Const(Constant::Num(x)) => format!("{x}"),
        Expr::Const(Constant::NegInf) => "-inf".into(),
        Expr::Const(Constant::InvSqrtSize(r)) => format!("1/sqrt({})", c.rank(*r).name),
        Expr::Unary(op, a) => format!("{op}({})", expr(c, *a)),
        Expr::Binary {
            op,
            merge,
            lhs,
            rhs,
        } => {
            let m = if *merge == op.default_merge() {
                String::new()
            } else {
                format!("{{{merge}}}")
            };
            let (l, r) = (expr(c, *lhs), expr(c, *rhs));
            match op {
                BinaryOp::Add => format!("({l} +{m} {r})"),
                BinaryOp::Sub => format!("({l} -{m} {r})"),
                BinaryOp::Mul => format!("{l} *{m} {r}"),
                BinaryOp::Div => format!("{l} /{m} {r}"),
                BinaryOp::Max => format!("max{m}({l}, {r})"),
                BinaryOp::Min => format!("min{m}({l}, {r})"),
                BinaryOp::SubExp => format!("exp{m}({l} - {r})"),
            }
        }
    }
}

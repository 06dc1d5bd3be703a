//! Line-oriented recursive-descent parser from `.cascade` text to a [`Cascade`].
//!
//! Each line is lexed and parsed on its own; an error skips the rest of its line, so one run
//! reports every broken line. Intermediate tensors get their ranks after the whole file is read,
//! from the index expressions of their writes (then of their reads).

use std::collections::{HashMap, HashSet};

use super::diag::{Diagnostic, Diagnostics};
use super::lexer::{Span, Tok, Token, lex_line};
use super::{Parsed, SourceMap};
use crate::ast::*;
use crate::verify::index_rank;

/// Words the grammar gives a meaning to; they cannot name tensors or (lowercased) ranks.
pub const RESERVED: &[&str] = &[
    "cascade", "ranks", "split", "param", "input", "init", "einsums", "stop", "output", "inf",
    "exp", "max", "min", "sum", "prod", "neg", "recip", "sqrt", "sigmoid", "softplus", "relu",
    "elu1", "tanh",
];

const STATEMENT_HINT: &str = "a line is `cascade NAME`, `ranks`, `split`, `param`, `input`, `init`, `einsums`, `stop`, `output`, or an Einsum like `T[m,p] = A[m,p] * B[p]`";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Start,
    Decls,
    Init,
    Body,
    Footer,
}

#[derive(Debug)]
struct Use {
    write: bool,
    /// The rank each index walks (`verify::index_rank`), decided when the access is read.
    ranks: Vec<Option<RankId>>,
}

type PResult<T> = Result<T, Diagnostic>;

/// Longest statement accepted; keeps recursion (parser, printer, evaluators) shallow.
const MAX_TOKENS: usize = 400;
/// Deepest parenthesis/function nesting accepted.
const MAX_DEPTH: usize = 32;

fn p_end(toks: &[Token]) -> usize {
    toks.last().map_or(0, |t| t.span.end)
}

pub fn parse(source: &str) -> Result<Parsed, Diagnostics> {
    let mut p = Parser {
        c: Cascade {
            name: String::new(),
            ranks: Vec::new(),
            tensors: Vec::new(),
            exprs: Vec::new(),
            einsums: Vec::new(),
            outputs: Vec::new(),
            stop: None,
        },
        map: SourceMap::default(),
        diags: Vec::new(),
        phase: Phase::Start,
        uses: Vec::new(),
        tensor_defined: Vec::new(),
        parens: HashSet::new(),
        explicit_merge: HashSet::new(),
        toks: Vec::new(),
        pos: 0,
        line_end: 0,
        line_accesses: Vec::new(),
        depth: 0,
        names: Names::default(),
    };
    let mut base = 0;
    for line in source.split_inclusive('\n') {
        let text = line.trim_end_matches(['\n', '\r']);
        match lex_line(text, base) {
            Ok(toks) if toks.is_empty() => {}
            Ok(toks) if toks.len() > MAX_TOKENS => p.diags.push(Diagnostic::new(
                format!(
                    "line has {} tokens, more than the limit of {MAX_TOKENS}",
                    toks.len()
                ),
                toks[0].span.start..p_end(&toks),
                "too long",
                "split the Einsum into several shorter ones",
            )),
            Ok(toks) => {
                p.line_end = toks.last().map_or(base, |t| t.span.end);
                p.toks = toks;
                p.pos = 0;
                p.depth = 0;
                p.line_accesses.clear();
                if let Err(d) = p.statement() {
                    p.diags.push(d);
                }
            }
            Err(d) => p.diags.push(d),
        }
        base += line.len();
    }
    if p.phase == Phase::Start {
        p.diags.push(Diagnostic::new(
            "missing `cascade NAME` header",
            0..source.len().min(1),
            "the file has no statements",
            "start the file with `cascade my_name`, then declare `ranks` and `input`s",
        ));
    }
    p.infer_ranks();
    if p.diags.is_empty() {
        Ok(Parsed {
            cascade: p.c,
            spans: p.map,
        })
    } else {
        p.diags.sort_by_key(|d| d.span.start);
        Err(Diagnostics(p.diags))
    }
}

struct Parser {
    c: Cascade,
    map: SourceMap,
    diags: Vec<Diagnostic>,
    phase: Phase,
    uses: Vec<Vec<Use>>,
    /// Whether `map.tensors[t]` already points at a declaration or a write.
    tensor_defined: Vec<bool>,
    /// Expression nodes written inside parentheses: `exp((a - b))` is not a sub-then-exp.
    parens: HashSet<ExprId>,
    /// Binary nodes whose merge was written out.
    explicit_merge: HashSet<ExprId>,
    toks: Vec<Token>,
    pos: usize,
    line_end: usize,
    line_accesses: Vec<Span>,
    depth: usize,
    names: Names,
}

/// Name lookups by hash, so that parsing is linear in the number of declarations and uses.
#[derive(Default)]
struct Names {
    ranks: HashMap<String, RankId>,
    /// Index variables (`m1`) of the ranks that are not parameters.
    vars: HashMap<String, RankId>,
    tensors: HashMap<String, TensorId>,
}

impl Parser {
    fn rank_id(&self, name: &str) -> Option<RankId> {
        self.names.ranks.get(name).copied()
    }

    fn tensor_id(&self, name: &str) -> Option<TensorId> {
        self.names.tensors.get(name).copied()
    }

    fn push_tensor(&mut self, tensor: Tensor, span: Span, defined: bool) -> TensorId {
        let id = TensorId(self.c.tensors.len() as u32);
        self.names.tensors.insert(tensor.name.clone(), id);
        self.c.tensors.push(tensor);
        self.map.tensors.push(span);
        self.uses.push(Vec::new());
        self.tensor_defined.push(defined);
        id
    }

    // ---- token helpers -------------------------------------------------------------------

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Span of the current token, or just past the end of the line.
    fn here(&self) -> Span {
        match self.toks.get(self.pos) {
            Some(t) => t.span.clone(),
            None => self.line_end..self.line_end + 1,
        }
    }

    fn start(&self) -> usize {
        self.toks
            .get(self.pos)
            .map_or(self.line_end, |t| t.span.start)
    }

    /// End of the last consumed token.
    fn prev_end(&self) -> usize {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map_or(self.line_end, |t| t.span.end)
    }

    fn unexpected(&self, expected: &str, hint: &str) -> Diagnostic {
        let found = match self.peek() {
            Some(t) => t.describe(),
            None => "the end of the line".to_string(),
        };
        Diagnostic::new(
            format!("expected {expected}, found {found}"),
            self.here(),
            format!("expected {expected} here"),
            hint,
        )
    }

    fn expect(&mut self, tok: Tok, hint: &str) -> PResult<Span> {
        if self.peek() == Some(&tok) {
            Ok(self.bump().map(|t| t.span).unwrap_or_default())
        } else {
            Err(self.unexpected(&tok.describe(), hint))
        }
    }

    fn expect_end(&mut self, hint: &str) -> PResult<()> {
        if self.peek().is_none() {
            Ok(())
        } else {
            Err(self.unexpected("the end of the line", hint))
        }
    }

    fn ident(&mut self, what: &str, hint: &str) -> PResult<(String, Span)> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                let span = self.here();
                self.pos += 1;
                Ok((s, span))
            }
            _ => Err(self.unexpected(what, hint)),
        }
    }

    // ---- statements ----------------------------------------------------------------------

    fn statement(&mut self) -> PResult<()> {
        let is_einsum = matches!(self.peek(), Some(Tok::Ident(_)))
            && matches!(self.peek_at(1), Some(Tok::LBrack | Tok::Assign));
        let keyword = match self.peek() {
            Some(Tok::Ident(s)) if !is_einsum => s.clone(),
            _ => String::new(),
        };
        if self.phase == Phase::Start && keyword != "cascade" {
            self.phase = Phase::Decls;
            self.diags.push(Diagnostic::new(
                "missing `cascade NAME` header",
                self.here(),
                "the first statement should name the cascade",
                "start the file with `cascade my_name`",
            ));
        }
        if is_einsum {
            return self.einsum();
        }
        let kw_span = self.here();
        match keyword.as_str() {
            "cascade" => {
                self.pos += 1;
                if self.phase != Phase::Start {
                    return Err(Diagnostic::new(
                        "a second `cascade` header",
                        kw_span,
                        "the cascade was already named",
                        "a file holds one cascade: remove this line",
                    ));
                }
                let (name, span) = self.ident("the cascade's name", "write `cascade my_name`")?;
                self.expect_end("write `cascade my_name`")?;
                self.c.name = name;
                self.map.header = kw_span.start..span.end;
                self.phase = Phase::Decls;
                Ok(())
            }
            "ranks" | "param" | "split" | "input" => {
                self.pos += 1;
                if self.phase > Phase::Decls {
                    return Err(Diagnostic::new(
                        format!("`{keyword}` after the Einsums"),
                        kw_span,
                        "declarations must come first",
                        "move `ranks`, `split`, `param` and `input` lines above `init`, `einsums` and the first Einsum",
                    ));
                }
                match keyword.as_str() {
                    "ranks" => self.rank_decl(false),
                    "param" => self.rank_decl(true),
                    "split" => self.split_decl(),
                    _ => self.input_decl(),
                }
            }
            "init" => {
                self.pos += 1;
                self.expect_end(
                    "`init` stands alone on its line; Einsums follow on the next lines",
                )?;
                if self.phase > Phase::Decls {
                    return Err(Diagnostic::new(
                        "`init` section out of place",
                        kw_span,
                        "an Initialization section was already closed",
                        "write one `init` section, before `einsums`, the first body Einsum, `stop` and `output`",
                    ));
                }
                self.phase = Phase::Init;
                Ok(())
            }
            "einsums" => {
                self.pos += 1;
                self.expect_end(
                    "`einsums` stands alone on its line; Einsums follow on the next lines",
                )?;
                if self.phase > Phase::Init {
                    return Err(Diagnostic::new(
                        "`einsums` section out of place",
                        kw_span,
                        "the Extended Einsums section already began",
                        "write one `einsums` header, after `init` and before `stop` and `output`",
                    ));
                }
                self.phase = Phase::Body;
                Ok(())
            }
            "stop" => {
                self.pos += 1;
                self.phase = Phase::Footer;
                let start = self.start();
                let cond = self.compare()?;
                let span = start..self.prev_end();
                self.expect_end("write one condition, e.g. `stop m1 >= M1`")?;
                if self.c.stop.is_some() {
                    return Err(Diagnostic::new(
                        "a second stop condition",
                        kw_span.start..span.end,
                        "the cascade already has a stop condition",
                        "keep one `stop` line",
                    ));
                }
                self.c.stop = Some(cond);
                self.map.stop = Some(kw_span.start..span.end);
                Ok(())
            }
            "output" => {
                self.pos += 1;
                self.phase = Phase::Footer;
                let hint = "list tensor names without indices, e.g. `output AV`";
                self.ident("a tensor name", hint)?;
                self.pos -= 1;
                while let Some(Tok::Ident(_)) = self.peek() {
                    let (name, span) = self.ident("a tensor name", hint)?;
                    let t = self.tensor(&name, span.clone())?;
                    if self.c.outputs.contains(&t) {
                        return Err(Diagnostic::new(
                            format!("output `{name}` listed twice"),
                            span,
                            "already an output",
                            "list each output once",
                        ));
                    }
                    self.c.outputs.push(t);
                    self.map.outputs.push(span);
                }
                self.expect_end(hint)
            }
            _ => Err(self.unexpected("a declaration or an Einsum", STATEMENT_HINT)),
        }
    }

    fn check_rank_name(&self, name: &str, span: &Span) -> PResult<()> {
        let valid = name.starts_with(|c: char| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(Diagnostic::new(
                format!("`{name}` is not a rank name"),
                span.clone(),
                "rank names are uppercase",
                format!(
                    "write ranks in uppercase (`{}`); their index variables are the lowercase names",
                    name.to_uppercase()
                ),
            ));
        }
        let lower = name.to_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            return Err(Diagnostic::new(
                format!("rank `{name}` would have the reserved index variable `{lower}`"),
                span.clone(),
                "reserved word",
                "pick another rank name",
            ));
        }
        if self.rank_id(name).is_some() {
            return Err(Diagnostic::new(
                format!("rank `{name}` is declared twice"),
                span.clone(),
                "already declared",
                "declare each rank once",
            ));
        }
        if self.tensor_id(name).is_some() || self.tensor_id(&lower).is_some() {
            return Err(Diagnostic::new(
                format!("rank `{name}` clashes with a tensor name"),
                span.clone(),
                "a tensor already has this name (or its index variable)",
                "give ranks and tensors different names",
            ));
        }
        Ok(())
    }

    fn push_rank(&mut self, name: String, span: Span, is_param: bool) -> RankId {
        let id = RankId(self.c.ranks.len() as u32);
        self.names.ranks.insert(name.clone(), id);
        if !is_param {
            self.names.vars.entry(name.to_lowercase()).or_insert(id);
        }
        self.c.ranks.push(Rank {
            name,
            split: None,
            range_of: None,
            is_param,
        });
        self.map.ranks.push(span);
        RankId(self.c.ranks.len() as u32 - 1)
    }

    fn rank_decl(&mut self, is_param: bool) -> PResult<()> {
        let hint = if is_param {
            "list parameter names, e.g. `param W`"
        } else {
            "list uppercase rank names, e.g. `ranks E F M P`"
        };
        self.ident("a rank name", hint)?;
        self.pos -= 1;
        while self.peek().is_some() {
            let (name, span) = self.ident("a rank name", hint)?;
            self.check_rank_name(&name, &span)?;
            self.push_rank(name, span, is_param);
        }
        Ok(())
    }

    fn split_decl(&mut self) -> PResult<()> {
        let hint = "write `split M -> M1 M0` (m = m1*M0 + m0), or `split M -> M1 M0 N0` for a second variable n0 over M0";
        let (parent, pspan) = self.ident("the rank to split", hint)?;
        let Some(pid) = self.rank_id(&parent) else {
            return Err(self.unknown_rank(&parent, pspan));
        };
        if self.c.rank(pid).is_param {
            return Err(Diagnostic::new(
                format!("parameter `{parent}` cannot be split"),
                pspan,
                "a parameter is never iterated",
                "split a rank declared in `ranks`",
            ));
        }
        if self.c.rank(pid).split.is_some() {
            return Err(Diagnostic::new(
                format!("rank `{parent}` is split twice"),
                pspan,
                "already split",
                "split each rank once",
            ));
        }
        self.expect(Tok::Arrow, hint)?;
        let (outer, ospan) = self.ident("the outer rank's name", hint)?;
        let (inner, ispan) = self.ident("the inner rank's name", hint)?;
        // An optional third name: a second variable over the inner rank's range.
        let second = match self.peek() {
            Some(_) => Some(self.ident("the second inner variable's name", hint)?),
            None => None,
        };
        self.expect_end(hint)?;
        self.check_rank_name(&outer, &ospan)?;
        self.check_rank_name(&inner, &ispan)?;
        if outer == inner {
            return Err(Diagnostic::new(
                "a split needs two different ranks",
                ispan,
                "same name as the outer rank",
                hint,
            ));
        }
        if let Some((name, span)) = &second {
            self.check_rank_name(name, span)?;
            if *name == outer || *name == inner {
                return Err(Diagnostic::new(
                    "the second inner variable needs a rank name of its own",
                    span.clone(),
                    "same name as a part of the split",
                    hint,
                ));
            }
        }
        let o = self.push_rank(outer, ospan, false);
        let i = self.push_rank(inner, ispan, false);
        self.c.ranks[pid.index()].split = Some((o, i));
        if let Some((name, span)) = second {
            let n = self.push_rank(name, span, false);
            self.c.ranks[n.index()].range_of = Some(i);
        }
        Ok(())
    }

    fn input_decl(&mut self) -> PResult<()> {
        let hint = "write `input Q[E,P] K[E,M]` (ranks in brackets; `S` or `S[]` for a scalar)";
        self.ident("a tensor name", hint)?;
        self.pos -= 1;
        while self.peek().is_some() {
            let (name, span) = self.ident("a tensor name", hint)?;
            self.check_tensor_name(&name, &span)?;
            if self.tensor_id(&name).is_some() {
                return Err(Diagnostic::new(
                    format!("input `{name}` is declared twice"),
                    span,
                    "already declared",
                    "declare each input once",
                ));
            }
            let mut ranks = Vec::new();
            let mut end = span.end;
            if self.eat(&Tok::LBrack) {
                while !self.eat(&Tok::RBrack) {
                    if !ranks.is_empty() {
                        self.expect(Tok::Comma, hint)?;
                    }
                    let (r, rspan) = self.ident("a rank name", hint)?;
                    let Some(id) = self.rank_id(&r) else {
                        return Err(self.unknown_rank(&r, rspan));
                    };
                    if self.c.rank(id).is_param {
                        return Err(Diagnostic::new(
                            format!("`{r}` is a parameter, not a rank a tensor can have"),
                            rspan,
                            "declared with `param`",
                            "declare it in `ranks` if tensors are indexed by it",
                        ));
                    }
                    ranks.push(id);
                }
                end = self.prev_end();
            }
            let input = Tensor {
                name,
                kind: TensorKind::Input,
                ranks,
            };
            self.push_tensor(input, span.start..end, true);
        }
        Ok(())
    }

    fn einsum(&mut self) -> PResult<()> {
        let section = match self.phase {
            Phase::Init => Section::Init,
            Phase::Start | Phase::Decls | Phase::Body => {
                self.phase = Phase::Body;
                Section::Body
            }
            Phase::Footer => {
                return Err(Diagnostic::new(
                    "Einsum after `stop`/`output`",
                    self.here(),
                    "the footer already began",
                    "move `stop` and `output` to the end of the file",
                ));
            }
        };
        let start = self.start();
        let output = self.access(true)?;
        self.expect(Tok::Assign, "an Einsum is `T[i,j] = expression`")?;
        let reduction = self.reduction()?;
        let value = self.expr()?;
        self.expect_end(
            "one Einsum a line; join operands with + - * / or a function such as max(a, b)",
        )?;
        self.c.einsums.push(Einsum {
            section,
            output,
            reduction,
            value,
        });
        self.map.einsums.push(start..self.prev_end());
        self.map
            .accesses
            .push(std::mem::take(&mut self.line_accesses));
        Ok(())
    }

    /// `max(m) …`: a reduce op followed by a parenthesised list of index variables.
    fn reduction(&mut self) -> PResult<Option<Reduction>> {
        let op = match self.peek() {
            Some(Tok::Ident(s)) => match s.as_str() {
                "sum" => ReduceOp::Sum,
                "prod" => ReduceOp::Prod,
                "max" => ReduceOp::Max,
                "min" => ReduceOp::Min,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        if self.peek_at(1) != Some(&Tok::LParen) {
            return Ok(None);
        }
        // Scan `(a, b)`: a list of plain names. For max/min it is a reduction only when the
        // names are index variables or a value follows; otherwise it is binary max(a, b).
        let mut k = 2;
        let mut names = Vec::new();
        while let Some(Tok::Ident(s)) = self.peek_at(k) {
            names.push(s.clone());
            match self.peek_at(k + 1) {
                Some(Tok::Comma) => k += 2,
                Some(Tok::RParen) => {
                    k += 2;
                    break;
                }
                _ => {
                    names.clear();
                    break;
                }
            }
        }
        let is_list = !names.is_empty() && self.peek_at(k - 1) == Some(&Tok::RParen);
        let all_vars = names.iter().all(|n| self.var_by_name(n).is_some());
        let value_follows = !matches!(
            self.peek_at(k),
            None | Some(Tok::Plus | Tok::Minus | Tok::Star | Tok::Slash)
        );
        let reduce = match op {
            ReduceOp::Sum | ReduceOp::Prod => true,
            ReduceOp::Max | ReduceOp::Min => is_list && (all_vars || value_follows),
        };
        if !reduce {
            return Ok(None);
        }
        let hint = format!(
            "a reduction lists index variables, then the value: `{op}(m) X[m,p]`; declared variables: {}",
            self.var_list()
        );
        self.pos += 2;
        let mut ranks = Vec::new();
        loop {
            let (name, span) = self.ident("an index variable", &hint)?;
            let Some(r) = self.var_by_name(&name) else {
                return Err(self.unknown_var(&name, span));
            };
            if ranks.contains(&r) {
                return Err(Diagnostic::new(
                    format!("`{name}` is reduced twice"),
                    span,
                    "already listed",
                    "list each variable once",
                ));
            }
            ranks.push(r);
            if self.eat(&Tok::RParen) {
                break;
            }
            self.expect(Tok::Comma, &hint)?;
        }
        if self.peek().is_none() {
            return Err(self.unexpected("the value to reduce", &hint));
        }
        Ok(Some(Reduction { op, ranks }))
    }

    // ---- expressions ---------------------------------------------------------------------

    fn push_expr(&mut self, e: Expr) -> ExprId {
        self.c.exprs.push(e);
        ExprId(self.c.exprs.len() as u32 - 1)
    }

    fn merge(&mut self) -> Option<Merge> {
        match self.peek() {
            Some(Tok::Merge(m)) => {
                let m = *m;
                self.pos += 1;
                Some(m)
            }
            _ => None,
        }
    }

    fn binary(&mut self, op: BinaryOp, merge: Option<Merge>, lhs: ExprId, rhs: ExprId) -> ExprId {
        let id = self.push_expr(Expr::Binary {
            op,
            merge: merge.unwrap_or(op.default_merge()),
            lhs,
            rhs,
        });
        if merge.is_some() {
            self.explicit_merge.insert(id);
        }
        id
    }

    fn expr(&mut self) -> PResult<ExprId> {
        self.enter()?;
        let e = self.expr_inner();
        self.depth -= 1;
        e
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.depth -= 1;
            return Err(Diagnostic::new(
                format!("nested more than {MAX_DEPTH} levels deep"),
                self.here(),
                "too deep",
                "split the Einsum into several shallower ones",
            ));
        }
        Ok(())
    }

    fn expr_inner(&mut self) -> PResult<ExprId> {
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => BinaryOp::Add,
                Some(Tok::Minus) => BinaryOp::Sub,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let merge = self.merge();
            let rhs = self.term()?;
            lhs = self.binary(op, merge, lhs, rhs);
        }
    }

    fn term(&mut self) -> PResult<ExprId> {
        let mut lhs = self.factor()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Star) => BinaryOp::Mul,
                Some(Tok::Slash) => BinaryOp::Div,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let merge = self.merge();
            let rhs = self.factor()?;
            lhs = self.binary(op, merge, lhs, rhs);
        }
    }

    fn factor(&mut self) -> PResult<ExprId> {
        if !self.eat(&Tok::Minus) {
            return self.atom();
        }
        match self.peek().cloned() {
            Some(Tok::Int(k)) => {
                self.pos += 1;
                Ok(self.push_expr(Expr::Const(Constant::Num(-(k as f64)))))
            }
            Some(Tok::Float(x)) => {
                self.pos += 1;
                Ok(self.push_expr(Expr::Const(Constant::Num(-x))))
            }
            Some(Tok::Ident(s)) if s == "inf" => {
                self.pos += 1;
                Ok(self.push_expr(Expr::Const(Constant::NegInf)))
            }
            _ => {
                let arg = self.atom()?;
                Ok(self.push_expr(Expr::Unary(UnaryOp::Neg, arg)))
            }
        }
    }

    fn atom(&mut self) -> PResult<ExprId> {
        let operand_hint = "an operand is a tensor access `T[m,p]`, a number, `-inf`, `1/sqrt(E)`, `(…)` or a function such as exp(…), max(a, b)";
        match self.peek().cloned() {
            Some(Tok::Int(_) | Tok::Float(_)) => {
                let value = match self.bump().map(|t| t.tok) {
                    Some(Tok::Int(k)) => k as f64,
                    Some(Tok::Float(x)) => x,
                    _ => unreachable!("peeked a number"),
                };
                let sqrt_rank = match (self.peek_at(1), self.peek_at(3)) {
                    (Some(Tok::Ident(f)), Some(Tok::Ident(r))) if f == "sqrt" => self.rank_id(r),
                    _ => None,
                };
                if let Some(id) = sqrt_rank
                    && value == 1.0
                    && self.peek() == Some(&Tok::Slash)
                    && self.peek_at(2) == Some(&Tok::LParen)
                    && self.peek_at(4) == Some(&Tok::RParen)
                {
                    self.pos += 5;
                    return Ok(self.push_expr(Expr::Const(Constant::InvSqrtSize(id))));
                }
                Ok(self.push_expr(Expr::Const(Constant::Num(value))))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.expr()?;
                self.expect(Tok::RParen, "close the parenthesis")?;
                self.parens.insert(e);
                Ok(e)
            }
            Some(Tok::Ident(name)) => match name.as_str() {
                "inf" => {
                    self.pos += 1;
                    Ok(self.push_expr(Expr::Const(Constant::Num(f64::INFINITY))))
                }
                "exp" => self.exp(),
                "max" | "min" => {
                    let op = if name == BinaryOp::Max.info().name {
                        BinaryOp::Max
                    } else {
                        BinaryOp::Min
                    };
                    let hint = format!(
                        "binary {name} is `{name}(a, b)`; a reduction `{name}(m) X[m]` must come right after `=`"
                    );
                    self.pos += 1;
                    let merge = self.merge();
                    self.expect(Tok::LParen, &hint)?;
                    let a = self.expr()?;
                    self.expect(Tok::Comma, &hint)?;
                    let b = self.expr()?;
                    self.expect(Tok::RParen, &hint)?;
                    Ok(self.binary(op, merge, a, b))
                }
                // `exp` is matched above: it also spells sub-then-exp.
                n if let Some(op) = UnaryOp::from_name(n) => {
                    self.pos += 1;
                    let hint = format!("`{name}` takes one argument: `{name}(X[m])`");
                    self.expect(Tok::LParen, &hint)?;
                    let arg = self.expr()?;
                    self.expect(Tok::RParen, &hint)?;
                    Ok(self.push_expr(Expr::Unary(op, arg)))
                }
                "sum" | "prod" => Err(Diagnostic::new(
                    format!("`{name}` reduction inside an expression"),
                    self.here(),
                    "reductions apply to the whole right-hand side",
                    format!(
                        "write the reduction right after `=`: `T[p] = {name}(m) X[m,p]`, or split the Einsum in two"
                    ),
                )),
                _ => Ok(self
                    .access(false)
                    .map(|a| self.push_expr(Expr::Access(a)))?),
            },
            _ => Err(self.unexpected("an operand", operand_hint)),
        }
    }

    /// `exp(x)`, or sub-then-exp `exp{m}(a - b)` when the argument's top level is a subtraction.
    fn exp(&mut self) -> PResult<ExprId> {
        let exp_span = self.here();
        self.pos += 1;
        let merge = self.merge();
        let hint =
            "`exp(X)` or sub-then-exp `exp(A - B)`; its merge goes after exp: `exp{1}(A - B)`";
        self.expect(Tok::LParen, hint)?;
        let inner = self.expr()?;
        self.expect(Tok::RParen, hint)?;
        let sub = match self.c.expr(inner) {
            Expr::Binary {
                op: BinaryOp::Sub,
                lhs,
                rhs,
                ..
            } if !self.parens.contains(&inner) => Some((*lhs, *rhs)),
            _ => None,
        };
        match sub {
            Some((lhs, rhs)) => {
                if self.explicit_merge.contains(&inner) {
                    return Err(Diagnostic::new(
                        "merge on the subtraction of a sub-then-exp",
                        exp_span.start..self.prev_end(),
                        "exp(A - B) is one action",
                        "write its merge after exp: `exp{1}(A - B)`",
                    ));
                }
                self.c.exprs[inner.index()] = Expr::Binary {
                    op: BinaryOp::SubExp,
                    merge: merge.unwrap_or(BinaryOp::SubExp.default_merge()),
                    lhs,
                    rhs,
                };
                if merge.is_some() {
                    self.explicit_merge.insert(inner);
                }
                Ok(inner)
            }
            None if merge.is_some() => Err(Diagnostic::new(
                "merge on a unary exp",
                exp_span,
                "only sub-then-exp `exp(A - B)` has a merge",
                "drop the merge, or write exp{m}(A - B)",
            )),
            None => Ok(self.push_expr(Expr::Unary(UnaryOp::Exp, inner))),
        }
    }

    // ---- tensors and accesses ------------------------------------------------------------

    fn check_tensor_name(&self, name: &str, span: &Span) -> PResult<()> {
        if RESERVED.contains(&name) {
            return Err(Diagnostic::new(
                format!("`{name}` is a reserved word, not a tensor"),
                span.clone(),
                "reserved",
                format!(
                    "rename the tensor; reserved words are {}",
                    RESERVED.join(" ")
                ),
            ));
        }
        if self.rank_id(name).is_some() || self.var_by_name(name).is_some() {
            return Err(Diagnostic::new(
                format!("`{name}` is a rank (or its index variable), not a tensor"),
                span.clone(),
                "names a rank",
                "tensors and ranks need different names; the scale 1/sqrt(E) is written exactly like that",
            ));
        }
        Ok(())
    }

    /// The tensor called `name`, created on first mention.
    fn tensor(&mut self, name: &str, span: Span) -> PResult<TensorId> {
        if let Some(t) = self.tensor_id(name) {
            return Ok(t);
        }
        self.check_tensor_name(name, &span)?;
        let tensor = Tensor {
            name: name.to_string(),
            kind: TensorKind::Intermediate,
            ranks: Vec::new(),
        };
        Ok(self.push_tensor(tensor, span, false))
    }

    fn access(&mut self, write: bool) -> PResult<Access> {
        let (name, name_span) = self.ident("a tensor name", "an access is `T[m,p]` or `T`")?;
        let tensor = self.tensor(&name, name_span.clone())?;
        let mut indices = Vec::new();
        let mut filters = Vec::new();
        let hint = "indices are index expressions separated by commas, each optionally filtered: `K[e, m : m <= p]`";
        if self.eat(&Tok::LBrack) {
            while !self.eat(&Tok::RBrack) {
                if !indices.is_empty() && !self.eat(&Tok::Comma) {
                    return Err(self.unexpected("`,` or `]`", hint));
                }
                indices.push(self.index()?);
                if self.eat(&Tok::Colon) {
                    let mut conds = vec![self.compare()?];
                    while self.eat(&Tok::AndAnd) {
                        conds.push(self.compare()?);
                    }
                    filters.push(Filter {
                        position: indices.len() - 1,
                        conds,
                    });
                }
            }
        }
        let span = name_span.start..self.prev_end();
        if write && !self.tensor_defined[tensor.index()] {
            self.map.tensors[tensor.index()] = span.clone();
            self.tensor_defined[tensor.index()] = true;
        }
        let ranks = indices.iter().map(|i| index_rank(&self.c, i)).collect();
        self.uses[tensor.index()].push(Use { write, ranks });
        self.line_accesses.push(span);
        Ok(Access {
            tensor,
            indices,
            filters,
        })
    }

    fn compare(&mut self) -> PResult<Compare> {
        let lhs = self.index()?;
        let op = match self.peek() {
            Some(Tok::Lt) => CompareOp::Lt,
            Some(Tok::Le) => CompareOp::Le,
            Some(Tok::Gt) => CompareOp::Gt,
            Some(Tok::Ge) => CompareOp::Ge,
            Some(Tok::EqEq) => CompareOp::Eq,
            Some(Tok::Ne) => CompareOp::Ne,
            _ => {
                return Err(self.unexpected(
                    "a comparison (< <= > >= == !=)",
                    "a condition compares two index expressions, e.g. `m <= p` or `p - m < W`",
                ));
            }
        };
        self.pos += 1;
        let rhs = self.index()?;
        Ok(Compare { lhs, op, rhs })
    }

    // ---- index expressions ---------------------------------------------------------------

    fn index(&mut self) -> PResult<IndexExpr> {
        self.enter()?;
        let e = self.index_inner();
        self.depth -= 1;
        e
    }

    fn index_inner(&mut self) -> PResult<IndexExpr> {
        let mut lhs = self.index_term()?;
        loop {
            let add = match self.peek() {
                Some(Tok::Plus) => true,
                Some(Tok::Minus) => false,
                _ => return Ok(lhs),
            };
            self.pos += 1;
            let rhs = self.index_term()?;
            lhs = if add {
                IndexExpr::Add(Box::new(lhs), Box::new(rhs))
            } else {
                IndexExpr::Sub(Box::new(lhs), Box::new(rhs))
            };
        }
    }

    fn index_term(&mut self) -> PResult<IndexExpr> {
        let mut lhs = self.index_atom()?;
        while self.eat(&Tok::Star) {
            let rhs = self.index_atom()?;
            lhs = IndexExpr::Mul(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn index_atom(&mut self) -> PResult<IndexExpr> {
        let hint = |p: &Parser| {
            format!(
                "an index is built from variables ({}), sizes ({}), integers, + - * and parentheses",
                p.var_list(),
                p.rank_list()
            )
        };
        match self.peek().cloned() {
            Some(Tok::Int(k)) => {
                self.pos += 1;
                Ok(IndexExpr::Lit(k))
            }
            Some(Tok::Minus) if matches!(self.peek_at(1), Some(Tok::Int(_))) => {
                self.pos += 1;
                match self.bump().map(|t| t.tok) {
                    Some(Tok::Int(k)) => Ok(IndexExpr::Lit(-k)),
                    _ => unreachable!("peeked an integer"),
                }
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.index()?;
                self.expect(Tok::RParen, "close the parenthesis")?;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                let span = self.here();
                self.pos += 1;
                if let Some(r) = self.rank_id(&name) {
                    return Ok(IndexExpr::Size(r));
                }
                if let Some(r) = self.var_by_name(&name) {
                    return Ok(IndexExpr::Var(r));
                }
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    Err(self.unknown_rank(&name, span))
                } else {
                    Err(self.unknown_var(&name, span))
                }
            }
            Some(Tok::Float(_)) => Err(Diagnostic::new(
                "fractional index",
                self.here(),
                "indices are integers",
                hint(self),
            )),
            _ => Err(self.unexpected("an index expression", &hint(self))),
        }
    }

    // ---- names ---------------------------------------------------------------------------

    /// The rank iterated by variable `name` (`m1` → `M1`); parameters have no variable.
    fn var_by_name(&self, name: &str) -> Option<RankId> {
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        self.names.vars.get(name).copied()
    }

    fn rank_list(&self) -> String {
        let names: Vec<&str> = self.c.ranks.iter().map(|r| r.name.as_str()).collect();
        if names.is_empty() {
            "none declared".to_string()
        } else {
            names.join(" ")
        }
    }

    fn var_list(&self) -> String {
        let names: Vec<String> = self
            .c
            .ranks
            .iter()
            .filter(|r| !r.is_param)
            .map(|r| r.name.to_lowercase())
            .collect();
        if names.is_empty() {
            "none declared".to_string()
        } else {
            names.join(" ")
        }
    }

    fn unknown_rank(&self, name: &str, span: Span) -> Diagnostic {
        Diagnostic::new(
            format!("rank `{name}` is not declared"),
            span,
            "unknown rank",
            format!("declare it in `ranks` or use one of {}", self.rank_list()),
        )
    }

    fn unknown_var(&self, name: &str, span: Span) -> Diagnostic {
        let lower = name.to_lowercase();
        let param = self
            .c
            .ranks
            .iter()
            .any(|r| r.is_param && r.name.to_lowercase() == lower);
        let hint = if param {
            format!(
                "`{}` is a parameter: use its size `{}`; index variables are {}",
                name.to_uppercase(),
                name.to_uppercase(),
                self.var_list()
            )
        } else {
            format!(
                "declare rank `{}` in `ranks` or use one of {}",
                name.to_uppercase(),
                self.var_list()
            )
        };
        Diagnostic::new(
            format!("`{name}` is not the index variable of a declared rank"),
            span,
            "unknown index variable",
            hint,
        )
    }

    // ---- rank inference ------------------------------------------------------------------

    /// Gives each intermediate tensor the ranks its writes (else its reads) index it by.
    fn infer_ranks(&mut self) {
        for t in 0..self.c.tensors.len() {
            if self.c.tensors[t].kind == TensorKind::Input {
                continue;
            }
            let uses = &self.uses[t];
            let Some(first) = uses.iter().find(|u| u.write).or(uses.first()) else {
                continue;
            };
            let arity = first.ranks.len();
            let mut ranks = Vec::with_capacity(arity);
            for pos in 0..arity {
                let found = uses
                    .iter()
                    .filter(|u| u.write)
                    .chain(uses.iter().filter(|u| !u.write))
                    .filter(|u| u.ranks.len() == arity)
                    .find_map(|u| u.ranks[pos]);
                match found {
                    Some(r) => ranks.push(r),
                    None => {
                        let name = &self.c.tensors[t].name;
                        self.diags.push(Diagnostic::new(
                            format!("cannot tell the rank of dimension {pos} of `{name}`"),
                            self.map.tensors[t].clone(),
                            "no access names a rank at this position",
                            format!(
                                "write or read `{name}` at least once with an index variable at position {pos} (e.g. `m` or `m1+1`)"
                            ),
                        ));
                        break;
                    }
                }
            }
            self.c.tensors[t].ranks = ranks;
        }
    }
}

//! The OpenFGA modeling language (schema 1.1): parse and print.
//!
//! ```text
//! model
//!   schema 1.1
//! type user
//! type document
//!   relations
//!     define owner: [user]
//!     define viewer: [user, user:*, group#member, user with in_office] or owner or viewer from parent
//! condition in_office(ip: ipaddress) {
//!   ip.in_cidr("10.0.0.0/8")
//! }
//! ```
//!
//! Every syntax error carries the line and column where it was found.

use std::collections::BTreeMap;
use std::fmt;

use super::{Condition, Model, RelatedType, RelationDef, Rewrite, TypeDef};

/// A syntax or consistency error, with where it is (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct DslError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses a model written in the DSL and checks that every name it uses is defined.
pub fn parse(text: &str) -> Result<Model, DslError> {
    let mut p = Parser { lines: logical_lines(text), at: 0 };
    let model = p.model()?;
    validate(&model, text)?;
    Ok(model)
}

/// A source line with comments removed, and where it starts.
struct Line {
    number: usize,
    indent: usize,
    text: String,
}

/// Non-blank lines with `#` comments removed (a `#` after a space or at the start
/// begins a comment; `group#member` is not one). Condition bodies are kept verbatim.
fn logical_lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut in_condition = false;
    for (i, raw) in text.lines().enumerate() {
        let mut s = raw.to_string();
        if !in_condition {
            let mut cut = None;
            let bytes = s.as_bytes();
            for (j, &b) in bytes.iter().enumerate() {
                if b == b'#' && (j == 0 || bytes[j - 1] == b' ' || bytes[j - 1] == b'\t') {
                    cut = Some(j);
                    break;
                }
            }
            if let Some(j) = cut {
                s.truncate(j);
            }
        }
        let trimmed_end = s.trim_end();
        if trimmed_end.trim().is_empty() {
            continue;
        }
        let indent = trimmed_end.len() - trimmed_end.trim_start().len();
        let t = trimmed_end.trim_start().to_string();
        if t.starts_with("condition ") {
            in_condition = !t.ends_with('}');
        } else if in_condition && t.ends_with('}') {
            in_condition = false;
        }
        out.push(Line { number: i + 1, indent, text: t });
    }
    out
}

struct Parser {
    lines: Vec<Line>,
    at: usize,
}

fn err(line: usize, column: usize, message: impl Into<String>) -> DslError {
    DslError { line, column, message: message.into() }
}

impl Parser {
    fn peek(&self) -> Option<&Line> {
        self.lines.get(self.at)
    }

    fn model(&mut self) -> Result<Model, DslError> {
        let first = self.peek().ok_or_else(|| err(1, 1, "empty model: expected `model`"))?;
        if first.text != "model" {
            return Err(err(first.number, first.indent + 1, format!("expected `model`, found `{}`", first.text)));
        }
        let first_number = first.number;
        self.at += 1;
        let schema_line = self.peek().ok_or_else(|| err(first_number + 1, 1, "expected `schema 1.1` after `model`"))?;
        let (number, indent) = (schema_line.number, schema_line.indent);
        let schema = match schema_line.text.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["schema", v] => v.to_string(),
            _ => return Err(err(number, indent + 1, "expected `schema 1.1`")),
        };
        if schema != "1.1" {
            return Err(err(number, indent + 8, format!("unsupported schema `{schema}`: only 1.1")));
        }
        self.at += 1;
        let mut model = Model { schema, types: Vec::new(), conditions: BTreeMap::new() };
        while let Some(line) = self.peek() {
            let (number, indent) = (line.number, line.indent);
            if let Some(name) = line.text.strip_prefix("type ") {
                let name = name.trim().to_string();
                check_name(&name, number, indent + 6, "type")?;
                self.at += 1;
                let relations = self.relations()?;
                if model.types.iter().any(|t| t.name == name) {
                    return Err(err(number, indent + 6, format!("type `{name}` is defined twice")));
                }
                model.types.push(TypeDef { name, relations });
            } else if line.text.starts_with("condition ") {
                let c = self.condition()?;
                if model.conditions.contains_key(&c.name) {
                    return Err(err(number, indent + 11, format!("condition `{}` is defined twice", c.name)));
                }
                model.conditions.insert(c.name.clone(), c);
            } else {
                return Err(err(number, indent + 1, format!("expected `type` or `condition`, found `{}`", line.text)));
            }
        }
        Ok(model)
    }

    fn relations(&mut self) -> Result<Vec<RelationDef>, DslError> {
        let mut out: Vec<RelationDef> = Vec::new();
        let Some(line) = self.peek() else { return Ok(out) };
        if line.text != "relations" {
            return Ok(out);
        }
        self.at += 1;
        while let Some(line) = self.peek() {
            let Some(rest) = line.text.strip_prefix("define ") else { break };
            let (number, col0) = (line.number, line.indent + 1);
            let (name, body) = rest
                .split_once(':')
                .ok_or_else(|| err(number, col0 + 7, "expected `define NAME: ...`: the `:` is missing"))?;
            let name = name.trim().to_string();
            check_name(&name, number, col0 + 7, "relation")?;
            let body_col = col0 + 7 + rest.find(':').map(|i| i + 1).unwrap_or(0);
            let tokens = tokenize(body, number, body_col)?;
            let mut ep = ExprParser { tokens, at: 0, line: number, end_col: col0 + line.text.len(), depth: 0 };
            let mut direct = Vec::new();
            let rewrite = ep.expression(&mut direct)?;
            ep.expect_end()?;
            if out.iter().any(|r| r.name == name) {
                return Err(err(number, col0 + 7, format!("relation `{name}` is defined twice")));
            }
            out.push(RelationDef { name, rewrite, directly_related: direct });
            self.at += 1;
        }
        Ok(out)
    }

    fn condition(&mut self) -> Result<Condition, DslError> {
        let line = &self.lines[self.at];
        let (number, col0) = (line.number, line.indent + 1);
        let head = line.text["condition ".len()..].to_string();
        let open =
            head.find('(').ok_or_else(|| err(number, col0 + 10, "expected `condition NAME(PARAM: TYPE, ...) {`"))?;
        let close =
            head.rfind(')').ok_or_else(|| err(number, col0 + 10, "the parameter list is not closed with `)`"))?;
        let name = head[..open].trim().to_string();
        check_name(&name, number, col0 + 10, "condition")?;
        let mut parameters = BTreeMap::new();
        for param in head[open + 1..close].split(',').filter(|p| !p.trim().is_empty()) {
            let (p, t) = param.split_once(':').ok_or_else(|| {
                err(number, col0 + 10 + open, format!("parameter `{}` needs a type: `NAME: TYPE`", param.trim()))
            })?;
            check_name(p.trim(), number, col0 + 10 + open, "parameter")?;
            let t = t.trim();
            if !is_param_type(t) {
                return Err(err(
                    number,
                    col0 + 10 + open,
                    format!("parameter `{}` has unknown type `{t}`: use {}", p.trim(), PARAM_TYPES.join(", ")),
                ));
            }
            parameters.insert(p.trim().to_string(), t.to_string());
        }
        let after = head[close + 1..].trim();
        let mut body = String::new();
        if !after.starts_with('{') {
            return Err(err(number, col0 + 10 + close + 1, "expected `{` after the parameters"));
        }
        let mut rest = after[1..].to_string();
        let mut rest_at = (number, col0);
        self.at += 1;
        loop {
            if let Some(end) = rest.rfind('}') {
                // The `}` ends its line, as the comment handling of the lines after it assumes.
                if !rest[end + 1..].trim().is_empty() {
                    return Err(err(rest_at.0, rest_at.1, "unexpected text after the `}` that closes the condition"));
                }
                body.push_str(&rest[..end]);
                break;
            }
            body.push_str(&rest);
            body.push('\n');
            let Some(next) = self.peek() else {
                return Err(err(number, col0, format!("condition `{name}` is not closed with `}}`")));
            };
            rest = next.text.clone();
            rest_at = (next.number, next.indent + 1);
            self.at += 1;
        }
        // The body ends at the last `}` of the first line that has one, so a `}` inside it would
        // print (`Display`) as text that reads back differently. OpenFGA's grammar has no `}` in
        // a condition expression either.
        if body.contains('}') {
            return Err(err(number, col0, format!("condition `{name}`: a `}}` may only close the expression")));
        }
        Ok(Condition { name, parameters, expression: body.trim().to_string() })
    }
}

/// The types a condition parameter may have, as OpenFGA spells them (also inside one `list<...>`
/// or `map<...>`): the ones [`crate::conditions`] converts a context value to.
const PARAM_TYPES: &[&str] = &["any", "bool", "double", "duration", "int", "ipaddress", "string", "timestamp", "uint"];

fn is_param_type(t: &str) -> bool {
    let inner = ["list<", "map<"].iter().find_map(|c| t.strip_prefix(c).and_then(|s| s.strip_suffix('>')));
    PARAM_TYPES.contains(&inner.unwrap_or(t))
}

fn check_name(name: &str, line: usize, column: usize, what: &str) -> Result<(), DslError> {
    let ok = name.chars().next().map(|c| c.is_ascii_alphabetic() || c == '_').unwrap_or(false)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(err(line, column, format!("invalid {what} name `{name}`")))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    LBracket,
    RBracket,
    Comma,
}

fn tokenize(body: &str, line: usize, col0: usize) -> Result<Vec<(Tok, usize)>, DslError> {
    let mut out = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = col0 + i;
        match c {
            ' ' | '\t' => i += 1,
            '(' => (out.push((Tok::Open, col)), i += 1).1,
            ')' => (out.push((Tok::Close, col)), i += 1).1,
            '[' => (out.push((Tok::LBracket, col)), i += 1).1,
            ']' => (out.push((Tok::RBracket, col)), i += 1).1,
            ',' => (out.push((Tok::Comma, col)), i += 1).1,
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '*' | '#') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '-' | ':' | '*' | '#'))
                {
                    i += 1;
                }
                out.push((Tok::Word(chars[start..i].iter().collect()), col));
            }
            other => return Err(err(line, col, format!("unexpected character `{other}`"))),
        }
    }
    Ok(out)
}

struct ExprParser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
    line: usize,
    end_col: usize,
    depth: usize,
}

/// How deeply parentheses may nest in one definition (a guard for the parser's stack).
const MAX_NESTING: usize = 32;

impl ExprParser {
    fn col(&self) -> usize {
        self.tokens.get(self.at).map(|t| t.1).unwrap_or(self.end_col)
    }

    fn word(&self) -> Option<&str> {
        match self.tokens.get(self.at) {
            Some((Tok::Word(w), _)) => Some(w),
            _ => None,
        }
    }

    fn expect_end(&self) -> Result<(), DslError> {
        match self.tokens.get(self.at) {
            None => Ok(()),
            Some((t, c)) => Err(err(self.line, *c, format!("unexpected `{}`", show(t)))),
        }
    }

    /// `term (or term)* | term (and term)* | term but not term`. As in OpenFGA,
    /// a `[...]` type restriction may only be the first term.
    fn expression(&mut self, direct: &mut Vec<RelatedType>) -> Result<Rewrite, DslError> {
        let first = self.term(direct)?;

        match self.word() {
            Some(op @ ("or" | "and")) => {
                let op = op.to_string();
                let mut children = vec![first];
                while self.word() == Some(op.as_str()) {
                    self.at += 1;
                    self.no_restriction_here()?;
                    children.push(self.term(direct)?);
                }
                if let Some(other @ ("or" | "and" | "but")) = self.word() {
                    return Err(err(
                        self.line,
                        self.col(),
                        format!("`{op}` and `{other}` mixed without parentheses: group them with `(...)`"),
                    ));
                }
                Ok(if op == "or" { Rewrite::Union(children) } else { Rewrite::Intersection(children) })
            }
            Some("but") => {
                self.at += 1;
                if self.word() != Some("not") {
                    return Err(err(self.line, self.col(), "expected `not` after `but`"));
                }
                self.at += 1;
                self.no_restriction_here()?;
                let subtract = self.term(direct)?;
                if let Some(other @ ("or" | "and" | "but")) = self.word() {
                    return Err(err(
                        self.line,
                        self.col(),
                        format!("`but not` and `{other}` mixed without parentheses: group them with `(...)`"),
                    ));
                }
                Ok(Rewrite::Difference(Box::new(first), Box::new(subtract)))
            }
            _ => Ok(first),
        }
    }

    fn no_restriction_here(&self) -> Result<(), DslError> {
        match self.tokens.get(self.at) {
            Some((Tok::LBracket, col)) => {
                Err(err(self.line, *col, "a `[...]` type restriction must come first in its expression"))
            }
            _ => Ok(()),
        }
    }

    fn term(&mut self, direct: &mut Vec<RelatedType>) -> Result<Rewrite, DslError> {
        match self.tokens.get(self.at).cloned() {
            Some((Tok::LBracket, _)) => {
                self.at += 1;
                if !direct.is_empty() {
                    return Err(err(self.line, self.col(), "a relation can have only one `[...]` type restriction"));
                }
                loop {
                    let col = self.col();
                    let Some(entry) = self.word().map(str::to_string) else {
                        return Err(err(self.line, col, "expected a type such as `user`, `user:*` or `group#member`"));
                    };
                    self.at += 1;
                    let mut condition = None;
                    if self.word() == Some("with") {
                        self.at += 1;
                        let c = self
                            .word()
                            .ok_or_else(|| err(self.line, self.col(), "expected a condition name after `with`"))?;
                        condition = Some(c.to_string());
                        self.at += 1;
                    }
                    direct.push(related(&entry, condition, self.line, col)?);
                    match self.tokens.get(self.at) {
                        Some((Tok::Comma, _)) => self.at += 1,
                        Some((Tok::RBracket, _)) => {
                            self.at += 1;
                            break;
                        }
                        _ => return Err(err(self.line, self.col(), "expected `,` or `]`")),
                    }
                }
                Ok(Rewrite::This)
            }
            Some((Tok::Open, col)) => {
                self.at += 1;
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(err(self.line, col, format!("parentheses nested more than {MAX_NESTING} deep")));
                }
                let inner = self.expression(direct)?;
                self.depth -= 1;
                match self.tokens.get(self.at) {
                    Some((Tok::Close, _)) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    _ => Err(err(self.line, self.col(), "expected `)`")),
                }
            }
            Some((Tok::Word(w), col)) if !matches!(w.as_str(), "or" | "and" | "but" | "from" | "with") => {
                check_name(&w, self.line, col, "relation")?;
                self.at += 1;
                if self.word() == Some("from") {
                    self.at += 1;
                    let col = self.col();
                    let tupleset =
                        self.word().ok_or_else(|| err(self.line, col, "expected a relation after `from`"))?.to_string();
                    check_name(&tupleset, self.line, col, "relation")?;
                    self.at += 1;
                    Ok(Rewrite::TupleToUserset { tupleset, computed: w })
                } else {
                    Ok(Rewrite::Computed(w))
                }
            }
            Some((t, col)) => {
                Err(err(self.line, col, format!("unexpected `{}`: expected a relation, `[` or `(`", show(&t))))
            }
            None => Err(err(self.line, self.end_col, "the definition ends too early")),
        }
    }
}

fn related(entry: &str, condition: Option<String>, line: usize, col: usize) -> Result<RelatedType, DslError> {
    let (type_name, relation, wildcard) = if let Some((t, r)) = entry.split_once('#') {
        (t, Some(r.to_string()), false)
    } else if let Some(t) = entry.strip_suffix(":*") {
        (t, None, true)
    } else {
        (entry, None, false)
    };
    check_name(type_name, line, col, "type")?;
    if let Some(r) = &relation {
        check_name(r, line, col, "relation")?;
    }
    Ok(RelatedType { type_name: type_name.to_string(), relation, wildcard, condition })
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Word(w) => w.clone(),
        Tok::Open => "(".into(),
        Tok::Close => ")".into(),
        Tok::LBracket => "[".into(),
        Tok::RBracket => "]".into(),
        Tok::Comma => ",".into(),
    }
}

/// Where a name first appears in the text, for error positions after parsing.
fn locate(text: &str, needle: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        if let Some(c) = line.find(needle) {
            return (i + 1, c + 1);
        }
    }
    (1, 1)
}

/// Every type, relation and condition a definition refers to must exist.
fn validate(model: &Model, text: &str) -> Result<(), DslError> {
    for t in &model.types {
        for r in &t.relations {
            let fail = |message: String| {
                let (line, column) = locate(text, &format!("define {}:", r.name));
                Err(DslError { line, column, message: format!("type `{}`, relation `{}`: {message}", t.name, r.name) })
            };
            for d in &r.directly_related {
                let Some(target) = model.type_def(&d.type_name) else {
                    return fail(format!("unknown type `{}`", d.type_name));
                };
                if let Some(rel) = &d.relation {
                    if target.relation(rel).is_none() {
                        return fail(format!("type `{}` has no relation `{rel}`", d.type_name));
                    }
                }
                if let Some(c) = &d.condition {
                    if !model.conditions.contains_key(c) {
                        return fail(format!("unknown condition `{c}`"));
                    }
                }
            }
            if let Err(message) = check_rewrite(model, t, r, &r.rewrite) {
                return fail(message);
            }
        }
    }
    // Only once every name resolves: can each relation be granted at all?
    for t in &model.types {
        for r in &t.relations {
            if !has_entrypoint(model, &t.name, &r.rewrite, r, &mut Vec::new()) {
                let (line, column) = locate(text, &format!("define {}:", r.name));
                return Err(DslError {
                    line,
                    column,
                    message: format!(
                        "type `{}`, relation `{}`: no entrypoint: no tuple can ever grant this relation \
                         (it only refers to itself or to relations that cannot be granted)",
                        t.name, r.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Whether some chain of tuples can grant the relation (OpenFGA refuses models where none can).
fn has_entrypoint(
    model: &Model,
    type_name: &str,
    rw: &Rewrite,
    rel: &RelationDef,
    seen: &mut Vec<(String, String)>,
) -> bool {
    match rw {
        Rewrite::This => rel.directly_related.iter().any(|d| match &d.relation {
            None => true,
            Some(r) => relation_has_entrypoint(model, &d.type_name, r, seen),
        }),
        Rewrite::Computed(c) => relation_has_entrypoint(model, type_name, c, seen),
        Rewrite::TupleToUserset { tupleset, computed } => model
            .relation(type_name, tupleset)
            .map(|ts| {
                ts.directly_related.iter().any(|d| {
                    model.relation(&d.type_name, computed).is_some()
                        && relation_has_entrypoint(model, &d.type_name, computed, seen)
                })
            })
            .unwrap_or(false),
        Rewrite::Union(cs) => cs.iter().any(|c| has_entrypoint(model, type_name, c, rel, seen)),
        Rewrite::Intersection(cs) => cs.iter().all(|c| has_entrypoint(model, type_name, c, rel, seen)),
        Rewrite::Difference(base, subtract) => {
            has_entrypoint(model, type_name, base, rel, seen) && has_entrypoint(model, type_name, subtract, rel, seen)
        }
    }
}

fn relation_has_entrypoint(model: &Model, type_name: &str, relation: &str, seen: &mut Vec<(String, String)>) -> bool {
    let key = (type_name.to_string(), relation.to_string());
    if seen.contains(&key) {
        return false; // on this path already: a loop grants nothing by itself
    }
    let Some(rel) = model.relation(type_name, relation) else { return false };
    seen.push(key);
    let found = has_entrypoint(model, type_name, &rel.rewrite, rel, seen);
    seen.pop();
    found
}

fn check_rewrite(model: &Model, t: &TypeDef, r: &RelationDef, rw: &Rewrite) -> Result<(), String> {
    match rw {
        Rewrite::This => {
            if r.directly_related.is_empty() {
                Err("`[...]` lists no types".into())
            } else {
                Ok(())
            }
        }
        Rewrite::Computed(c) => match t.relation(c) {
            Some(_) => Ok(()),
            None => Err(format!("relation `{c}` is not defined on type `{}`", t.name)),
        },
        Rewrite::TupleToUserset { tupleset, computed } => {
            let Some(ts) = t.relation(tupleset) else {
                return Err(format!("relation `{tupleset}` (after `from`) is not defined on type `{}`", t.name));
            };
            if ts.directly_related.iter().any(|d| d.relation.is_some() || d.wildcard) {
                return Err(format!("`{tupleset}` is used after `from`, so it may only list plain types"));
            }
            if ts.directly_related.iter().all(|d| model.relation(&d.type_name, computed).is_none()) {
                return Err(format!("no type related by `{tupleset}` has a relation `{computed}`"));
            }
            Ok(())
        }
        Rewrite::Union(cs) | Rewrite::Intersection(cs) => cs.iter().try_for_each(|c| check_rewrite(model, t, r, c)),
        Rewrite::Difference(a, b) => {
            check_rewrite(model, t, r, a)?;
            check_rewrite(model, t, r, b)
        }
    }
}

impl fmt::Display for Model {
    /// The model in the DSL, in the canonical layout `fga model transform` uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model\n  schema {}", self.schema)?;
        for t in &self.types {
            writeln!(f, "\ntype {}", t.name)?;
            if !t.relations.is_empty() {
                writeln!(f, "  relations")?;
                for r in &t.relations {
                    writeln!(f, "    define {}: {}", r.name, show_rewrite(&r.rewrite, &r.directly_related, true))?;
                }
            }
        }
        for c in self.conditions.values() {
            let params: Vec<String> = c.parameters.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            writeln!(f, "\ncondition {}({}) {{\n  {}\n}}", c.name, params.join(", "), c.expression)?;
        }
        Ok(())
    }
}

fn show_rewrite(rw: &Rewrite, direct: &[RelatedType], top: bool) -> String {
    let group = |s: String| if top { s } else { format!("({s})") };
    match rw {
        Rewrite::This => {
            let entries: Vec<String> = direct
                .iter()
                .map(|d| {
                    let mut s = d.type_name.clone();
                    if d.wildcard {
                        s.push_str(":*");
                    }
                    if let Some(r) = &d.relation {
                        s.push('#');
                        s.push_str(r);
                    }
                    if let Some(c) = &d.condition {
                        s.push_str(" with ");
                        s.push_str(c);
                    }
                    s
                })
                .collect();
            format!("[{}]", entries.join(", "))
        }
        Rewrite::Computed(c) => c.clone(),
        Rewrite::TupleToUserset { tupleset, computed } => format!("{computed} from {tupleset}"),
        Rewrite::Union(cs) => group(cs.iter().map(|c| show_rewrite(c, direct, false)).collect::<Vec<_>>().join(" or ")),
        Rewrite::Intersection(cs) => {
            group(cs.iter().map(|c| show_rewrite(c, direct, false)).collect::<Vec<_>>().join(" and "))
        }
        Rewrite::Difference(a, b) => {
            group(format!("{} but not {}", show_rewrite(a, direct, false), show_rewrite(b, direct, false)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str =
        "model\n  schema 1.1\ntype user\ntype group\n  relations\n    define member: [user, group#member]\n\
type folder\n  relations\n    define viewer: [user]\ntype document # docs\n  relations\n    define parent: [folder]\n\
    define owner: [user]\n    define blocked: [user]\n    define editor: [user, user:*] or owner\n\
    define viewer: ([user, group#member with xcond] or editor or viewer from parent) but not blocked\n\
condition xcond(x: int) {\n  x < 100\n}\n";

    #[test]
    fn parses_every_rewrite_form() {
        let m = parse(DOCS).unwrap();
        assert_eq!(m.types.len(), 4);
        let viewer = m.relation("document", "viewer").unwrap();
        assert_eq!(viewer.directly_related.len(), 2);
        assert_eq!(viewer.directly_related[1].condition.as_deref(), Some("xcond"));
        match &viewer.rewrite {
            Rewrite::Difference(base, sub) => {
                assert_eq!(**sub, Rewrite::Computed("blocked".into()));
                assert!(matches!(&**base, Rewrite::Union(c) if c.len() == 3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.conditions["xcond"].expression, "x < 100");
        assert_eq!(m.conditions["xcond"].parameters["x"], "int");
    }

    #[test]
    fn printing_then_parsing_gives_the_same_model() {
        let m = parse(DOCS).unwrap();
        let again = parse(&m.to_string()).unwrap();
        assert_eq!(m, again);
    }

    #[test]
    fn a_condition_expression_has_no_inner_closing_brace() {
        // Found by fuzzing (fuzz/, target `openfga_dsl`): `{ x } y }` was read as the expression
        // `x } y`, which prints as a model that no longer parses.
        let m = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user with c]\n";
        let e = parse(&format!("{m}condition c(x: int) {{ x < 1 }} y }}\n")).unwrap_err();
        assert!(e.message.contains("may only close the expression"), "{e}");
        let ok = parse(&format!("{m}condition c(x: int) {{ x < 1 }}\n")).unwrap();
        assert_eq!(parse(&ok.to_string()).unwrap(), ok);
    }

    #[test]
    fn nothing_follows_the_closing_brace_of_a_condition() {
        // Found by fuzzing (fuzz/, target `openfga_dsl`): `x } y` closed the condition and dropped
        // `y`, while the comment handling still took the lines after it for the condition's body,
        // so the model printed as text that no longer parsed.
        let m = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user with c]\n";
        let e = parse(&format!("{m}condition c(x: int) {{\n  x < 1 }} y\n")).unwrap_err();
        assert!(e.message.contains("after the `}` that closes"), "{e}");
        assert_eq!((e.line, e.column), (8, 3), "{e}");
        let e = parse(&format!("{m}condition c(x(: int) {{\n  x < 1\n}}\n")).unwrap_err();
        assert!(e.message.contains("invalid parameter name `x(`"), "{e}");
    }

    #[test]
    fn condition_parameters_have_known_types() {
        // Found by fuzzing (fuzz/, target `openfga_dsl`): `x: iNt` was accepted, never evaluated
        // (an unknown type), and read back from the model's JSON as the working `int`.
        let m = "model\n  schema 1.1\ntype user\ntype doc\n  relations\n    define viewer: [user with c]\n";
        for bad in ["iNt", "list<Int>", "list<list<int>>", "list< int >", "foo"] {
            let e = parse(&format!("{m}condition c(x: {bad}) {{\n  x == x\n}}\n")).unwrap_err();
            assert!(e.message.contains("unknown type"), "{bad}: {e}");
        }
        let ok =
            parse(&format!("{m}condition c(a: int, b: list<string>, c: map<timestamp>, d: any) {{\n  a < 1\n}}\n"))
                .unwrap();
        assert_eq!(crate::model::json::from_json(&crate::model::json::to_json(&ok)).unwrap(), ok);
    }

    #[test]
    fn errors_say_where() {
        let e = parse("model\n  schema 1.1\ntype user\n  relations\n    define viewer: [user] or or\n").unwrap_err();
        assert_eq!((e.line, e.column), (5, 30), "{e}");
        let e = parse("model\n  schema 1.1\ntype doc\n  relations\n    define a: [user]\n").unwrap_err();
        assert!(e.message.contains("unknown type `user`"), "{e}");
        assert_eq!(e.line, 5);
        let e = parse("model\n  schema 1.0\n").unwrap_err();
        assert!(e.message.contains("only 1.1"), "{e}");
        let e = parse("model\n  schema 1.1\ntype u\n  relations\n    define a: [u] or b and c\n").unwrap_err();
        assert!(e.message.contains("mixed without parentheses"), "{e}");
        let e = parse("model\n  schema 1.1\ntype u\n  relations\n    define a: b\n").unwrap_err();
        assert!(e.message.contains("relation `b` is not defined"), "{e}");
        let deep = format!(
            "model\n  schema 1.1\ntype u\n  relations\n    define a: {}[u]{}\n",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let e = parse(&deep).unwrap_err();
        assert!(e.message.contains("nested more than 32 deep"), "{e}");
    }
}

//! The Calico selector language (libcalico-go `lib/selector`): parse, print, evaluate.
//!
//! Grammar (lowest precedence first): `a || b`, `a && b`, `!a`, then terms:
//! `all()`, `global()`, `has(key)`, `key == 'v'`, `key != 'v'`, `key in {'a', 'b'}`,
//! `key not in {…}`, `key contains 'v'`, `key starts with 'v'`, `key ends with 'v'`,
//! and parenthesised expressions. An empty selector matches everything.
//!
//! Absent labels: `==`, `in`, `contains`, `starts with`, `ends with` are false, `!=` and
//! `not in` are true — which is why `!has(x)` and a rule's `notSelector: has(x)` differ.
//!
//! The language stands alone (it imports nothing else of the crate): the Kubernetes
//! `LabelSelector` → selector conversion lives with the Kubernetes types
//! (`model::k8s::LabelSelector::to_selector`).

use std::collections::BTreeMap;
use std::fmt;

/// Longest selector Calico's validation accepts.
const MAX_SELECTOR_LEN: usize = 1024;

/// A parsed selector. `And`/`Or` are n-ary and never nested in themselves (the parser
/// flattens), so printing and re-parsing gives the same tree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Selector {
    /// `all()`, or the empty selector.
    All,
    /// `global()`: true as an expression; as a rule's `namespaceSelector` it means
    /// "only non-namespaced entities" (handled by the policy model).
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Selector>),
    And(Vec<Selector>),
    Or(Vec<Selector>),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("selector {selector:?}, column {column}: {message}")]
pub struct SelectorError {
    pub selector: String,
    /// 1-based character column of the offending token.
    pub column: usize,
    pub message: String,
}

impl Selector {
    /// Parses Calico selector syntax; errors carry the column of the offending token.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut parser = Parser {
            text,
            chars: text.char_indices().collect(),
            pos: 0,
        };
        if text.chars().count() > MAX_SELECTOR_LEN {
            return Err(parser.error_at(
                MAX_SELECTOR_LEN,
                format!("selector longer than {MAX_SELECTOR_LEN} characters"),
            ));
        }
        parser.skip_ws();
        if parser.at_end() {
            return Ok(Selector::All);
        }
        let expr = parser.parse_or()?;
        parser.skip_ws();
        if !parser.at_end() {
            return Err(parser.error("unexpected text after the end of the expression"));
        }
        Ok(expr)
    }

    /// `a && b`, flattened, with `all()` as the identity.
    #[must_use]
    pub(crate) fn and(self, other: Selector) -> Selector {
        match (self, other) {
            (Selector::All, x) | (x, Selector::All) => x,
            (Selector::And(mut a), Selector::And(b)) => {
                a.extend(b);
                Selector::And(a)
            }
            (Selector::And(mut a), x) => {
                a.push(x);
                Selector::And(a)
            }
            (x, Selector::And(mut b)) => {
                b.insert(0, x);
                Selector::And(b)
            }
            (x, y) => Selector::And(vec![x, y]),
        }
    }

    /// Evaluates against a label map.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(&|k: &str| labels.get(k).map(String::as_str))
    }

    /// Evaluates against any label lookup.
    pub(crate) fn matches_with<'a>(&self, label: &dyn Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Selector::All | Selector::Global => true,
            Selector::Has(k) => label(k).is_some(),
            Selector::Eq(k, v) => label(k) == Some(v.as_str()),
            Selector::Ne(k, v) => label(k) != Some(v.as_str()),
            Selector::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Selector::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Selector::Contains(k, v) => label(k).is_some_and(|l| l.contains(v.as_str())),
            Selector::StartsWith(k, v) => label(k).is_some_and(|l| l.starts_with(v.as_str())),
            Selector::EndsWith(k, v) => label(k).is_some_and(|l| l.ends_with(v.as_str())),
            Selector::Not(e) => !e.matches_with(label),
            Selector::And(es) => es.iter().all(|e| e.matches_with(label)),
            Selector::Or(es) => es.iter().any(|e| e.matches_with(label)),
        }
    }

    /// Whether the expression contains `global()`.
    pub(crate) fn mentions_global(&self) -> bool {
        match self {
            Selector::Global => true,
            Selector::Not(e) => e.mentions_global(),
            Selector::And(es) | Selector::Or(es) => es.iter().any(Selector::mentions_global),
            _ => false,
        }
    }

    /// The same tree in the parser's canonical shape (flattened `&&`/`||`, single
    /// children unwrapped). `parse(print(s)) == s.normalized()`.
    #[must_use]
    pub(crate) fn normalized(&self) -> Selector {
        match self {
            Selector::Not(e) => Selector::Not(Box::new(e.normalized())),
            Selector::And(es) => flatten(es, true),
            Selector::Or(es) => flatten(es, false),
            other => other.clone(),
        }
    }
}

fn flatten(es: &[Selector], is_and: bool) -> Selector {
    let mut out = Vec::new();
    for e in es {
        match (e.normalized(), is_and) {
            (Selector::And(inner), true) | (Selector::Or(inner), false) => out.extend(inner),
            (x, _) => out.push(x),
        }
    }
    match out.len() {
        0 => Selector::All,
        1 => out.remove(0),
        _ if is_and => Selector::And(out),
        _ => Selector::Or(out),
    }
}

fn quote(v: &str) -> String {
    // No escapes exist in the language: pick the quote the value does not contain.
    if v.contains('\'') {
        format!("\"{v}\"")
    } else {
        format!("'{v}'")
    }
}

fn set(vs: &[String]) -> String {
    let items: Vec<String> = vs.iter().map(|v| quote(v)).collect();
    format!("{{{}}}", items.join(", "))
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => write!(f, "all()"),
            Selector::Global => write!(f, "global()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Selector::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Selector::In(k, vs) => write!(f, "{k} in {}", set(vs)),
            Selector::NotIn(k, vs) => write!(f, "{k} not in {}", set(vs)),
            Selector::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Selector::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Selector::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Selector::Not(e) => match **e {
                Selector::And(_) | Selector::Or(_) | Selector::Not(_) => write!(f, "!({e})"),
                _ => write!(f, "!{e}"),
            },
            Selector::And(es) => {
                let parts: Vec<String> = es
                    .iter()
                    .map(|e| match e {
                        Selector::Or(_) | Selector::And(_) => format!("({e})"),
                        _ => e.to_string(),
                    })
                    .collect();
                write!(f, "{}", parts.join(" && "))
            }
            Selector::Or(es) => {
                let parts: Vec<String> = es
                    .iter()
                    .map(|e| match e {
                        Selector::Or(_) => format!("({e})"),
                        _ => e.to_string(),
                    })
                    .collect();
                write!(f, "{}", parts.join(" || "))
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> SelectorError {
        SelectorError {
            selector: self.text.to_owned(),
            column: pos + 1,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> SelectorError {
        self.error_at(self.pos, message)
    }

    fn rest_starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.chars.get(self.pos + i).map(|&(_, x)| x) == Some(c))
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest_starts_with(s) {
            self.pos += s.chars().count();
            true
        } else {
            false
        }
    }

    /// Eats a keyword only when it is not the start of a longer word.
    fn eat_word(&mut self, w: &str) -> bool {
        if !self.rest_starts_with(w) {
            return false;
        }
        let after = self
            .chars
            .get(self.pos + w.chars().count())
            .map(|&(_, c)| c);
        if after.is_some_and(is_key_char) {
            return false;
        }
        self.pos += w.chars().count();
        true
    }

    fn parse_or(&mut self) -> Result<Selector, SelectorError> {
        let mut terms = vec![self.parse_and()?];
        loop {
            self.skip_ws();
            if self.eat("||") {
                terms.push(self.parse_and()?);
            } else {
                break;
            }
        }
        Ok(flatten(&terms, false))
    }

    fn parse_and(&mut self) -> Result<Selector, SelectorError> {
        let mut terms = vec![self.parse_unary()?];
        loop {
            self.skip_ws();
            if self.eat("&&") {
                terms.push(self.parse_unary()?);
            } else {
                break;
            }
        }
        Ok(flatten(&terms, true))
    }

    fn parse_unary(&mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        if self.peek() == Some('!') && !self.rest_starts_with("!=") {
            self.pos += 1;
            let inner = self.parse_unary()?;
            return Ok(Selector::Not(Box::new(inner)));
        }
        self.parse_term()
    }

    fn parse_term(&mut self) -> Result<Selector, SelectorError> {
        self.skip_ws();
        match self.peek() {
            None => return Err(self.error("expected an expression, found the end of the selector")),
            Some('(') => {
                self.pos += 1;
                let inner = self.parse_or()?;
                self.skip_ws();
                if !self.eat(")") {
                    return Err(self.error("expected ')'"));
                }
                return Ok(inner);
            }
            _ => {}
        }
        let start = self.pos;
        if self.eat_word("all") {
            self.skip_ws();
            if self.eat("(") {
                self.skip_ws();
                if self.eat(")") {
                    return Ok(Selector::All);
                }
                return Err(self.error("expected ')' after 'all('"));
            }
            self.pos = start;
        }
        if self.eat_word("global") {
            self.skip_ws();
            if self.eat("(") {
                self.skip_ws();
                if self.eat(")") {
                    return Ok(Selector::Global);
                }
                return Err(self.error("expected ')' after 'global('"));
            }
            self.pos = start;
        }
        if self.eat_word("has") {
            self.skip_ws();
            if self.eat("(") {
                self.skip_ws();
                let key = self.parse_key()?;
                self.skip_ws();
                if !self.eat(")") {
                    return Err(self.error("expected ')' after the label key in has(…)"));
                }
                return Ok(Selector::Has(key));
            }
            self.pos = start;
        }
        let key = self.parse_key()?;
        self.skip_ws();
        let op_pos = self.pos;
        if self.eat("==") {
            return Ok(Selector::Eq(key, self.parse_string()?));
        }
        if self.eat("!=") {
            return Ok(Selector::Ne(key, self.parse_string()?));
        }
        if self.eat_word("in") {
            return Ok(Selector::In(key, self.parse_set()?));
        }
        if self.eat_word("not") {
            self.skip_ws();
            if self.eat_word("in") {
                return Ok(Selector::NotIn(key, self.parse_set()?));
            }
            return Err(self.error("expected 'in' after 'not'"));
        }
        if self.eat_word("contains") {
            return Ok(Selector::Contains(key, self.parse_string()?));
        }
        if self.eat_word("starts") {
            self.skip_ws();
            if self.eat_word("with") {
                return Ok(Selector::StartsWith(key, self.parse_string()?));
            }
            return Err(self.error("expected 'with' after 'starts'"));
        }
        if self.eat_word("ends") {
            self.skip_ws();
            if self.eat_word("with") {
                return Ok(Selector::EndsWith(key, self.parse_string()?));
            }
            return Err(self.error("expected 'with' after 'ends'"));
        }
        Err(self.error_at(
            op_pos,
            format!(
                "expected an operator after label {key:?} (==, !=, in, not in, contains, starts with, ends with)"
            ),
        ))
    }

    fn parse_key(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(is_key_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.peek() {
                Some(c) => self.error(format!("expected a label key, found {c:?}")),
                None => self.error("expected a label key, found the end of the selector"),
            });
        }
        let key: String = self.chars[start..self.pos]
            .iter()
            .map(|&(_, c)| c)
            .collect();
        if key.len() > 512 {
            return Err(self.error_at(start, "label key longer than 512 characters"));
        }
        Ok(key)
    }

    fn parse_string(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            Some(c) => return Err(self.error(format!("expected a quoted string, found {c:?}"))),
            None => {
                return Err(self.error("expected a quoted string, found the end of the selector"));
            }
        };
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error_at(start, "unterminated string")),
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some(c) => {
                    value.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn parse_set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.skip_ws();
        if !self.eat("{") {
            return Err(self.error("expected '{' to start a set of strings"));
        }
        let mut values = Vec::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.parse_string()?);
            self.skip_ws();
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or '}' in a set of strings"));
            }
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_and_evaluates_operators() {
        let l = labels(&[("app", "web"), ("tier", "frontend-1")]);
        let cases = [
            ("", true),
            ("all()", true),
            ("app == 'web'", true),
            ("app != 'web'", false),
            ("missing != 'x'", true),
            ("missing == 'x'", false),
            ("app in {'a', 'web'}", true),
            ("app not in {'a'}", true),
            ("missing not in {'a'}", true),
            ("missing in {}", false),
            ("tier contains 'end'", true),
            ("tier starts with 'front'", true),
            ("tier ends with '-1'", true),
            ("has(app) && !has(db)", true),
            ("!has(app) || app == \"web\"", true),
            ("!(app == 'web' && has(tier))", false),
            ("app == 'x' || app == 'y' && has(tier)", false),
            ("global()", true),
        ];
        for (text, want) in cases {
            let sel = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(sel.matches(&l), want, "{text}");
        }
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        let sel = Selector::parse("a == '1' || b == '2' && c == '3'").unwrap();
        assert!(matches!(sel, Selector::Or(ref v) if v.len() == 2));
    }

    #[test]
    fn errors_point_at_the_column() {
        let err = Selector::parse("app == 'web' && tier = 'x'").unwrap_err();
        assert_eq!(err.column, 22, "{err}");
        let err = Selector::parse("app == web").unwrap_err();
        assert_eq!(err.column, 8, "{err}");
        let err = Selector::parse("has(app").unwrap_err();
        assert_eq!(err.column, 8, "{err}");
        let err = Selector::parse("app == 'x' )").unwrap_err();
        assert_eq!(err.column, 12, "{err}");
        let err = Selector::parse("app == 'x").unwrap_err();
        assert_eq!(err.column, 8, "{err}");
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("app".to_owned()),
            Just("a.b/c-d_e".to_owned()),
            "[a-z][a-z0-9./_-]{0,6}"
        ]
    }

    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9 '-]{0,5}", "[a-z0-9 \"-]{0,5}"]
    }

    fn arb_selector() -> impl Strategy<Value = Selector> {
        let leaf = prop_oneof![
            Just(Selector::All),
            Just(Selector::Global),
            arb_key().prop_map(Selector::Has),
            (arb_key(), arb_value()).prop_map(|(k, v)| Selector::Eq(k, v)),
            (arb_key(), arb_value()).prop_map(|(k, v)| Selector::Ne(k, v)),
            (arb_key(), prop::collection::vec(arb_value(), 0..3))
                .prop_map(|(k, v)| Selector::In(k, v)),
            (arb_key(), prop::collection::vec(arb_value(), 0..3))
                .prop_map(|(k, v)| Selector::NotIn(k, v)),
            (arb_key(), arb_value()).prop_map(|(k, v)| Selector::Contains(k, v)),
            (arb_key(), arb_value()).prop_map(|(k, v)| Selector::StartsWith(k, v)),
            (arb_key(), arb_value()).prop_map(|(k, v)| Selector::EndsWith(k, v)),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Selector::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Selector::And),
                prop::collection::vec(inner, 2..4).prop_map(Selector::Or),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(text in "\\PC{0,40}") {
            let _ = Selector::parse(&text);
        }

        #[test]
        fn parser_never_panics_on_selector_like_text(text in "[a-z()!&|='\" {},.-]{0,40}") {
            if let Err(e) = Selector::parse(&text) {
                prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1);
            }
        }

        #[test]
        fn printed_ast_round_trips(sel in arb_selector()) {
            let printed = sel.to_string();
            let parsed = Selector::parse(&printed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed, sel.normalized(), "printed: {}", printed);
        }
    }
}

//! Property tests ("fuzzing" with proptest) of the selector parser and the YAML loader:
//! no input makes them panic, and every rejection says where (a selector error's
//! column lies inside the text; a loader error names the file and a line). Mutations of
//! the seed and tutorial YAML (deleted, duplicated and re-indented lines, truncation,
//! replaced characters) also go through the whole `check` pipeline, which must not
//! panic either. The selector parser's own unit tests cover arbitrary text and
//! printed-AST round trips; these add near-valid selectors.
//!
//! Case counts: `PROPTEST_CASES` overrides the defaults below.

use std::path::Path;

use proptest::prelude::*;

use enforcer::model::{LoadError, load_str};
use enforcer::selector::Selector;

const SEEDS: &[&str] = &[
    include_str!("fixtures/seed000_tutorial.yaml"),
    include_str!("fixtures/seed001_broken_gnp.yaml"),
    include_str!("fixtures/seed002_nodeports.yaml"),
    include_str!("fixtures/seed002_insert_ip_here.yaml"),
    include_str!("fixtures/check/invalid-rules.yaml"),
    include_str!("fixtures/check/shadowed.yaml"),
    include_str!("../../tests/fixtures/tutorial/globalnetworkpolicy-allow-monitoring.yaml"),
    include_str!("../../tests/fixtures/tutorial/networkpolicy-allow-dns-egress.yaml"),
];

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loader error must name the file and, except for unreadable files, a line.
fn assert_positioned(err: &LoadError) -> Result<(), TestCaseError> {
    let text = err.to_string();
    prop_assert!(text.starts_with("fuzz.yaml:"), "no file: {text}");
    match err {
        LoadError::Read { .. } => {}
        LoadError::Syntax { position, .. } => {
            prop_assert!(position.line > 0, "syntax error without a line: {text}");
        }
        LoadError::Object(e) => {
            prop_assert!(e.position.line > 0, "object error without a line: {text}");
        }
    }
    Ok(())
}

/// Load, and when that works, build the model and run every check: none may panic.
fn load_and_check(text: &str) -> Result<(), TestCaseError> {
    match load_str(Path::new("fuzz.yaml"), text) {
        Err(e) => assert_positioned(&e),
        Ok(loaded) => {
            let mut report = enforcer::check::Report::default();
            enforcer::check::check_loaded(&loaded, &mut report);
            if let Ok(done) = enforcer::offline::complete(&loaded) {
                let _ = done.cluster();
            }
            Ok(())
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    Indent(usize),
    Dedent(usize),
    Truncate(usize),
    Replace(usize, char),
    SwapLines(usize, usize),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::Indent),
        any::<usize>().prop_map(Mutation::Dedent),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop::sample::select(vec![
                ':', '-', ' ', '\t', '{', '[', '\'', '"', '#', '&', '*', '!', '|', '>', '\n', 'x',
                '0'
            ])
        )
            .prop_map(|(i, c)| Mutation::Replace(i, c)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for m in mutations {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Indent(i) => lines[i % n].insert_str(0, "  "),
            Mutation::Dedent(i) => {
                let l = &mut lines[i % n];
                let cut = l.len() - l.trim_start().len();
                l.drain(..cut.min(2));
            }
            Mutation::Truncate(i) => {
                let joined = lines.join("\n");
                let mut at = i % (joined.len() + 1);
                while !joined.is_char_boundary(at) {
                    at -= 1;
                }
                lines = joined[..at].lines().map(str::to_owned).collect();
            }
            Mutation::Replace(i, c) => {
                let l = &mut lines[i % n];
                let chars: Vec<char> = l.chars().collect();
                if !chars.is_empty() {
                    let at = i % chars.len();
                    *l = chars[..at]
                        .iter()
                        .chain(std::iter::once(c))
                        .chain(&chars[at + 1..])
                        .collect();
                }
            }
            Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        }
    }
    lines.join("\n")
}

/// Valid selectors, as people write them.
fn arb_valid_selector() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "app",
        "k8s-app",
        "tier",
        "kubernetes.io/metadata.name",
        "a.b/c_d",
    ]);
    let value = prop::sample::select(vec!["web", "kube-dns", "", "x y", "db-1"]);
    let term = (key, value, 0..8u8).prop_map(|(k, v, op)| match op {
        0 => format!("{k} == '{v}'"),
        1 => format!("{k} != \"{v}\""),
        2 => format!("has({k})"),
        3 => format!("!has({k})"),
        4 => format!("{k} in {{'{v}', 'other'}}"),
        5 => format!("{k} not in {{'{v}'}}"),
        6 => format!("{k} starts with '{v}'"),
        _ => "all()".to_owned(),
    });
    prop::collection::vec((term, prop::bool::ANY), 1..5).prop_map(|terms| {
        let mut out = String::new();
        for (i, (t, or)) in terms.iter().enumerate() {
            if i > 0 {
                out.push_str(if *or { " || " } else { " && " });
            }
            if i % 2 == 1 {
                out.push('(');
                out.push_str(t);
                out.push(')');
            } else {
                out.push_str(t);
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Near-valid selectors: a valid one with a character deleted, replaced or
    /// inserted, or cut short. No panic; an error's column is inside the text.
    #[test]
    fn selector_mutations_never_panic(
        sel in arb_valid_selector(),
        at in any::<usize>(),
        what in 0..4u8,
        c in prop::sample::select(vec!['(', ')', '\'', '"', '=', '!', '&', '|', '{', '}', ',', ' ', 'é', '\u{0}']),
    ) {
        prop_assert!(Selector::parse(&sel).is_ok(), "generator made an invalid selector: {sel}");
        let chars: Vec<char> = sel.chars().collect();
        let i = at % (chars.len() + 1);
        let mutated: String = match what {
            0 => chars.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| *c).collect(),
            1 => chars[..i].iter().chain(std::iter::once(&c)).chain(&chars[i..]).collect(),
            2 => chars[..i].iter().collect(),
            _ => chars.iter().enumerate().map(|(j, x)| if j == i { c } else { *x }).collect(),
        };
        if let Err(e) = Selector::parse(&mutated) {
            let len = mutated.chars().count();
            prop_assert!(e.column >= 1 && e.column <= len + 1, "column {} outside {:?}", e.column, mutated);
            prop_assert!(!e.message.is_empty());
        }
    }

    /// Selectors printed back parse to the same selector.
    #[test]
    fn valid_selectors_round_trip(sel in arb_valid_selector()) {
        let parsed = Selector::parse(&sel).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Selector::parse(&parsed.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, parsed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1000), failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes (as text) into the loader.
    #[test]
    fn loader_never_panics_on_arbitrary_text(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = load_str(Path::new("fuzz.yaml"), &text) {
            assert_positioned(&e)?;
        }
    }

    /// YAML-ish text: the characters YAML gives meaning to, in short lines.
    #[test]
    fn loader_never_panics_on_yamlish_text(text in "([a-zA-Z:{}\\[\\],'\"#&*!|>%@`-]{0,12}( {0,4})\n?){0,30}") {
        if let Err(e) = load_str(Path::new("fuzz.yaml"), &text) {
            assert_positioned(&e)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(600), failure_persistence: None, ..ProptestConfig::default() })]

    /// The seed and tutorial YAML with lines deleted, duplicated, swapped and
    /// re-indented, cut short, characters replaced: through the loader and `check`.
    #[test]
    fn seed_mutations_load_or_fail_with_a_position(
        seed in prop::sample::select(SEEDS.to_vec()),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        load_and_check(&mutate(seed, &mutations))?;
    }
}

/// Seed 001 as pasted: a clear, positioned error, never an empty policy.
#[test]
fn seed_001_is_an_error_not_an_empty_policy() {
    let err = load_str(Path::new("fuzz.yaml"), SEEDS[1]).map(|l| l.len());
    assert!(
        matches!(&err, Err(LoadError::Syntax { position, .. }) if position.line == 2),
        "{err:?}"
    );
}

//! Load findings: unreadable files, YAML syntax, unknown kinds and fields, bad values.
//! Each file is loaded on its own, so one broken file does not hide the others.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::{Finding, Report, Severity};
use crate::model::load::{STDIN, stdin_text};
use crate::model::{LoadError, Loaded, ObjectProblem, load_manifest, suggest};

pub(super) fn load_all(
    paths: &[PathBuf],
    report: &mut Report,
    texts: &mut HashMap<PathBuf, String>,
) -> Vec<Loaded> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == STDIN {
            files.push(path.clone());
        } else if let Err(e) = crate::model::load::collect_files(path, &mut files) {
            report.findings.push(finding(&e, None));
        }
    }
    report.files = files.len();
    let mut loaded = Vec::new();
    for file in files {
        let read = if file.as_os_str() == STDIN {
            stdin_text().map(|t| (PathBuf::from("<stdin>"), t.to_owned()))
        } else {
            std::fs::read_to_string(&file)
                .map(|t| (file.clone(), t))
                .map_err(|source| LoadError::Read { path: file, source })
        };
        let (file, text) = match read {
            Ok(read) => read,
            Err(e) => {
                report.findings.push(finding(&e, None));
                continue;
            }
        };
        match load_manifest(&file, &text) {
            Ok((objects, skipped)) => {
                loaded.extend(objects);
                for s in skipped {
                    report.findings.push(Finding {
                        file: Some(s.path.clone()),
                        line: (s.line > 0).then_some(s.line),
                        object: Some(format!("{} {}", s.kind, s.name)),
                        ..Finding::note(
                            "unused-kind",
                            format!("skipped: the enforcer does not use {} objects", s.kind),
                        )
                    });
                }
            }
            Err(e) => report.findings.push(finding(&e, Some(&text))),
        }
        texts.insert(file, text);
    }
    loaded
}

fn finding(e: &LoadError, text: Option<&str>) -> Finding {
    match e {
        LoadError::Read { path, source } => Finding {
            file: Some(path.clone()),
            severity: Severity::Error,
            ..Finding::note("unreadable", format!("cannot read: {source}"))
        },
        LoadError::Syntax {
            path,
            position,
            message,
        } => Finding {
            severity: Severity::Error,
            file: Some(path.clone()),
            line: (position.line > 0).then_some(position.line),
            column: (position.column > 0).then_some(position.column),
            fix: text.map(syntax_fix),
            ..Finding::note(
                "yaml-syntax",
                format!(
                    "YAML syntax error: {}",
                    message.strip_prefix("error: ").unwrap_or(message)
                ),
            )
        },
        LoadError::Object(o) => {
            let (code, fix) = match &o.problem {
                ObjectProblem::UnknownKind { .. } => ("unknown-kind", None),
                ObjectProblem::UnknownField { field } => (
                    "unknown-field",
                    Some(match suggest::unknown_field_suggestion(&unknown_message(o)) {
                        Some((_, best)) => format!("rename `{field}` to `{best}`"),
                        None => format!(
                            "remove `{field}`; the fields this object takes are listed above"
                        ),
                    }),
                ),
                ObjectProblem::MissingField { field } => {
                    ("missing-field", Some(format!("add `{field}`")))
                }
                ObjectProblem::InvalidValue => ("invalid-value", None),
                ObjectProblem::InvalidCidr { value } => {
                    ("invalid-cidr", Some(cidr_fix(value, o.field.as_deref())))
                }
                ObjectProblem::InvalidSelector { .. } => (
                    "invalid-selector",
                    Some("Calico selectors: key == 'value', key != 'value', has(key), key in {'a', 'b'}, !, &&, ||, ( ), all()".to_owned()),
                ),
                ObjectProblem::NotAnObject => ("not-an-object", None),
            };
            Finding {
                severity: Severity::Error,
                file: Some(o.path.clone()),
                line: (o.position.line > 0).then_some(o.position.line),
                column: (o.position.column > 0).then_some(o.position.column),
                object: Some(o.object.clone()),
                field: o.field.clone(),
                fix,
                ..Finding::note(code, o.message.clone())
            }
        }
    }
}

/// The loader's message with serde's original shape, for the suggestion.
fn unknown_message(o: &crate::model::ObjectError) -> String {
    // "unknown field `x`: did you mean `y`? (expected …)" or serde's own text.
    match o.message.split_once(": did you mean ") {
        Some((head, rest)) => {
            let expected = rest.split_once("? (").map_or("", |(_, e)| e);
            format!("{head}, {}", expected.trim_end_matches(')'))
        }
        None => o.message.clone(),
    }
}

fn cidr_fix(value: &str, field: Option<&str>) -> String {
    let placeholder = value.chars().any(|c| c.is_ascii_uppercase())
        && value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
    let what = if field.is_some_and(|f| f.contains("expectedIPs")) {
        "the address of the host interface this HostEndpoint stands for (spec.interfaceName on spec.node), e.g. 192.0.2.10"
    } else {
        "an address or CIDR, e.g. 10.0.0.0/8 or fd00::/64"
    };
    if placeholder {
        format!("{value} is a placeholder from the documentation: replace it with {what}")
    } else {
        format!("write {what}")
    }
}

/// A fix for a syntax error. For a Calico or Kubernetes policy pasted without its
/// indentation (as seed 001 is: `kind:` then `name:`, `order:`, `- Ingress`, `- action:`
/// lines), the structure it most likely had.
fn syntax_fix(text: &str) -> String {
    if let Some(rebuilt) = rebuild_flattened_policy(text) {
        return format!(
            "the indentation (and the metadata:/spec:/types:/ingress:/egress: keys) seem to have been lost in copying; this is probably what was meant:\n{rebuilt}"
        );
    }
    "every field must be indented under its parent (spaces, not tabs); a `key: value` cannot follow a list item or scalar at the same level".to_owned()
}

const METADATA_KEYS: &[&str] = &["name", "namespace", "labels", "annotations"];
const SPEC_SCALARS: &[&str] = &[
    "order",
    "tier",
    "selector",
    "namespaceSelector",
    "serviceAccountSelector",
    "preDNAT",
    "applyOnForward",
    "doNotTrack",
];

fn rebuild_flattened_policy(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim_end())
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let kind = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("kind:"))
        .map(str::trim)?;
    if !matches!(kind, "GlobalNetworkPolicy" | "NetworkPolicy") {
        return None;
    }
    let mut api = "projectcalico.org/v3".to_owned();
    let mut metadata = Vec::new();
    let mut spec = Vec::new();
    let mut types = Vec::new();
    let mut rules = Vec::new();
    for line in &lines {
        let l = line.trim();
        if let Some(item) = l.strip_prefix("- ") {
            let item = item.trim();
            if matches!(item, "Ingress" | "Egress") {
                types.push(item.to_owned());
            } else if item.starts_with("action:") {
                rules.push(item.to_owned());
            } else {
                return None;
            }
            continue;
        }
        let (key, value) = l.split_once(':')?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "kind" => {}
            "apiVersion" => value.clone_into(&mut api),
            k if METADATA_KEYS.contains(&k) => metadata.push(format!("{k}: {value}")),
            k if SPEC_SCALARS.contains(&k) => spec.push(format!("{k}: {value}")),
            _ => return None,
        }
    }
    if metadata.is_empty() {
        return None;
    }
    let mut out = format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n");
    for m in &metadata {
        let _ = writeln!(out, "  {m}");
    }
    out.push_str("spec:\n");
    for s in &spec {
        let _ = writeln!(out, "  {s}");
    }
    if !types.is_empty() {
        out.push_str("  types:\n");
        for t in &types {
            let _ = writeln!(out, "  - {t}");
        }
    }
    // Rules follow the types' order: with `- Ingress - Egress` and two rules, the
    // first is the ingress rule.
    let directions: Vec<&str> = if types.is_empty() {
        vec!["Ingress"; rules.len()]
    } else {
        types.iter().map(String::as_str).collect()
    };
    if rules.len() == directions.len() {
        for (dir, rule) in directions.iter().zip(&rules) {
            let _ = writeln!(out, "  {}:\n  - {rule}", dir.to_ascii_lowercase());
        }
    } else if !rules.is_empty() {
        out.push_str("  ingress:\n");
        for r in &rules {
            let _ = writeln!(out, "  - {r}");
        }
    }
    Some(out.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load_str;

    #[test]
    fn rebuilds_seed_001() {
        let text = include_str!("../../tests/fixtures/seed001_broken_gnp.yaml");
        let rebuilt = rebuild_flattened_policy(text).unwrap_or_default();
        assert_eq!(
            rebuilt,
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: default-deny\nspec:\n  order: 500\n  selector: all()\n  types:\n  - Ingress\n  - Egress\n  ingress:\n  - action: Deny\n  egress:\n  - action: Deny"
        );
        // And what it rebuilds loads.
        assert!(load_str(std::path::Path::new("r.yaml"), &rebuilt).is_ok());
    }
}

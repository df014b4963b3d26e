//! `enforcer check`: validation and lints over policy files, without a cluster.
//!
//! Every finding names the file, line, object and field, says what is wrong and how to
//! fix it. Families, one module each:
//!
//! - [`load`]: YAML syntax, unknown kinds and fields ("did you mean"), bad values;
//! - [`validate`]: what Calico's (or the API server's) validation rejects;
//! - [`peers`]: what the policy model accepted with a warning, such as Kubernetes-style
//!   `podSelector`/`namespaceSelector: {matchLabels}` inside a Calico rule;
//! - [`selectors`]: selectors that match no endpoint (with the labels that exist);
//! - [`egress`]: ingress allows whose peers' egress is still denied by another policy;
//! - [`isolation`]: policies that newly isolate endpoints they probably did not mean to;
//! - [`shadow`]: rules that can never match because an earlier rule always decides.
//!
//! The cluster is completed as `enforcer lab up` completes it ([`crate::offline`]):
//! Deployments become pods, the cluster DNS is assumed when absent.

mod egress;
mod flows;
mod isolation;
mod load;
mod peers;
mod selectors;
mod shadow;
mod validate;

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::{Loaded, ObjectId, Source};
use crate::offline::{self, Completed};
use crate::policy::{Cluster, Policy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable kebab-case name of the check, e.g. `egress-still-denied`.
    pub code: &'static str,
    pub file: Option<PathBuf>,
    /// 1-based.
    pub line: Option<u32>,
    /// 1-based.
    pub column: Option<u32>,
    /// `Kind namespace/name`.
    pub object: Option<String>,
    /// Field path inside the object, e.g. `spec.ingress[0].from[0]`.
    pub field: Option<String>,
    pub message: String,
    pub fix: Option<String>,
    /// (document, object line) to resolve `field` to a line later.
    #[serde(skip)]
    anchor: Option<(usize, u32)>,
}

impl Finding {
    /// A finding not tied to a file.
    pub fn note(code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Info,
            code,
            file: None,
            line: None,
            column: None,
            object: None,
            field: None,
            message: message.into(),
            fix: None,
            anchor: None,
        }
    }

    /// A finding about a field of an object read from `source`.
    pub fn about(
        severity: Severity,
        code: &'static str,
        source: Option<&Source>,
        object: &ObjectId,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        let field: String = field.into();
        let source = source.filter(|s| s.file != Path::new(offline::IMPLIED_FILE));
        Finding {
            severity,
            code,
            file: source.map(|s| s.file.clone()),
            line: source.map(|s| s.line).filter(|l| *l > 0),
            column: None,
            object: Some(object_label(object)),
            field: (!field.is_empty()).then_some(field),
            message: message.into(),
            fix,
            anchor: source.map(|s| (s.document, s.line)),
        }
    }

    /// A finding about a policy's field.
    pub fn policy(
        severity: Severity,
        code: &'static str,
        policy: &Policy,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Finding {
        Finding::about(
            severity,
            code,
            policy.source.as_ref(),
            &policy.id,
            field,
            message,
            fix,
        )
    }

    /// `file:line:col: severity[code]: message` plus `object`, `fix` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(file) = &self.file {
            let _ = write!(out, "{}", file.display());
            if let Some(line) = self.line {
                let _ = write!(out, ":{line}");
                if let Some(col) = self.column {
                    let _ = write!(out, ":{col}");
                }
            }
            out.push_str(": ");
        }
        let _ = writeln!(out, "{}[{}]: {}", self.severity, self.code, self.message);
        match (&self.object, &self.field) {
            (Some(o), Some(f)) => {
                let _ = writeln!(out, "  in: {o}, {f}");
            }
            (Some(o), None) => {
                let _ = writeln!(out, "  in: {o}");
            }
            _ => {}
        }
        if let Some(fix) = &self.fix {
            let mut lines = fix.lines();
            let _ = writeln!(out, "  fix: {}", lines.next().unwrap_or_default());
            for l in lines {
                let _ = writeln!(out, "       {l}");
            }
        }
        out
    }
}

/// `NetworkPolicy dev-app/default-deny`: Calico's own kind names, both API groups'
/// `NetworkPolicy` told apart.
pub fn object_label(id: &ObjectId) -> String {
    let kind = match id.kind.as_str() {
        "projectcalico.org/NetworkPolicy" => "NetworkPolicy (projectcalico.org)",
        k => k,
    };
    if id.namespace.is_empty() {
        format!("{kind} {}", id.name)
    } else {
        format!("{kind} {}/{}", id.namespace, id.name)
    }
}

/// All findings of one run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub files: usize,
    pub objects: usize,
}

impl Report {
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }

    /// Compiler-style text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.render());
        }
        let plural = |n: usize, what: &str| {
            if n == 1 {
                format!("{n} {what}")
            } else {
                format!("{n} {what}s")
            }
        };
        let _ = writeln!(
            out,
            "check: {}, {}, {} ({}, {})",
            plural(self.count(Severity::Error), "error"),
            plural(self.count(Severity::Warning), "warning"),
            plural(self.count(Severity::Info), "note"),
            plural(self.files, "file"),
            plural(self.objects, "object"),
        );
        out
    }
}

/// What the lints look at.
pub(crate) struct Context<'a> {
    pub cluster: &'a Cluster,
    pub completed: &'a Completed,
    /// Declared objects by identity.
    pub declared: HashMap<ObjectId, &'a Loaded>,
}

/// Checks files and directories (as `-f` takes them).
pub fn check_paths(paths: &[PathBuf]) -> Report {
    let mut report = Report::default();
    let mut texts: HashMap<PathBuf, String> = HashMap::new();
    let loaded = load::load_all(paths, &mut report, &mut texts);
    report.objects = loaded.len();
    check_loaded(&loaded, &mut report);
    // Resolve field paths to lines.
    for f in &mut report.findings {
        let (Some(file), Some((document, object_line)), Some(field)) =
            (&f.file, f.anchor, &f.field)
        else {
            continue;
        };
        if f.column.is_some() {
            continue;
        }
        if let Some(text) = texts.get(file)
            && let Some(pos) =
                crate::model::locate::field_position(text, document, object_line, field)
            && pos.line > 0
        {
            f.line = Some(pos.line);
            f.column = (pos.column > 0).then_some(pos.column);
        }
    }
    sort(&mut report.findings);
    report
}

fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        (
            a.file.is_some(),
            &a.file,
            a.line,
            a.column,
            a.severity,
            a.code,
            &a.message,
        )
            .cmp(&(
                b.file.is_some(),
                &b.file,
                b.line,
                b.column,
                b.severity,
                b.code,
                &b.message,
            ))
    });
}

/// Validation and lints over already loaded objects.
pub fn check_loaded(loaded: &[Loaded], report: &mut Report) {
    let completed = match offline::complete(loaded) {
        Ok(c) => c,
        Err(e) => {
            report.findings.push(Finding {
                severity: Severity::Error,
                ..Finding::note("invalid-object", e.to_string())
            });
            return;
        }
    };
    if loaded.is_empty() {
        return;
    }
    if completed.declares_workloads {
        for note in completed.implied_notes() {
            report.findings.push(Finding::note("assumed", note));
        }
    }
    // Validation: every object's errors, then a cluster of the valid ones to lint.
    let (cluster, warnings) = validate::validate(&completed, report);
    report.findings.extend(peers::findings(&warnings));
    validate::ignored_rules(&cluster, &mut report.findings);
    let declared = loaded
        .iter()
        .map(|l| (crate::cluster::objects::normalize(l.object.clone()).id(), l))
        .collect();
    let cx = Context {
        cluster: &cluster,
        completed: &completed,
        declared,
    };
    shadow::lint(&cx, &mut report.findings);
    if !completed.declares_workloads {
        report.findings.push(Finding::note(
            "no-workloads",
            "the input declares no Pod or Deployment: lints that need endpoints (selectors that match nothing, egress still denied, new isolation) were skipped",
        ));
        return;
    }
    selectors::lint(&cx, &mut report.findings);
    egress::lint(&cx, &mut report.findings);
    isolation::lint(&cx, &mut report.findings);
}

//! `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy` cases as data, run in a lab:
//! the fixtures of `tests/fixtures/admin-conformance/` (the network-policy-api
//! conformance suite, transcribed) and `tests/fixtures/admin-lab/` (our own), one
//! YAML file per case in the same shape:
//!
//! ```yaml
//! test: AdminNetworkPolicyIngressTCP     # upstream's ShortName, or ours
//! not_applicable: why                    # optional: the whole case cannot run here
//! policies: |                            # the documents the case starts with
//!   apiVersion: policy.networking.k8s.io/v1alpha1
//!   ...
//! steps:                                 # upstream's subtests, in order
//! - name: "Should support ..."
//!   change:                              # edits of the live objects, kept for later steps
//!   - ingress-tcp: swap ingress 0 1
//!   probes:                              # CLIENT -> SERVER PORT/PROTO allow|deny
//!   - luna-lovegood-0 -> harry-potter-0 80/TCP allow
//!   not_applicable:                      # probes that cannot run, each with why
//!   - {probe: ..., reason: ...}
//! ```
//!
//! Changes (`NAME: OP ARGS`, `NAME` an object's `metadata.name`): `swap GRESS I J`
//! (exchange two rules), `set-action GRESS I ACTION`, `priority N`, `named-port GRESS I
//! PORTNAME` (the rule's ports become that one named port), `prepend-networks GRESS
//! RULENAME ACTION POD...` (a rule whose peers are the pods' IPv4 addresses as /32, put
//! first), `delete` (the object goes).

use std::collections::BTreeMap;

use enforcer::connectivity::{ProbeResult, Protocol};
use serde::Deserialize;
use serde_json::{Value, json};

/// A case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub test: String,
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub manifest: Option<String>,
    /// Set when the whole case cannot run in the lab: why.
    #[serde(default)]
    pub not_applicable: Option<String>,
    pub policies: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub change: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    pub probes: Vec<String>,
    #[serde(default)]
    pub not_applicable: Vec<NotApplicable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotApplicable {
    pub probe: String,
    pub reason: String,
}

/// One expectation: a connection from pod `from` to pod `to` on `port`/`protocol`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub allowed: bool,
}

/// `CLIENT -> SERVER PORT/PROTO allow|deny`.
pub fn parse_probe(line: &str) -> Result<Probe, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [from, "->", to, port_proto, verdict] = words.as_slice() else {
        return Err(format!(
            "probe {line:?}: want `CLIENT -> SERVER PORT/PROTO allow|deny`"
        ));
    };
    let (port, proto) = port_proto
        .split_once('/')
        .ok_or_else(|| format!("probe {line:?}: want PORT/PROTO"))?;
    let port = port
        .parse()
        .map_err(|e| format!("probe {line:?}: port: {e}"))?;
    let protocol =
        Protocol::parse(proto).ok_or_else(|| format!("probe {line:?}: protocol {proto}"))?;
    let allowed = match *verdict {
        "allow" => true,
        "deny" => false,
        other => return Err(format!("probe {line:?}: verdict {other}")),
    };
    Ok(Probe {
        from: (*from).to_owned(),
        to: (*to).to_owned(),
        port,
        protocol,
        allowed,
    })
}

/// Every `*.yaml` case of a fixture directory (sorted by file name), with its file
/// name; `base.yaml` (the pods) is not a case.
pub fn load_dir(dir: &std::path::Path) -> Vec<(String, Case)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "base.yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            let case: Case =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, case)
        })
        .collect()
}

/// The documents of `policies`.
pub fn documents(policies: &str) -> Result<Vec<Value>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(policies).map_err(|e| e.to_string())?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

pub fn doc_name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// Documents as one multi-document YAML (JSON is YAML).
pub fn to_yaml(docs: &[&Value]) -> String {
    docs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// What a change did to the set of documents.
#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    /// The document at this index was edited (to re-apply).
    Edited(usize),
    /// The document was removed (to delete).
    Deleted(Value),
}

fn rule<'a>(doc: &'a mut Value, gress: &str, i: &str) -> Result<&'a mut Value, String> {
    let i: usize = i.parse().map_err(|e| format!("rule index {i}: {e}"))?;
    doc["spec"][gress]
        .get_mut(i)
        .ok_or_else(|| format!("no {gress} rule {i}"))
}

/// Applies one change, `NAME: OP ARGS`, to `docs`; `ipv4` gives pods' addresses.
pub fn apply_change(
    docs: &mut Vec<Value>,
    name: &str,
    op: &str,
    ipv4: &BTreeMap<String, String>,
) -> Result<Changed, String> {
    let at = docs
        .iter()
        .position(|d| doc_name(d) == name)
        .ok_or_else(|| format!("change {name}: no such object"))?;
    let words: Vec<&str> = op.split_whitespace().collect();
    let bad = || format!("change {name}: cannot read {op:?}");
    let doc = &mut docs[at];
    match words.as_slice() {
        ["delete"] => return Ok(Changed::Deleted(docs.remove(at))),
        ["swap", gress, i, j] => {
            let (i, j): (usize, usize) =
                (i.parse().map_err(|_| bad())?, j.parse().map_err(|_| bad())?);
            let rules = doc["spec"][*gress].as_array_mut().ok_or_else(bad)?;
            if i.max(j) >= rules.len() {
                return Err(bad());
            }
            rules.swap(i, j);
        }
        ["set-action", gress, i, action] => rule(doc, gress, i)?["action"] = json!(action),
        ["priority", n] => doc["spec"]["priority"] = json!(n.parse::<i64>().map_err(|_| bad())?),
        ["named-port", gress, i, port] => {
            rule(doc, gress, i)?["ports"] = json!([{ "namedPort": port }]);
        }
        ["prepend-networks", gress, rule_name, action, pods @ ..] if !pods.is_empty() => {
            let networks = pods
                .iter()
                .map(|p| {
                    ipv4.get(*p)
                        .map(|ip| format!("{ip}/32"))
                        .ok_or_else(|| format!("change {name}: no pod {p}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let peers = if *gress == "egress" { "to" } else { "from" };
            let new =
                json!({ "name": rule_name, "action": action, peers: [{ "networks": networks }] });
            doc["spec"][*gress]
                .as_array_mut()
                .ok_or_else(bad)?
                .insert(0, new);
        }
        _ => return Err(bad()),
    }
    Ok(Changed::Edited(at))
}

/// The probes' results against the expectations: (compared, wrong ones).
pub fn compare(
    probes: &[Probe],
    namespace_of: &BTreeMap<String, String>,
    rows: &[ProbeResult],
) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut wrong = Vec::new();
    for p in probes {
        let key = |pod: &str| {
            format!(
                "{}/{pod}",
                namespace_of.get(pod).map_or("?", String::as_str)
            )
        };
        let (from, to) = (key(&p.from), key(&p.to));
        let got = rows
            .iter()
            .find(|r| r.from == from && r.to == to && r.port == p.port && r.protocol == p.protocol);
        let verdict = |ok: bool| if ok { "connected" } else { "blocked" };
        match got {
            None => wrong.push(format!(
                "{} -> {} {}/{}: not probed",
                p.from,
                p.to,
                p.port,
                p.protocol.as_str()
            )),
            Some(r) => {
                compared += 1;
                if r.connected != p.allowed {
                    wrong.push(format!(
                        "{} -> {} {}/{}: {} ({}), expected {}",
                        p.from,
                        p.to,
                        p.port,
                        p.protocol.as_str(),
                        verdict(r.connected),
                        r.result,
                        verdict(p.allowed)
                    ));
                }
            }
        }
    }
    (compared, wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_and_bad_ones_are_refused() {
        let p = parse_probe("luna-lovegood-0 -> harry-potter-0 53/UDP deny")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.port, p.protocol, p.allowed), (53, Protocol::Udp, false));
        assert!(parse_probe("a -> b 80/TCP maybe").is_err());
        assert!(parse_probe("a b 80/TCP allow").is_err());
        assert!(parse_probe("a -> b 80/SCTP allow").is_err());
    }

    #[test]
    fn changes_edit_the_live_documents() {
        let mut docs = documents(
            "kind: AdminNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 60\n  egress:\n  - {name: a, action: Allow}\n  - {name: b, action: Deny}\n---\nkind: NetworkPolicy\nmetadata: {name: np}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ips = BTreeMap::from([("x-0".to_owned(), "198.18.0.5".to_owned())]);
        let mut run =
            |op: &str| apply_change(&mut docs, "p", op, &ips).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run("swap egress 0 1"), Changed::Edited(0));
        run("set-action egress 1 Pass");
        run("priority 40");
        run("named-port egress 0 web");
        run("prepend-networks egress n Allow x-0");
        let spec = &docs[0]["spec"];
        assert_eq!(spec["priority"], json!(40));
        assert_eq!(
            spec["egress"][0]["to"][0]["networks"],
            json!(["198.18.0.5/32"])
        );
        assert_eq!(spec["egress"][1]["name"], json!("b"));
        assert_eq!(spec["egress"][1]["ports"], json!([{ "namedPort": "web" }]));
        assert_eq!(spec["egress"][2]["action"], json!("Pass"));
        assert!(apply_change(&mut docs, "p", "swap egress 0 9", &ips).is_err());
        assert!(apply_change(&mut docs, "nope", "delete", &ips).is_err());
        assert!(matches!(
            apply_change(&mut docs, "np", "delete", &ips),
            Ok(Changed::Deleted(_))
        ));
        assert_eq!(docs.len(), 1);
    }
}

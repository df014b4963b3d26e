//! `enforcer matrix`: the connectivity truth table from the reference evaluator, with
//! no lab — the same probes `enforcer lab probe` would run (same pods, targets, ports
//! and protocols, planned by [`crate::connectivity::plan`] over the cluster
//! [`crate::offline`] completes as the lab would), each judged at both legs.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::connectivity::{ConnectivityError, ProbePod, ProbeRequest, ProbeResult, plan};
use crate::explain::{ExplainError, FlowQuery, explain};
use crate::offline::Completed;
use crate::policy::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Plan(#[from] ConnectivityError),
    #[error(transparent)]
    Explain(#[from] ExplainError),
    #[error(
        "{0}: matrix judges pod-to-pod flows; for a Service, name its backend pods (Service traffic is judged after DNAT, on the backend)"
    )]
    ServiceTarget(String),
}

/// The probes `req` stands for, each with the evaluator's verdict. `result` is
/// `connected`, or the first leg that denies and why.
pub fn matrix(
    completed: &Completed,
    cluster: &Cluster,
    req: &ProbeRequest,
) -> Result<Vec<ProbeResult>, MatrixError> {
    if let Some(svc) = req.to.iter().find(|t| t.starts_with("svc/")) {
        return Err(MatrixError::ServiceTarget(svc.clone()));
    }
    let pods: BTreeMap<String, ProbePod> = completed
        .pods
        .iter()
        .map(|(key, planned)| (key.clone(), ProbePod::of(planned)))
        .collect();
    let flows = plan(&pods, &completed.services, req)?;
    let mut out = Vec::with_capacity(flows.len());
    for job in flows {
        let query = FlowQuery {
            from: job.from.clone(),
            to: job.to.clone(),
            port: format!("{}/{}", job.addr.port(), job.protocol.as_str()),
            ipv6: job.addr.is_ipv6(),
        };
        let explanation = explain(cluster, &query)?;
        out.push(ProbeResult {
            from: job.from,
            to: job.to,
            port: job.addr.port(),
            protocol: job.protocol,
            connected: explanation.allowed,
            result: if explanation.allowed {
                "connected".to_owned()
            } else {
                explanation.brief()
            },
        });
    }
    Ok(out)
}

/// What a change opens and closes.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MatrixDiff {
    /// Connected after, not before (or a flow that only exists after).
    pub opened: Vec<ProbeResult>,
    /// Connected before, not after (or a flow that no longer exists), as it is after
    /// (or was before, when it no longer exists).
    pub closed: Vec<ProbeResult>,
}

type FlowKey = (String, String, u16, &'static str);

fn key(r: &ProbeResult) -> FlowKey {
    (r.from.clone(), r.to.clone(), r.port, r.protocol.as_str())
}

pub fn diff(old: &[ProbeResult], new: &[ProbeResult]) -> MatrixDiff {
    let before: BTreeMap<FlowKey, &ProbeResult> = old.iter().map(|r| (key(r), r)).collect();
    let after: BTreeMap<FlowKey, &ProbeResult> = new.iter().map(|r| (key(r), r)).collect();
    let mut d = MatrixDiff::default();
    for (k, r) in &after {
        let was = before.get(k).is_some_and(|b| b.connected);
        if r.connected && !was {
            d.opened.push((*r).clone());
        }
        if !r.connected && was {
            d.closed.push((*r).clone());
        }
    }
    for (k, r) in &before {
        if r.connected && !after.contains_key(k) {
            d.closed.push((*r).clone());
        }
    }
    d.closed.sort_by_key(key);
    d
}

impl MatrixDiff {
    /// `+ from -> to:port/proto` for opened flows, `- …  (why)` for closed ones.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for r in &self.opened {
            let _ = writeln!(
                out,
                "+ {} -> {}:{}/{}",
                r.from,
                r.to,
                r.port,
                r.protocol.as_str()
            );
        }
        for r in &self.closed {
            let _ = writeln!(
                out,
                "- {} -> {}:{}/{}  ({})",
                r.from,
                r.to,
                r.port,
                r.protocol.as_str(),
                r.result
            );
        }
        let _ = writeln!(
            out,
            "{} opened, {} closed",
            self.opened.len(),
            self.closed.len()
        );
        out
    }
}

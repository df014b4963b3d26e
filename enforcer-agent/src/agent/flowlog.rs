//! The flow log: drains `ENF_EVENTS` (Log-rule hits, and denied new flows when the
//! agent runs with `--events-on-deny`) into JSON lines that name the policy and rule,
//! never a per-packet `trace_pipe` print.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use aya::maps::{MapData, RingBuf};
use serde::Serialize;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use enforcer_common::{
    ACTION_ALLOW, DIR_INGRESS, EVENT_KIND_DENY, EVENT_KIND_LOG, FAMILY_V4, FlowEvent, NO_INDEX,
};

use crate::compile::DataplaneSpec;

#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("flow log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One line of the flow log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FlowRecord {
    pub ts_ns: u64,
    /// `log` (a Log rule matched) or `deny` (a new flow was denied).
    pub event: &'static str,
    pub action: &'static str,
    /// `ingress` or `egress` of `endpoint`.
    pub direction: &'static str,
    /// `namespace/name` of the judging endpoint.
    pub endpoint: Option<String>,
    pub src: String,
    pub dst: String,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// `tier/kind namespace/name` of the policy (None: a default decided).
    pub policy: Option<String>,
    pub rule: Option<u32>,
}

fn addr(bytes: [u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

/// Decodes an event with the names of the spec in force.
pub fn record(event: &FlowEvent, spec: Option<&DataplaneSpec>) -> FlowRecord {
    let policy = (event.policy != NO_INDEX)
        .then(|| spec.and_then(|s| s.policies.get(event.policy as usize)))
        .flatten()
        .map(|p| {
            if p.namespace.is_empty() {
                format!("{}/{} {}", p.tier, p.kind, p.name)
            } else {
                format!("{}/{} {}/{}", p.tier, p.kind, p.namespace, p.name)
            }
        });
    let endpoint = spec.and_then(|s| {
        s.endpoints
            .iter()
            .find(|e| e.info.endpoint_id == event.endpoint_id)
            .map(|e| e.workload.clone())
    });
    FlowRecord {
        ts_ns: event.ts_ns,
        event: match event.kind {
            EVENT_KIND_LOG => "log",
            EVENT_KIND_DENY => "deny",
            _ => "unknown",
        },
        action: if event.action == ACTION_ALLOW {
            "allow"
        } else {
            "deny"
        },
        direction: if event.dir == DIR_INGRESS {
            "ingress"
        } else {
            "egress"
        },
        endpoint,
        src: addr(event.src, event.family).to_string(),
        dst: addr(event.dst, event.family).to_string(),
        proto: event.proto,
        sport: event.sport,
        dport: event.dport,
        policy,
        rule: (event.rule != NO_INDEX).then_some(event.rule),
    }
}

/// The ring buffer, readable from tokio, and the file it drains into.
pub struct FlowLog {
    ring: AsyncFd<RingBuf<MapData>>,
    path: PathBuf,
}

impl FlowLog {
    /// Must be called from within a tokio runtime.
    pub fn new(ring: RingBuf<MapData>, path: &Path) -> Result<Self, FlowLogError> {
        // SAFETY: the ring buffer owns its map's descriptor and `AsyncFd` owns the ring
        // buffer: the descriptor stays open, and the same, as long as it is registered.
        let ring =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
                FlowLogError::Io {
                    path: path.to_path_buf(),
                    source: e.into(),
                }
            })?;
        Ok(Self {
            ring,
            path: path.to_path_buf(),
        })
    }

    /// Waits until the ring buffer has events. The readiness is consumed here: events
    /// that arrive after it are announced again, and [`FlowLog::drain`] takes
    /// everything present, so none is left behind.
    pub async fn readable(&self) -> Result<(), FlowLogError> {
        let mut guard = self
            .ring
            .readable()
            .await
            .map_err(|source| FlowLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        guard.clear_ready();
        Ok(())
    }

    /// Appends every pending event; returns how many.
    pub fn drain(&mut self, spec: Option<&DataplaneSpec>) -> Result<usize, FlowLogError> {
        let mut lines = Vec::new();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if item.len() < size_of::<FlowEvent>() {
                continue;
            }
            let event: FlowEvent = bytemuck::pod_read_unaligned(&item[..size_of::<FlowEvent>()]);
            if let Ok(line) = serde_json::to_string(&record(&event, spec)) {
                lines.push(line);
            }
        }
        if lines.is_empty() {
            return Ok(0);
        }
        let io = |source| FlowLogError::Io {
            path: self.path.clone(),
            source,
        };
        // Never through a link planted in place of the log (the agent runs as root).
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(io)?;
        for line in &lines {
            writeln!(file, "{line}").map_err(io)?;
        }
        Ok(lines.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::spec::SpecEndpoint;
    use crate::model::PolicyName;
    use enforcer_common::{ACTION_DENY, DIR_EGRESS, EndpointInfo};

    #[test]
    fn a_log_event_names_its_policy_rule_and_endpoint() {
        let spec = DataplaneSpec {
            endpoints: vec![SpecEndpoint {
                iface: "cali0".into(),
                workload: "dev-app/frontend-0".into(),
                info: EndpointInfo {
                    endpoint_id: 7,
                    ..EndpointInfo::default()
                },
            }],
            policies: vec![PolicyName {
                tier: "security".into(),
                kind: "GlobalNetworkPolicy".into(),
                namespace: String::new(),
                name: "audit".into(),
            }],
            ..DataplaneSpec::default()
        };
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[198, 18, 0, 10]);
        let event = FlowEvent {
            src,
            sport: 40000,
            dport: 80,
            proto: 6,
            family: FAMILY_V4,
            dir: DIR_EGRESS,
            action: ACTION_DENY,
            kind: EVENT_KIND_LOG,
            endpoint_id: 7,
            policy: 0,
            rule: 2,
            ..FlowEvent::default()
        };
        let r = record(&event, Some(&spec));
        assert_eq!(r.event, "log");
        assert_eq!(r.direction, "egress");
        assert_eq!(r.endpoint.as_deref(), Some("dev-app/frontend-0"));
        assert_eq!(
            r.policy.as_deref(),
            Some("security/GlobalNetworkPolicy audit")
        );
        assert_eq!(r.rule, Some(2));
        assert_eq!(r.src, "198.18.0.10");
        assert_eq!(r.dst, "0.0.0.0");
        let none = FlowEvent {
            policy: NO_INDEX,
            rule: NO_INDEX,
            ..event
        };
        let r = record(&none, Some(&spec));
        assert_eq!((r.policy, r.rule), (None, None));
    }
}

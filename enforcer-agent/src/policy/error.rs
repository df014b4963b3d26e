//! Errors and warnings of building the policy model: each names the object's file,
//! identity and field, says what is wrong and, where there is one, the fix.

use std::fmt;

use crate::model::{ObjectId, Source};

/// What Calico's (or the API server's) validation would reject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyProblem {
    InvalidSelector {
        selector: String,
        column: usize,
        message: String,
    },
    InvalidCidr {
        value: String,
        message: String,
    },
    InvalidProtocol {
        value: String,
    },
    InvalidPort {
        value: String,
        message: String,
    },
    /// Ports need TCP, UDP or SCTP.
    PortsWithoutPortProtocol,
    /// IPv4 and IPv6 CIDRs (or an `ipVersion` contradicting them) in one rule.
    MixedIpVersions,
    InvalidIpVersion {
        value: u8,
    },
    /// `icmp`/`notICMP` with a protocol other than ICMP/ICMPv6.
    IcmpWithoutIcmpProtocol,
    InvalidIcmp {
        message: String,
    },
    PreDnatWithoutApplyOnForward,
    PreDnatWithEgress,
    DoNotTrackWithPreDnat,
    DoNotTrackWithoutApplyOnForward,
    UnknownTier {
        tier: String,
    },
    InvalidTierAction,
    TooManyRules {
        count: usize,
    },
    /// Valid Calico that this enforcer cannot enforce yet.
    Unsupported {
        what: String,
    },
    /// Kubernetes API validation.
    InvalidKubernetes {
        message: String,
    },
    /// A rule's `services` match as Calico's validation refuses it.
    InvalidServiceMatch {
        message: String,
    },
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyProblem::InvalidSelector {
                selector,
                column,
                message,
            } => {
                write!(
                    f,
                    "invalid selector {selector:?} at column {column}: {message}"
                )
            }
            PolicyProblem::InvalidCidr { message, .. }
            | PolicyProblem::InvalidIcmp { message }
            | PolicyProblem::InvalidKubernetes { message } => f.write_str(message),
            PolicyProblem::InvalidServiceMatch { message } => {
                write!(f, "invalid service match: {message}")
            }
            PolicyProblem::InvalidProtocol { value } => write!(
                f,
                "invalid protocol {value:?}: expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255"
            ),
            PolicyProblem::InvalidPort { value, message } => {
                write!(f, "invalid port {value:?}: {message}")
            }
            PolicyProblem::PortsWithoutPortProtocol => {
                f.write_str("ports are only valid with protocol TCP, UDP or SCTP")
            }
            PolicyProblem::MixedIpVersions => {
                f.write_str("a rule cannot mix IPv4 and IPv6 CIDRs (or contradict its ipVersion)")
            }
            PolicyProblem::InvalidIpVersion { value } => {
                write!(f, "ipVersion {value} is not 4 or 6")
            }
            PolicyProblem::IcmpWithoutIcmpProtocol => {
                f.write_str("icmp/notICMP need protocol ICMP or ICMPv6")
            }
            PolicyProblem::PreDnatWithoutApplyOnForward => {
                f.write_str("preDNAT requires applyOnForward: true")
            }
            PolicyProblem::PreDnatWithEgress => {
                f.write_str("preDNAT policies cannot have egress rules or types")
            }
            PolicyProblem::DoNotTrackWithPreDnat => {
                f.write_str("doNotTrack and preDNAT cannot both be set")
            }
            PolicyProblem::DoNotTrackWithoutApplyOnForward => {
                f.write_str("doNotTrack requires applyOnForward: true")
            }
            PolicyProblem::UnknownTier { tier } => write!(f, "tier {tier:?} does not exist"),
            PolicyProblem::InvalidTierAction => {
                f.write_str("a tier's defaultAction must be Deny or Pass")
            }
            PolicyProblem::TooManyRules { count } => {
                write!(f, "{count} rules in one direction (Calico allows 1024)")
            }
            PolicyProblem::Unsupported { what } => write!(f, "not supported by enforcer: {what}"),
        }
    }
}

fn location(source: Option<&Source>) -> String {
    match source {
        Some(s) if s.line > 0 => format!("{}:{}: ", s.file.display(), s.line),
        Some(s) => format!("{}: ", s.file.display()),
        None => String::new(),
    }
}

fn fix_suffix(fix: Option<&String>) -> String {
    fix.map(|f| format!(" (fix: {f})")).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{object}, field {field}: {problem}{}", location(.file.as_ref()), fix_suffix(.fix.as_ref()))]
pub struct PolicyError {
    /// Where the object was read from (not an error cause).
    pub file: Option<Source>,
    pub object: ObjectId,
    pub field: String,
    pub problem: PolicyProblem,
    pub fix: Option<String>,
}

/// Accepted, but probably not what the author meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub source: Option<Source>,
    pub object: ObjectId,
    pub field: String,
    pub message: String,
    pub fix: Option<String>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}, field {}: {}{}",
            location(self.source.as_ref()),
            self.object,
            self.field,
            self.message,
            fix_suffix(self.fix.as_ref())
        )
    }
}

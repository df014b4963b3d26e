//! A Service's cluster IPs as the API server settles them: the address families it
//! gets from `ipFamilyPolicy`, `ipFamilies` and any `clusterIPs` it names, and one
//! address per family, primary first (`clusterIP` is `clusterIPs[0]`).
//!
//! The lab is a dual-stack cluster whose primary family is IPv4, so, as Kubernetes
//! defaults the fields: `SingleStack` (the default policy) gets the family `ipFamilies`
//! or `clusterIPs` name first, else IPv4; `PreferDualStack` and `RequireDualStack` get
//! both, the named family (else IPv4) first. The combinations the API server refuses
//! (two families or two addresses under `SingleStack`, an address of another family than
//! its `ipFamilies` entry, `clusterIP` not `clusterIPs[0]`) are refused with its reason.

use std::net::IpAddr;

use crate::model::workload::ServiceSpec;

/// An address family of a Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The name `spec.ipFamilies` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(Self::V4),
            "IPv6" => Some(Self::V6),
            _ => None,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::V4 => Self::V6,
            Self::V6 => Self::V4,
        }
    }
}

/// What a Service's spec asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The families, primary first.
    pub families: Vec<Family>,
    /// The addresses the spec names (`clusterIPs`, else `clusterIP`), primary first.
    pub named: Vec<IpAddr>,
    /// `ipFamilyPolicy` with its default filled in.
    pub policy: &'static str,
}

/// Whether the spec declares a headless Service (`clusterIP: None`).
pub fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
        || spec.cluster_ips.first().map(String::as_str) == Some("None")
}

/// The families and named addresses of a non-headless Service. `kept`: the addresses it
/// had (the primary family of an update that names none stays the one it had). Errors
/// are the API server's reasons, naming the field.
pub fn request(spec: &ServiceSpec, kept: &[IpAddr]) -> Result<Request, String> {
    let parse = |field: &str, ip: &str| {
        ip.parse::<IpAddr>()
            .map_err(|_| format!("{field} {ip:?} is not an IP address or \"None\""))
    };
    let mut named = Vec::new();
    for (i, ip) in spec.cluster_ips.iter().enumerate() {
        named.push(parse(&format!("spec.clusterIPs[{i}]"), ip)?);
    }
    if let Some(ip) = &spec.cluster_ip {
        let ip = parse("spec.clusterIP", ip)?;
        match named.first() {
            None => named.push(ip),
            Some(first) if *first != ip => {
                return Err(format!(
                    "spec.clusterIP {ip} must be spec.clusterIPs[0] ({first})"
                ));
            }
            Some(_) => {}
        }
    }
    let mut declared = Vec::new();
    for (i, name) in spec.ip_families.iter().enumerate() {
        let family = Family::parse(name)
            .ok_or_else(|| format!("spec.ipFamilies[{i}] {name:?} is not \"IPv4\" or \"IPv6\""))?;
        declared.push(family);
    }
    if named.len() > 2 || declared.len() > 2 {
        return Err("spec.clusterIPs and spec.ipFamilies hold at most two entries".into());
    }
    if named.len() == 2 && Family::of(named[0]) == Family::of(named[1]) {
        return Err("spec.clusterIPs must hold one address of each family".into());
    }
    if declared.len() == 2 && declared[0] == declared[1] {
        return Err("spec.ipFamilies must name two different families".into());
    }
    for (i, (ip, family)) in named.iter().zip(&declared).enumerate() {
        if Family::of(*ip) != *family {
            return Err(format!(
                "spec.clusterIPs[{i}] {ip} is not of family spec.ipFamilies[{i}] ({})",
                family.name()
            ));
        }
    }
    let policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => "SingleStack",
        Some("PreferDualStack") => "PreferDualStack",
        Some("RequireDualStack") => "RequireDualStack",
        Some(other) => {
            return Err(format!(
                "spec.ipFamilyPolicy {other:?} is not SingleStack, PreferDualStack or RequireDualStack"
            ));
        }
    };
    let dual = policy != "SingleStack";
    if !dual && (named.len() == 2 || declared.len() == 2) {
        return Err(
            "two spec.clusterIPs or spec.ipFamilies need spec.ipFamilyPolicy PreferDualStack or RequireDualStack"
                .into(),
        );
    }
    let primary = declared
        .first()
        .copied()
        .or_else(|| named.first().copied().map(Family::of))
        .or_else(|| kept.first().copied().map(Family::of))
        .unwrap_or(Family::V4);
    let mut families = vec![primary];
    if dual {
        families.push(primary.other());
    }
    Ok(Request {
        families,
        named,
        policy,
    })
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    fn spec(policy: Option<&str>, families: &[&str], ips: &[&str]) -> ServiceSpec {
        ServiceSpec {
            ip_family_policy: policy.map(Into::into),
            ip_families: families.iter().map(|&f| f.into()).collect(),
            cluster_ips: ips.iter().map(|&ip| ip.into()).collect(),
            ..ServiceSpec::default()
        }
    }

    #[test]
    fn families_as_the_api_server_defaults_them() {
        use Family::{V4, V6};
        let families = |s: ServiceSpec| request(&s, &[]).unwrap().families;
        assert_eq!(families(spec(None, &[], &[])), [V4]);
        assert_eq!(families(spec(None, &["IPv6"], &[])), [V6]);
        assert_eq!(families(spec(None, &[], &["2001:2:0:19::5"])), [V6]);
        assert_eq!(families(spec(Some("PreferDualStack"), &[], &[])), [V4, V6]);
        assert_eq!(
            families(spec(Some("RequireDualStack"), &["IPv6"], &[])),
            [V6, V4]
        );
        assert_eq!(
            families(spec(
                Some("PreferDualStack"),
                &["IPv4", "IPv6"],
                &["198.19.0.5", "2001:2:0:19::5"]
            )),
            [V4, V6]
        );
        // An update naming nothing keeps the primary family it had.
        let kept = ["2001:2:0:19::5".parse().unwrap()];
        assert_eq!(
            request(&spec(None, &[], &[]), &kept).unwrap().families,
            [V6]
        );
    }

    #[test]
    fn what_the_api_server_refuses() {
        let refused = |s: ServiceSpec, needle: &str| {
            let err = request(&s, &[]).unwrap_err();
            assert!(err.contains(needle), "{err}");
        };
        refused(spec(None, &["IPv4", "IPv6"], &[]), "ipFamilyPolicy");
        refused(
            spec(None, &[], &["198.19.0.5", "2001:2:0:19::5"]),
            "ipFamilyPolicy",
        );
        refused(
            spec(Some("PreferDualStack"), &["IPv6"], &["198.19.0.5"]),
            "spec.clusterIPs[0]",
        );
        refused(spec(Some("DualStack"), &[], &[]), "spec.ipFamilyPolicy");
        refused(spec(None, &["IPv5"], &[]), "spec.ipFamilies[0]");
        refused(
            spec(Some("PreferDualStack"), &["IPv4", "IPv4"], &[]),
            "two different",
        );
        let mut both = spec(None, &[], &["198.19.0.5"]);
        both.cluster_ip = Some("198.19.0.6".into());
        refused(both, "spec.clusterIPs[0]");
    }
}

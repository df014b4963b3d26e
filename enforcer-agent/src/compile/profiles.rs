//! Profiles: local endpoints that are judged alike share a profile, the `profile` of
//! their `ENF_ENDPOINTS` entries and the first part of every verdict key.
//!
//! Two endpoints are judged alike when they have the same address families, the same
//! applicable policies per direction, and the same facts for every local rule side
//! (the destination of an ingress rule, the source of an egress rule) at each of their
//! addresses. Endpoints whose addresses have equal fingerprints (nothing a rule can
//! see differs) skip the comparison.

use std::net::IpAddr;

use enforcer_common::{EP_F_HAS_V4, EP_F_HAS_V6, EndpointInfo};

use super::hashing::HashMap;
use super::input::{AddressFingerprint, Input};
use super::regions::NamedNets;
use super::spec::SpecEndpoint;
use crate::eval::{self, SideFacts};
use crate::policy::{Direction, Endpoint};

/// A profile: the endpoint that stands for it and its applicable policies.
pub(super) struct Profile {
    /// Index of the representative endpoint in `Cluster::endpoints`.
    pub(super) rep: usize,
    /// Applicable policies, ingress then egress, in evaluation order.
    pub(super) applicable: [Vec<usize>; 2],
}

/// Everything that decides an endpoint's verdicts, except the peer.
#[derive(PartialEq, Eq, Hash)]
struct ProfileSignature {
    has_v4: bool,
    has_v6: bool,
    /// Applicable policies, ingress then egress.
    applicable: [Vec<usize>; 2],
    /// Per applicable rule whose local side tests the address, per local address: the
    /// side's facts.
    local_facts: Vec<SideFacts>,
}

/// The profiles of the node's local endpoints, and their `ENF_ENDPOINTS` entries.
pub(super) fn profiles(
    input: &Input<'_>,
    named_nets: &NamedNets,
) -> (Vec<Profile>, Vec<SpecEndpoint>) {
    let mut profiles: Vec<Profile> = Vec::new();
    let mut profile_of_signature: HashMap<ProfileSignature, u32> = HashMap::default();
    let mut profile_of_fingerprint: HashMap<Vec<AddressFingerprint<'_>>, u32> = HashMap::default();
    let mut endpoints = Vec::new();
    for (e, ep) in input.cluster.endpoints.iter().enumerate() {
        if !input.is_local(e) {
            continue;
        }
        let fingerprint: Vec<AddressFingerprint<'_>> = [ep.ipv4(), ep.ipv6()]
            .into_iter()
            .flatten()
            .map(|ip| input.fingerprint(e, ip, named_nets.around(ip)))
            .collect();
        let profile = if let Some(&p) = profile_of_fingerprint.get(&fingerprint) {
            p
        } else {
            let signature = signature(input, ep);
            let p = if let Some(&p) = profile_of_signature.get(&signature) {
                p
            } else {
                let p = profiles.len() as u32;
                profiles.push(Profile {
                    rep: e,
                    applicable: signature.applicable.clone(),
                });
                profile_of_signature.insert(signature, p);
                p
            };
            profile_of_fingerprint.insert(fingerprint, p);
            p
        };
        endpoints.push(endpoint_entry(e, ep, profile));
    }
    (profiles, endpoints)
}

fn signature(input: &Input<'_>, ep: &Endpoint) -> ProfileSignature {
    let cluster = input.cluster;
    // A local endpoint's policies are among those relevant to the node (the same
    // test, over every local endpoint): the rest need not be asked.
    let applicable = [Direction::Ingress, Direction::Egress].map(|dir| {
        input
            .relevant()
            .filter(|&p| cluster.policies[p].applies_to_endpoint(cluster, ep, dir))
            .collect::<Vec<usize>>()
    });
    let mut local_facts = Vec::new();
    for (d, dir) in [Direction::Ingress, Direction::Egress]
        .into_iter()
        .enumerate()
    {
        for &p in &applicable[d] {
            for i in 0..cluster.policies[p].rules(dir).len() {
                let r = &input.rules[input.rule_position(p, dir, i)];
                if !r.local_side().tests_address() {
                    continue;
                }
                for ip in [ep.ipv4(), ep.ipv6()].into_iter().flatten() {
                    local_facts.push(eval::side_facts(
                        cluster,
                        r.local_side(),
                        r.rule.protocol,
                        ip,
                    ));
                }
            }
        }
    }
    ProfileSignature {
        has_v4: ep.ipv4().is_some(),
        has_v6: ep.ipv6().is_some(),
        applicable,
        local_facts,
    }
}

/// The `ENF_ENDPOINTS` entry of endpoint `e` (endpoint id `e + 1`).
fn endpoint_entry(e: usize, ep: &Endpoint, profile: u32) -> SpecEndpoint {
    let mut info = EndpointInfo {
        profile,
        endpoint_id: e as u32 + 1,
        ..EndpointInfo::default()
    };
    if let Some(IpAddr::V4(v4)) = ep.ipv4() {
        info.flags |= EP_F_HAS_V4;
        info.ipv4 = v4.octets();
    }
    if let Some(IpAddr::V6(v6)) = ep.ipv6() {
        info.flags |= EP_F_HAS_V6;
        info.ipv6 = v6.octets();
    }
    SpecEndpoint {
        iface: ep.iface.clone(),
        workload: ep.workload(),
        info,
    }
}

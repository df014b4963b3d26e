//! What the three host-interface programs share: the failsafe check, the host-endpoint
//! verdict lookup (keyed by the endpoint's profile *and* the local address's host
//! class, see `enforcer_common::host_profile`) and the host conntrack bits.
//!
//! The lookup is a BPF-to-BPF call returning the action only, so the XDP and TC
//! programs, which look up two or three directions each, carry it once.

use enforcer_common::{
    ACTION_ALLOW, ACTION_CONTINUE, ACTION_DENY, Config, CtKey, DIR_EGRESS, DIR_INGRESS,
    DIR_UNTRACKED_EGRESS, DIR_UNTRACKED_INGRESS, EndpointInfo, FailsafeKey, HOOK_HOST_XDP,
    PEER_F_HOST, PEER_F_LOCAL_ENDPOINT, PeerInfo, REASON_ALLOW_POLICY, REASON_ALLOW_UNTRACKED,
    REASON_DENY_POLICY, host_profile,
};

use crate::{
    Drop, conntrack,
    debug_log::{self, VerdictLog},
    maps::ENF_FAILSAFE,
    observe::{self, Report},
    packet::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, Packet},
    policy,
};

/// A host-direction decision.
pub enum HostAction {
    Allow,
    Deny,
    /// No policy of this kind decided (untracked, preDNAT).
    Continue,
}

#[inline(always)]
fn failsafe_has(dir: u8, proto: u8, port: u16) -> bool {
    let key = FailsafeKey { dir, proto, port };
    // SAFETY: only presence is read.
    unsafe { ENF_FAILSAFE.get(key) }.is_some()
}

#[inline(always)]
fn has_ports(pkt: &Packet) -> bool {
    matches!(
        pkt.proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    )
}

/// Failsafe (checked before any policy). `inbound`: the packet enters the node through
/// the host interface. A packet matches when its *destination* port is a failsafe port
/// of its own direction, nothing else: a source port proves nothing (any client can
/// pick one), so the replies of failsafe connections pass on the conntrack entry their
/// first packet opened, as in Calico.
#[inline(always)]
pub fn is_failsafe(pkt: &Packet, inbound: bool) -> bool {
    let own = if inbound { DIR_INGRESS } else { DIR_EGRESS };
    has_ports(pkt) && failsafe_has(own, pkt.proto, pkt.dport)
}

/// Whether the packet may be the reply of a failsafe connection of the other
/// direction (its *source* port is a failsafe port of that direction): such a packet
/// skips untracked (doNotTrack) policy, whose deny would otherwise cut the connection
/// before conntrack sees the reply, and must still pass conntrack or the tracked
/// chain. This is Calico's raw-table rule, which only skips doNotTrack policy.
#[inline(always)]
pub fn may_be_failsafe_reply(pkt: &Packet, inbound: bool) -> bool {
    let other = if inbound { DIR_EGRESS } else { DIR_INGRESS };
    has_ports(pkt) && failsafe_has(other, pkt.proto, pkt.sport)
}

/// The classes a host-direction key needs: the remote address's class and the local
/// address's host class. `inbound`: the remote side is the source.
pub struct HostKey {
    /// The local address is one of the node's own (`PEER_F_HOST`).
    pub local_is_node: bool,
    /// The remote address is a pod of this node (`PEER_F_LOCAL_ENDPOINT`): inbound, a
    /// forged source (its packets only ever enter through its own veth, see `spoof`).
    pub remote_is_local_pod: bool,
    pub peer_class: u32,
    pub profile: u32,
    pub cell: u32,
    /// The host endpoint, for the debug log, counters and events.
    pub endpoint_id: u32,
    /// The host interface and the program (`HOOK_*`), for events.
    pub ifindex: u32,
    pub hook: u32,
}

#[inline(always)]
pub fn host_key(
    generation: u32,
    ep: &EndpointInfo,
    pkt: &Packet,
    inbound: bool,
    (ifindex, hook): (u32, u32),
) -> Result<HostKey, Drop> {
    let (remote, local) = if inbound {
        (&pkt.src, &pkt.dst)
    } else {
        (&pkt.dst, &pkt.src)
    };
    let remote: PeerInfo = policy::peer(generation, pkt.family, remote)?;
    let local: PeerInfo = policy::peer(generation, pkt.family, local)?;
    Ok(HostKey {
        local_is_node: local.flags & PEER_F_HOST != 0,
        remote_is_local_pod: remote.flags & PEER_F_LOCAL_ENDPOINT != 0,
        peer_class: remote.class,
        profile: host_profile(ep.profile, local.host_class),
        cell: policy::cell(generation, pkt)?,
        endpoint_id: ep.endpoint_id,
        ifindex,
        hook,
    })
}

/// Re-keys `key` for `local` as the local address (instead of the packet's own): a
/// pod's address, for its packet whose source the node rewrote (see `snat`).
#[inline(always)]
pub fn local_side(
    generation: u32,
    ep: &EndpointInfo,
    pkt: &Packet,
    local: &[u8; 16],
    key: &mut HostKey,
) -> Result<(), Drop> {
    let local: PeerInfo = policy::peer(generation, pkt.family, local)?;
    key.local_is_node = local.flags & PEER_F_HOST != 0;
    key.profile = host_profile(ep.profile, local.host_class);
    Ok(())
}

/// The action for (direction, host key); not inlined, see the module doc. The whole
/// verdict is left in `ENF_SCRATCH` for [`decide`] to report.
#[inline(never)]
fn lookup_action(generation: u32, dir: u32, profile: u32, peer_class: u32, cell: u32) -> u32 {
    match policy::verdict(generation, dir as u8, profile, peer_class, cell) {
        Ok(v) => {
            observe::stash(&v);
            u32::from(v.action)
        }
        Err(_) => 0,
    }
}

/// Counts and reports a host decision (`observe::report`). XDP reports its denies
/// only: what it lets through, the TC program judges (and reports) again.
#[inline(always)]
fn report(cfg: &Config, dir: u8, key: &HostKey, pkt: &Packet, action: u8) {
    let untracked = matches!(dir, DIR_UNTRACKED_INGRESS | DIR_UNTRACKED_EGRESS);
    let reason = match action {
        ACTION_ALLOW if key.hook == HOOK_HOST_XDP => return,
        ACTION_ALLOW if untracked => REASON_ALLOW_UNTRACKED,
        ACTION_ALLOW => REASON_ALLOW_POLICY,
        ACTION_DENY => REASON_DENY_POLICY,
        _ => return,
    };
    observe::report_stashed(
        pkt,
        &Report {
            flags: cfg.flags,
            generation: cfg.active_gen,
            ifindex: key.ifindex,
            endpoint_id: key.endpoint_id,
            reason,
            dir,
            hook: key.hook as u8,
        },
    );
}

/// The debug log note of one host decision. The action-only lookup above does not
/// return the deciding policy and rule, so the verdict is looked up again: a cost paid
/// only by the debug-log variants while the log is on.
#[inline(never)]
fn log_decision(generation: u32, dir: u32, key: &HostKey, pkt: &Packet) {
    if let Ok(v) = policy::verdict(generation, dir as u8, key.profile, key.peer_class, key.cell) {
        debug_log::note(
            pkt,
            &VerdictLog {
                dir: dir as u8,
                action: v.action,
                endpoint_id: key.endpoint_id,
                policy: v.policy,
                rule: v.rule,
            },
        );
    }
}

/// The decision of one host direction. A missing entry or an unknown action is a map
/// error (fail closed).
#[inline(always)]
pub fn decide<const DEBUG: bool>(
    cfg: &Config,
    dir: u8,
    key: &HostKey,
    pkt: &Packet,
) -> Result<HostAction, Drop> {
    let action = lookup_action(
        cfg.active_gen,
        u32::from(dir),
        key.profile,
        key.peer_class,
        key.cell,
    );
    report(cfg, dir, key, pkt, action as u8);
    if DEBUG && debug_log::enabled(cfg) {
        log_decision(cfg.active_gen, u32::from(dir), key, pkt);
    }
    match action as u8 {
        ACTION_ALLOW => Ok(HostAction::Allow),
        ACTION_DENY => Ok(HostAction::Deny),
        ACTION_CONTINUE => Ok(HostAction::Continue),
        _ => Err(Drop::MapError),
    }
}

/// Adds `flag` to the flow's entry (creating it), keeping what the pod hooks recorded.
#[inline(always)]
pub fn record(key: &CtKey, existing: &conntrack::Entry, flag: u32, generation: u32, now: u64) {
    conntrack::upsert(key, flag | existing.value.flags, generation, now);
}

//! Policy lookups: configuration, endpoint, peer class, cell and verdict. Everything
//! here is keyed by a generation so that one packet (and one flow) sees one policy
//! version; see `enforcer-common` for the layouts.

use aya_ebpf::maps::lpm_trie::Key;
use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_CELL, ANY_PEER, CELL_F_BY_SOURCE, CELL_UNLISTED, Config,
    EP_F_HAS_V4, EP_F_HAS_V6, EP_F_HOST, EP_F_OWN_PEER_V4, EP_F_OWN_PEER_V6, EndpointInfo,
    EndpointKey, FAMILY_V4, FrontendKey, GENERATIONS, PEER_F_LOCAL_ENDPOINT, PeerInfo, PeerKeyV4,
    PeerKeyV6, PortKey, REASON_ALLOW_POLICY, REASON_DENY_POLICY, SOURCE_PORT_KEY_FIXED_BITS,
    SourcePortKey, Verdict, VerdictKey,
};

use crate::{
    Drop,
    debug_log::{self, VerdictLog},
    maps::{
        ENF_CONFIG, ENF_ENDPOINTS, ENF_FRONTENDS, ENF_PEERS_V4, ENF_PEERS_V6, ENF_PORTS,
        ENF_SOURCE_PORTS, ENF_VERDICTS,
    },
    observe::{self, Report},
    packet::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, Packet},
};

/// `Config[0]`. All zeros (`live_gens == 0`) means no policy loaded: drop.
#[inline(always)]
pub fn config() -> Result<Config, Drop> {
    let cfg = *ENF_CONFIG.get(0).ok_or(Drop::MapError)?;
    if cfg.live_gens == 0 {
        return Err(Drop::NoPolicyLoaded);
    }
    if cfg.active_gen >= GENERATIONS {
        return Err(Drop::MapError);
    }
    Ok(cfg)
}

#[inline(always)]
pub fn endpoint(generation: u32, ifindex: u32) -> Option<EndpointInfo> {
    let key = EndpointKey {
        generation,
        ifindex,
    };
    // SAFETY: a copy of the value is taken at once (only the agent writes this map).
    unsafe { ENF_ENDPOINTS.get(key) }.copied()
}

/// The endpoint entry of `ifindex` in `generation`, read in place: for the out-of-line
/// helpers whose stack frame adds to their caller's (a copy costs 32 bytes there).
#[inline(always)]
pub fn endpoint_in_place(generation: u32, ifindex: u32) -> Option<&'static EndpointInfo> {
    let key = EndpointKey {
        generation,
        ifindex,
    };
    // SAFETY: a reference into the map value, read while this program runs. The agent
    // rewrites a generation's entries only after the generation left `live_gens` and an
    // RCU grace period passed (`dataplane/rcu.rs`), so no running program reads them.
    unsafe { ENF_ENDPOINTS.get(key) }
}

/// Whether the packet's source is workload endpoint `ep`'s own address of its family
/// (never for a host endpoint, whose entry names no address).
#[inline(always)]
pub fn is_own_source(ep: &EndpointInfo, pkt: &Packet) -> bool {
    if ep.flags & EP_F_HOST != 0 {
        return false;
    }
    if pkt.family == FAMILY_V4 {
        ep.flags & EP_F_HAS_V4 != 0 && pkt.src[..4] == ep.ipv4 && pkt.src[4..] == [0; 12]
    } else {
        ep.flags & EP_F_HAS_V6 != 0 && crate::packet::addr_eq(&ep.ipv6, &pkt.src)
    }
}

/// The peer entry of workload `ep`'s own address of `family`, copied into its endpoint
/// entry by the agent (`EP_F_OWN_PEER_*`, written only for a `/32` (`/128`) entry that
/// names the endpoint's interface `ifindex`, with exactly `PEER_F_LOCAL_ENDPOINT` and no
/// host class): what [`peer`] would answer for the address, without the trie walk.
/// `None` when the endpoint entry does not carry it.
#[inline(always)]
pub fn own_peer(ep: &EndpointInfo, family: u8, ifindex: u32) -> Option<PeerInfo> {
    let (flag, class) = if family == FAMILY_V4 {
        (EP_F_OWN_PEER_V4, ep.own_class_v4)
    } else {
        (EP_F_OWN_PEER_V6, ep.own_class_v6)
    };
    if ep.flags & flag == 0 {
        return None;
    }
    Some(PeerInfo {
        class,
        flags: PEER_F_LOCAL_ENDPOINT,
        ifindex,
        host_class: 0,
    })
}

/// Longest-prefix match of `addr` in the generation's peer trie. Every generation has a
/// `/0` per family, so a miss is a map error.
#[inline(always)]
pub fn peer(generation: u32, family: u8, addr: &[u8; 16]) -> Result<PeerInfo, Drop> {
    let found = if family == FAMILY_V4 {
        let key = Key::new(
            8 + 32,
            PeerKeyV4::new(generation as u8, [addr[0], addr[1], addr[2], addr[3]]),
        );
        ENF_PEERS_V4.get(&key).copied()
    } else {
        let key = Key::new(8 + 128, PeerKeyV6::new(generation as u8, *addr));
        ENF_PEERS_V6.get(&key).copied()
    };
    found.ok_or(Drop::MapError)
}

/// Whether the packet's destination, one of the node's own addresses, is a Service
/// front-end on its port (a node port, a host port): see `FrontendKey`.
#[inline(always)]
pub fn is_frontend_port(generation: u32, pkt: &Packet) -> bool {
    if !matches!(
        pkt.proto,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
    ) {
        return false;
    }
    let key = FrontendKey {
        generation: generation as u8,
        proto: pkt.proto,
        port: pkt.dport,
    };
    // SAFETY: only presence is read.
    unsafe { ENF_FRONTENDS.get(key) }.is_some()
}

/// The packet's cell: protocol × destination port (ICMP: type and code), and, for a
/// protocol some rule tests the source port of ([`CELL_F_BY_SOURCE`] in the
/// `ENF_PORTS` value), × source port. A flagged value without its source entry means
/// the maps are inconsistent: fail closed.
#[inline(always)]
pub fn cell(generation: u32, pkt: &Packet) -> Result<u32, Drop> {
    let key = Key::new(
        32,
        PortKey {
            generation: generation as u8,
            proto: pkt.proto,
            port: pkt.cell_port().to_be_bytes(),
        },
    );
    let dst_cell = ENF_PORTS.get(&key).copied().unwrap_or(CELL_UNLISTED);
    if dst_cell & CELL_F_BY_SOURCE == 0 {
        return Ok(dst_cell);
    }
    source_cell(generation, dst_cell, pkt.sport)
}

/// The `ENF_SOURCE_PORTS` step of [`cell`], out of line: only policies with source
/// ports pay for its stack.
#[inline(never)]
fn source_cell(generation: u32, dst_cell: u32, sport: u16) -> Result<u32, Drop> {
    let key = Key::new(
        SOURCE_PORT_KEY_FIXED_BITS + 16,
        SourcePortKey {
            generation: generation as u8,
            _pad: [0; 3],
            dst_cell,
            port: sport.to_be_bytes(),
            _pad2: [0; 2],
        },
    );
    ENF_SOURCE_PORTS.get(&key).copied().ok_or(Drop::MapError)
}

#[inline(always)]
fn verdict_at(key: &VerdictKey) -> Option<Verdict> {
    // SAFETY: a copy of the value is taken at once (only the agent writes this map).
    unsafe { ENF_VERDICTS.get(key) }.copied()
}

/// The verdict for (profile, direction, peer class, cell). Precedence, first hit wins:
///
/// 1. `(peer_class, cell)`: exact;
/// 2. `(peer_class, ANY_CELL)`: the peer is treated alike on every cell;
/// 3. `(ANY_PEER, cell)`: the cell is treated alike for every other peer;
/// 4. `(ANY_PEER, ANY_CELL)`: the profile's default, always written by the compiler.
///
/// No entry at all means the maps are inconsistent: fail closed.
#[inline(always)]
pub fn verdict(
    generation: u32,
    dir: u8,
    profile: u32,
    peer_class: u32,
    cell: u32,
) -> Result<Verdict, Drop> {
    let mut key = VerdictKey {
        generation: generation as u8,
        dir,
        _pad: [0; 2],
        profile,
        peer_class,
        cell,
    };
    if let Some(v) = verdict_at(&key) {
        return Ok(v);
    }
    key.cell = ANY_CELL;
    if let Some(v) = verdict_at(&key) {
        return Ok(v);
    }
    key.peer_class = ANY_PEER;
    key.cell = cell;
    if let Some(v) = verdict_at(&key) {
        return Ok(v);
    }
    key.cell = ANY_CELL;
    verdict_at(&key).ok_or(Drop::MapError)
}

/// What a verdict means for the packet: `Ok(true)` allow, `Ok(false)` deny by policy, an
/// unknown action is a map error (fail closed).
#[inline(always)]
pub fn allows(v: &Verdict) -> Result<bool, Drop> {
    match v.action {
        ACTION_ALLOW => Ok(true),
        ACTION_DENY => Ok(false),
        _ => Err(Drop::MapError),
    }
}

/// Who is judged: an endpoint's profile in one direction, named in events by its
/// interface and endpoint id, at the program `hook` (`HOOK_*`).
pub struct Judged {
    pub generation: u32,
    pub dir: u8,
    pub profile: u32,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub hook: u32,
}

/// Looks the verdict up, counts its rule and emits the events it calls for (see
/// `observe::report`), and, in the debug-log variants (`DEBUG`), the debug log record
/// when it is on. Returns whether the packet is allowed.
#[inline(always)]
pub fn judge<const DEBUG: bool>(
    cfg: &Config,
    pkt: &Packet,
    who: &Judged,
    peer_class: u32,
    cell: u32,
) -> Result<bool, Drop> {
    let v = verdict(who.generation, who.dir, who.profile, peer_class, cell)?;
    let allow = allows(&v)?;
    if DEBUG && debug_log::enabled(cfg) {
        debug_log::note(
            pkt,
            &VerdictLog {
                dir: who.dir,
                action: v.action,
                endpoint_id: who.endpoint_id,
                policy: v.policy,
                rule: v.rule,
            },
        );
    }
    observe::report(
        pkt,
        &v,
        &Report {
            flags: cfg.flags,
            generation: who.generation,
            ifindex: who.ifindex,
            endpoint_id: who.endpoint_id,
            reason: if allow {
                REASON_ALLOW_POLICY
            } else {
                REASON_DENY_POLICY
            },
            dir: who.dir,
            hook: who.hook as u8,
        },
    );
    Ok(allow)
}

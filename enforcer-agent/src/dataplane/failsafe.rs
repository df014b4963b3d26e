//! Failsafe ports of host interfaces (`ENF_FAILSAFE`): configuration, not policy, so
//! not generation-keyed; written whole when the agent starts.

use aya::maps::{HashMap as BpfHashMap, MapData};

use enforcer_common::{
    DIR_EGRESS, DIR_INGRESS, FAILSAFE_INBOUND_DEFAULT, FAILSAFE_OUTBOUND_DEFAULT, FailsafeKey,
    MAP_FAILSAFE,
};

use super::writer::{WriterError, take};

/// Inbound and outbound failsafe ports as (protocol, port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failsafe {
    pub inbound: Vec<(u8, u16)>,
    pub outbound: Vec<(u8, u16)>,
}

impl Default for Failsafe {
    /// Calico's defaults.
    fn default() -> Self {
        Self {
            inbound: FAILSAFE_INBOUND_DEFAULT.to_vec(),
            outbound: FAILSAFE_OUTBOUND_DEFAULT.to_vec(),
        }
    }
}

/// Parses Calico's `failsafeInboundHostPorts` spelling: `tcp:22,udp:68` (a bare number
/// is TCP); `none` or an empty string disables.
pub fn parse_ports(text: &str) -> Option<Vec<(u8, u16)>> {
    if text.trim().is_empty() || text.trim() == "none" {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|item| {
            let item = item.trim();
            let (proto, port) = item.split_once(':').unwrap_or(("tcp", item));
            let proto = crate::policy::parse_protocol(proto)?;
            Some((proto, port.parse().ok()?))
        })
        .collect()
}

/// Replaces the map's content with `failsafe`.
pub fn write(ebpf: &mut aya::Ebpf, failsafe: &Failsafe) -> Result<(), WriterError> {
    let mut map: BpfHashMap<MapData, FailsafeKey, u32> = take(ebpf, MAP_FAILSAFE)?;
    let want: Vec<FailsafeKey> = failsafe
        .inbound
        .iter()
        .map(|(p, port)| (DIR_INGRESS, *p, *port))
        .chain(
            failsafe
                .outbound
                .iter()
                .map(|(p, port)| (DIR_EGRESS, *p, *port)),
        )
        .map(|(dir, proto, port)| FailsafeKey { dir, proto, port })
        .collect();
    let old: Vec<FailsafeKey> = map.keys().filter_map(Result::ok).collect();
    for k in old.iter().filter(|k| !want.contains(k)) {
        let _ = map.remove(k);
    }
    for k in &want {
        map.insert(k, 1, 0).map_err(|source| WriterError::Map {
            map: MAP_FAILSAFE,
            op: "insert",
            source,
        })?;
    }
    Ok(())
}

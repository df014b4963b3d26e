//! The follow-up step of an allowed packet: with its conntrack entry left in place, a
//! packet of the same flow travels back and must pass or be judged exactly as the
//! related-ICMP semantics say (`docs/architecture.md`, "Related ICMP"):
//!
//! - an ICMP error quoting the flow's packet, back to the initiator (sent by the
//!   responder or by a router on the path), or quoting a reply, to the responder:
//!   passes on every local leg, creating and refreshing nothing, when the quote
//!   parses (its IP header, IPv6 extension headers walked, and 8 bytes of L4 header;
//!   a quoted ICMP message only if it is an echo); otherwise it is new traffic, judged
//!   by policy with every check of a first packet;
//! - an error travelling the wrong way (to the quoted packet's destination): new
//!   traffic, judged by policy;
//! - the echo reply of an echo request: passes on every local leg as a reply.

use std::collections::BTreeMap;
use std::net::IpAddr;

use enforcer::eval::{self, Packet};
use enforcer::policy::Direction;
use enforcer::testkit::arbitrary;
use enforcer_common::{CT_F_REPLIED, CtKey, CtValue};

use super::frame::{echo_id, frame, icmp_error, ip_packet, is_echo_request, mix};
use super::{Applied, Bench, Mismatch, Stats, TC_ACT_OK};
use crate::bpf::dataplane::{Hook, ct_key, test_run};
use crate::bpf::packet::{ACK, V4, icmp, sctp, tcp, udp, v6};

/// Errors a router or host sends about a packet, per family: (type, code).
const V4_ERRORS: [(u8, u8); 4] = [(3, 4), (3, 3), (11, 0), (12, 0)];
const V6_ERRORS: [(u8, u8); 4] = [(2, 0), (1, 4), (3, 0), (4, 0)];

/// What follows the flow's first packet.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// An error about the flow's packet, to its initiator, from `from`.
    ErrorToInitiator { from: IpAddr },
    /// An error about a reply, to the responder, from `from`.
    ErrorToResponder { from: IpAddr },
    /// An error about the flow's packet sent to the packet's destination.
    Misdirected { from: IpAddr },
    /// The echo reply to an echo request.
    EchoReply,
}

/// The L4 bytes of the reply to `packet` (ports swapped; an echo's reply with its id).
fn reply_l4(packet: &Packet) -> Vec<u8> {
    match packet.proto {
        6 => tcp(packet.dst_port, packet.src_port, ACK),
        17 | 136 => udp(packet.dst_port, packet.src_port),
        132 => sctp(packet.dst_port, packet.src_port),
        1 | 58 => {
            let v4 = packet.src.is_ipv4();
            let kind = match (v4, packet.icmp_type) {
                (true, 8) => 0,
                (true, 0) => 8,
                (false, 128) => 129,
                (false, 129) => 128,
                (_, other) => other,
            };
            icmp(kind, 0, echo_id(packet))
        }
        _ => vec![0; 8],
    }
}

/// An ICMP message (not an echo) quotes nothing the related check accepts.
fn quotes_echo_or_no_icmp(packet: &Packet) -> bool {
    let echo = if packet.src.is_ipv4() {
        [0, 8]
    } else {
        [129, 128]
    };
    !enforcer::policy::is_icmp(packet.proto) || echo.contains(&packet.icmp_type)
}

impl Bench {
    /// The follow-up step of `packet`, which every local leg allowed (its conntrack
    /// entry is the only one); returns the number of cases (legs) judged. The caller
    /// clears conntrack and events afterwards.
    pub(super) fn check_follow_up(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        stats: &mut Stats,
    ) -> Result<u64, Mismatch> {
        // Bits of their own (the frame and the choice to follow up use `mix` itself).
        let h = mix(packet).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
        let routers: Vec<IpAddr> = applied
            .cluster
            .endpoints
            .iter()
            .flat_map(|e| e.ips.iter().copied())
            .chain(
                arbitrary::EXTERNAL
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok()),
            )
            .filter(|a| a.is_ipv4() == packet.src.is_ipv4() && *a != packet.src && *a != packet.dst)
            .collect();
        let router = routers[(h >> 8) as usize % routers.len()];
        let step = match h % 5 {
            0 => Step::ErrorToInitiator { from: packet.dst },
            1 => Step::ErrorToInitiator { from: router },
            2 => Step::ErrorToResponder { from: packet.src },
            3 => Step::ErrorToResponder { from: router },
            _ if is_echo_request(packet) => Step::EchoReply,
            _ => Step::Misdirected { from: router },
        };
        if let Step::EchoReply = step {
            return self.check_reply(applied, packet, stats);
        }
        let truncate = (h >> 24).is_multiple_of(5);
        let (from, to, mut quote, parses) = match step {
            Step::ErrorToInitiator { from } | Step::Misdirected { from } => {
                // The packet as it was sent, extension headers included (walked).
                let as_sent = frame(packet).0[14..].to_vec();
                let to = match step {
                    Step::Misdirected { .. } => packet.dst,
                    _ => packet.src,
                };
                (from, to, as_sent, quotes_echo_or_no_icmp(packet))
            }
            Step::ErrorToResponder { from } => {
                let reply = ip_packet(packet.dst, packet.src, packet.proto, &reply_l4(packet));
                (from, packet.dst, reply, quotes_echo_or_no_icmp(packet))
            }
            Step::EchoReply => unreachable!("handled above"),
        };
        if truncate {
            // The IP header (and options) and 4 bytes of L4 header.
            let header = if packet.src.is_ipv4() {
                usize::from(quote[0] & 0x0f) * 4
            } else {
                40
            };
            quote.truncate(header + 4);
        }
        let related = parses && !truncate && !matches!(step, Step::Misdirected { .. });
        // An error type whose tuple is not the flow's own (the flow's packet may be an
        // error sent the same way, which would make the error a packet of that flow).
        let errors = if packet.src.is_ipv4() {
            V4_ERRORS
        } else {
            V6_ERRORS
        };
        let flow_key = frame(packet).1;
        let proto = icmp_of(packet.src);
        let key_of = |(kind, code): (u8, u8)| {
            let message = u16::from(kind) << 8 | u16::from(code);
            ct_key(from, to, message, message, proto)
        };
        let first = (h >> 16) as usize;
        let Some((kind, code)) = (0..errors.len())
            .map(|i| errors[(first + i) % errors.len()])
            .find(|e| key_of(*e) != flow_key)
        else {
            unreachable!("four error types have four tuples");
        };
        let error = Packet {
            src: from,
            dst: to,
            proto,
            src_port: 0,
            dst_port: 0,
            icmp_type: kind,
            icmp_code: code,
        };
        let l4 = icmp_error(kind, code, &quote);
        let bytes = eth_ip(from, to, error.proto, &l4);
        let key = key_of((kind, code));
        let what = format!(
            "{step:?}: {error:?} quoting {} bytes{}",
            quote.len(),
            if truncate { " (truncated)" } else { "" }
        );
        if related {
            stats.bump("follow-up: related error passed".to_owned());
            self.expect_passes(applied, &error, &bytes, &what, false, stats)
        } else {
            stats.bump("follow-up: error judged as new traffic".to_owned());
            self.check_legs(applied, &error, &bytes, &key, stats)
                .map_err(|m| Mismatch {
                    check: m.check,
                    detail: format!("after the allowed {packet:?}, {what}:\n{}", m.detail),
                })
        }
    }

    /// The echo reply to `packet` (an allowed echo request) passes as a reply.
    fn check_reply(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        stats: &mut Stats,
    ) -> Result<u64, Mismatch> {
        let reply = Packet {
            src: packet.dst,
            dst: packet.src,
            icmp_type: if packet.src.is_ipv4() { 0 } else { 129 },
            ..*packet
        };
        let bytes = eth_ip(reply.src, reply.dst, reply.proto, &reply_l4(packet));
        stats.bump("follow-up: echo reply passed".to_owned());
        let what = format!("the echo reply {reply:?} (id {})", echo_id(packet));
        self.expect_passes(applied, &reply, &bytes, &what, true, stats)
    }

    /// Every local leg of `packet` (egress first) passes on conntrack alone: `TC_ACT_OK`,
    /// no event, conntrack unchanged (a `reply` marks its flow `CT_F_REPLIED` and
    /// refreshes it; a related error changes nothing).
    fn expect_passes(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        bytes: &[u8],
        what: &str,
        reply: bool,
        stats: &mut Stats,
    ) -> Result<u64, Mismatch> {
        let legs = [
            (Direction::Egress, packet.src, Hook::PodEgress),
            (Direction::Ingress, packet.dst, Hook::PodIngress),
        ];
        let mut cases = 0;
        for (dir, addr, hook) in legs {
            let Some(ep) = applied.local_endpoint(addr) else {
                continue;
            };
            let before = self.conntrack_snapshot();
            let run = test_run(&self.ebpf, hook, bytes, applied.local[&ep.iface], 0);
            let events = std::iter::from_fn(|| self.events.next().map(|_| ())).count();
            let after = self.conntrack_snapshot();
            let want: BTreeMap<Vec<u8>, CtValue> = before
                .iter()
                .map(|(k, v)| {
                    let mut v = *v;
                    if reply {
                        v.flags |= CT_F_REPLIED;
                        v.last_seen_ns = after.get(k).map_or(v.last_seen_ns, |a| a.last_seen_ns);
                    }
                    (k.clone(), v)
                })
                .collect();
            if run.action != TC_ACT_OK || events != 0 || after != want {
                let flow = eval::evaluate(&applied.cluster, packet);
                return Err(Mismatch {
                    check: "related",
                    detail: format!(
                        "related: {what}\n  {dir:?} leg at {} ({}): TC action {} (want {TC_ACT_OK}), {events} events (want 0)\n  conntrack before: {before:?}\n  conntrack after: {after:?}\n  (as new traffic the evaluator would say {flow:?})",
                        ep.workload(),
                        ep.iface,
                        run.action
                    ),
                });
            }
            cases += 1;
            stats.cases += 1;
        }
        Ok(cases)
    }

    fn conntrack_snapshot(&self) -> BTreeMap<Vec<u8>, CtValue> {
        self.conntrack
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v): (CtKey, CtValue)| (bytemuck::bytes_of(&k).to_vec(), v))
            .collect()
    }
}

/// The frame of an IP packet with no options or extension headers.
fn eth_ip(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => V4::new(s, d, proto).frame(l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => v6(s, d, &[], proto, l4),
        _ => panic!("mixed-family packet {src} → {dst}"),
    }
}

/// The ICMP protocol of an address's family.
fn icmp_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 1 } else { 58 }
}

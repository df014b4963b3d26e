//! Connection tracking: the flow table's key, value, flags and idle timeouts.

// ---------------------------------------------------------------------------------
// CONNTRACK: LRU_HASH CtKey → CtValue.
// ---------------------------------------------------------------------------------

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A directional 5-tuple. IPv4 addresses use the first 4 bytes, the rest zero.
/// Addresses are in network order, ports in host order (the port number as an integer).
///
/// For ICMP echo the request uses `(sport = id, dport = 0)` and the reply
/// `(sport = 0, dport = id)`, so a reply's reversed tuple is its request's tuple. Any
/// other ICMP message uses `(type << 8 | code, type << 8 | code)`: one message type
/// never rides on another's entry, and such a message is never a reply (only echo
/// replies are; ICMP errors are related to the flow they quote instead).
///
/// Aligned to 8 so that [`ct_tag`] reads it as five 64-bit words (the layout is the
/// same: every field already sits where it would).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CtKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<CtKey>() == 40);

/// State of a flow, stored under the tuple of its first packet (the forward tuple).
/// A packet whose reversed tuple finds an entry with both legs approved is a reply.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CtValue {
    /// `bpf_ktime_get_ns` of the last packet in either direction.
    pub last_seen_ns: u64,
    /// `CT_F_*` flags in the low 16 bits ([`CT_FLAGS_MASK`]); the tuple's tag
    /// ([`ct_tag`]) in the high 16 bits. A program honours an entry only when its tag is
    /// the tag of the tuple it looked up (see [`ct_tag`] for why).
    pub flags: u32,
    /// The generation that judged the flow's first leg, stamped with its epoch
    /// ([`ct_stamp`](crate::ct_stamp)); the second leg uses it too while it is live
    /// and holds that epoch ([`stamped_slot`](crate::stamped_slot)), so both legs of a
    /// flow see the same policy version, never a later one that reused the slot.
    pub generation: u32,
}
const _: () = assert!(size_of::<CtValue>() == 16);

/// The bits of [`CtValue::flags`] that hold `CT_F_*` flags; the rest hold the tag.
pub const CT_FLAGS_MASK: u32 = 0xffff;

/// The tag of a tuple, in the bits of [`CtValue::flags`] above [`CT_FLAGS_MASK`].
///
/// Why: the programs write an entry they looked up in place, through the pointer the
/// lookup returned (an LRU map insert costs a free node, a copy and a second hash). An
/// element of an LRU hash is reused as soon as it is evicted or replaced, without an
/// RCU grace period, so between a lookup and a write on one CPU, another CPU may have
/// given the element to another tuple. The tag in the written word says which tuple
/// the write was for, and a program treats an entry whose tag is not its tuple's as
/// absent: a stale write can only make another flow's entry useless (its packets are
/// judged by policy again), never lend it approvals. The same check covers a reader
/// whose element was reused between its lookup and its copy. Flags and tag are one
/// `u32`, so a reader never sees one without the other.
///
/// A mix of the whole tuple: its five 64-bit words (source, destination, then ports,
/// protocol and family), each multiplied by its own odd constant, combined by XOR and folded to
/// 16 bits. A tuple and its reverse, or two tuples that differ in one field, get
/// different tags but for chance (about 1 in 65,536), and that chance matters only for
/// an element reused within one program run. Cheap on purpose (five loads, five
/// multiplications): every lookup computes it, and its instructions count against
/// each program's verifier budget on every path through the lookup.
#[inline]
pub const fn ct_tag(key: &CtKey) -> u32 {
    // SAFETY: `CtKey` is 40 bytes of plain integers without implicit padding (`_pad`
    // is a field), so every byte is initialised and any bit pattern is a valid u64.
    let w: [u64; 5] = unsafe { core::mem::transmute::<CtKey, [u64; 5]>(*key) };
    let mut h = w[0].wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ w[1].wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ w[2].wrapping_mul(0x1656_67b1_9e37_79f9)
        ^ w[3].wrapping_mul(0x85eb_ca77_c2b2_ae63)
        ^ w[4].wrapping_mul(0x27d4_eb2f_1656_67c5);
    h ^= h >> 32;
    h ^= h >> 16;
    ((h as u32) & CT_FLAGS_MASK) << 16
}

impl CtValue {
    /// An entry for `key`: `flags` (`CT_F_*`) with the key's tag.
    #[inline]
    pub const fn for_key(key: &CtKey, last_seen_ns: u64, flags: u32, generation: u32) -> Self {
        Self {
            last_seen_ns,
            flags: (flags & CT_FLAGS_MASK) | ct_tag(key),
            generation,
        }
    }

    /// Whether the entry was written for `key` (its tag is the key's).
    #[inline]
    pub const fn is_for(&self, key: &CtKey) -> bool {
        self.flags & !CT_FLAGS_MASK == ct_tag(key)
    }

    /// The `CT_F_*` flags, without the tag.
    #[inline]
    pub const fn ct_flags(&self) -> u32 {
        self.flags & CT_FLAGS_MASK
    }
}

/// The source endpoint's egress policy allowed the flow (or the source is not ours).
pub const CT_F_EGRESS_OK: u32 = 1 << 0;
/// The destination endpoint's ingress policy allowed the flow (or it is not ours).
pub const CT_F_INGRESS_OK: u32 = 1 << 1;
/// Created for a packet to a Service VIP: the egress leg is judged after DNAT.
pub const CT_F_DEFERRED: u32 = 1 << 2;
/// The TCP connection is closing (an RST, or a FIN from each side): the entry expires
/// soon ([`CT_TIMEOUT_TCP_CLOSING_NS`]).
pub const CT_F_CLOSING: u32 = 1 << 3;
/// Both legs approved: replies pass.
pub const CT_F_ESTABLISHED: u32 = CT_F_EGRESS_OK | CT_F_INGRESS_OK;
/// The flow entered through a host endpoint and its ingress chain allowed it: replies
/// leave through the host egress hook, later packets skip XDP's preDNAT denies.
pub const CT_F_HOST_INGRESS_OK: u32 = 1 << 4;
/// The flow left through a host endpoint and its egress chain allowed it (the node or
/// a pod opened it): replies pass the host ingress hooks, XDP included.
pub const CT_F_HOST_EGRESS_OK: u32 = 1 << 5;
/// A TCP FIN was seen from the flow's initiator (forward direction).
pub const CT_F_FIN_FORWARD: u32 = 1 << 6;
/// A TCP FIN was seen from the responder (reverse direction).
pub const CT_F_FIN_REVERSE: u32 = 1 << 7;
/// A packet of the reverse direction passed as a reply: the peer answered. Until then
/// a TCP entry keeps the handshake timeout even with both legs approved, so that
/// unanswered SYNs (to a peer that does not exist, say) never hold an entry for the
/// established timeout.
pub const CT_F_REPLIED: u32 = 1 << 8;

/// Idle timeouts (Calico's eBPF dataplane uses the same orders of magnitude). TCP:
/// [`CT_TIMEOUT_TCP_SYN_NS`] until both legs are approved *and* the peer replied,
/// [`CT_TIMEOUT_TCP_ESTABLISHED_NS`] then, [`CT_TIMEOUT_TCP_CLOSING_NS`] once closing.
pub const CT_TIMEOUT_TCP_SYN_NS: u64 = 20_000_000_000;
pub const CT_TIMEOUT_TCP_ESTABLISHED_NS: u64 = 3_600_000_000_000;
pub const CT_TIMEOUT_TCP_CLOSING_NS: u64 = 30_000_000_000;
pub const CT_TIMEOUT_UDP_NS: u64 = 60_000_000_000;
pub const CT_TIMEOUT_ICMP_NS: u64 = 5_000_000_000;
pub const CT_TIMEOUT_OTHER_NS: u64 = 600_000_000_000;

#[cfg(test)]
mod tests {
    use super::{CT_F_EGRESS_OK, CT_F_REPLIED, CT_FLAGS_MASK, CtKey, CtValue, ct_tag};

    fn key(sport: u16, dport: u16) -> CtKey {
        let mut src = [0; 16];
        src[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut dst = [0; 16];
        dst[..4].copy_from_slice(&[198, 18, 0, 2]);
        CtKey {
            src,
            dst,
            sport,
            dport,
            proto: 6,
            family: 4,
            _pad: [0; 2],
        }
    }

    fn reversed(k: &CtKey) -> CtKey {
        CtKey {
            src: k.dst,
            dst: k.src,
            sport: k.dport,
            dport: k.sport,
            ..*k
        }
    }

    #[test]
    fn tags_tell_a_tuple_from_its_reverse_and_its_port_neighbours() {
        // Every tuple of 1,000 source ports: none shares its tag with its reverse or
        // with the tuple of the next port (the cases a stale write most plausibly
        // meets: the same two addresses).
        for sport in 40_000..41_000 {
            let k = key(sport, 80);
            assert_eq!(
                ct_tag(&k) & CT_FLAGS_MASK,
                0,
                "the tag stays out of the flags"
            );
            assert_ne!(ct_tag(&k), ct_tag(&reversed(&k)), "{sport}");
            assert_ne!(ct_tag(&k), ct_tag(&key(sport + 1, 80)), "{sport}");
        }
    }

    #[test]
    fn an_entry_is_for_its_own_key_only_and_keeps_its_flags() {
        let k = key(40_000, 80);
        let v = CtValue::for_key(&k, 7, CT_F_EGRESS_OK | CT_F_REPLIED, 3);
        assert!(v.is_for(&k));
        assert!(!v.is_for(&key(40_000, 443)));
        assert_eq!(v.ct_flags(), CT_F_EGRESS_OK | CT_F_REPLIED);
        assert_eq!((v.last_seen_ns, v.generation), (7, 3));
        // Flags that carry another tag (a value copied from elsewhere) are re-tagged.
        let other = CtValue::for_key(&key(1, 2), 7, CT_F_EGRESS_OK, 3);
        let again = CtValue::for_key(&k, 7, other.flags, 3);
        assert!(again.is_for(&k));
        assert_eq!(again.ct_flags(), CT_F_EGRESS_OK);
    }
}

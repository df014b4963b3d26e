//! iptables and nftables translations (placeholder while being written).

//! CIDRs as Calico reads them (libcalico-go `ParseCIDROrIP`, then masked to the network
//! as its rule conversion does with `normalizeIPNet`).

/// Parses a CIDR as Calico does: a bare address means a host prefix, and host bits
/// below the prefix are cleared (`1.2.3.4/16` → `1.2.0.0/16`).
pub fn parse_cidr(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(addr) = text.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(addr));
    }
    Err(format!(
        "invalid CIDR {text:?}: expected an address with an optional /prefix, e.g. 10.0.0.0/8 or fd00::/64"
    ))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_like_calico() {
        assert_eq!(parse_cidr("1.2.3.4/16").unwrap().to_string(), "1.2.0.0/16");
        assert_eq!(parse_cidr("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(parse_cidr("10.0.0.0/33").is_err());
    }
}

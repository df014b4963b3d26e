//! Rules on the source port in the lab (issue 13): `source.ports` and
//! `source.notPorts` with numbers, a range and a named port (of the source endpoint),
//! TCP and UDP, on ingress and on egress, judged by the programs on real packets sent
//! from chosen source ports (`lab probe --source-port`). Every probe is a new 5-tuple,
//! so no verdict comes from a flow already approved.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_source_ports`.

use enforcer_tests::lab::{LabGuard, fixture, require_root, serial};

/// (from, server port, protocol, source port, expected to connect).
type Row<'a> = (&'a str, u16, &'a str, u16, bool);

/// Probes every row to `sp/server`; all wrong rows are reported. A denied probe must
/// have timed out (dropped), not failed for another reason (a source port that did not
/// bind would prove nothing).
fn expect(lab: &LabGuard, what: &str, rows: &[Row<'_>]) {
    let mut wrong = Vec::new();
    for &(from, port, protocol, sport, want) in rows {
        let (port_arg, sport_arg) = (port.to_string(), sport.to_string());
        let r = lab.probe(&[
            "--from",
            from,
            "--to",
            "sp/server",
            "--port",
            &port_arg,
            "--protocol",
            protocol,
            "--source-port",
            &sport_arg,
            "--timeout-ms",
            "700",
        ]);
        assert_eq!(r.len(), 1, "one probe expected: {r:?}");
        let got = &r[0];
        let expected = if want { "connected" } else { "timeout" };
        if got.result != expected {
            wrong.push(format!(
                "{from}:{sport} -> sp/server:{port}/{protocol}: expected {expected}, got {}",
                got.result
            ));
        }
    }
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

#[test]
fn source_ports_numbers_ranges_and_named_ports() {
    require_root();
    let _serial = serial();
    let lab = LabGuard::new("sp");
    lab.up(&[&fixture("calico/source-ports.yaml")], true);
    expect(
        &lab,
        "ingress by source port",
        &[
            // In the range, to a listed destination port.
            ("sp/client", 8080, "TCP", 1200, true),
            // The Deny on 1500 comes first.
            ("sp/client", 8080, "TCP", 1500, false),
            ("sp/client", 8080, "TCP", 1999, true),
            // Past the range.
            ("sp/client", 8080, "TCP", 2000, false),
            ("sp/client", 8080, "TCP", 999, false),
            // The client's named port `src-port` (7777); `other` declares none.
            ("sp/client", 8080, "TCP", 7777, true),
            ("sp/other", 8080, "TCP", 7777, false),
            ("sp/other", 8080, "TCP", 1201, true),
            // UDP: every source port but 5300-5399.
            ("sp/client", 8080, "UDP", 5350, false),
            ("sp/client", 8080, "UDP", 5300, false),
            ("sp/client", 8080, "UDP", 5400, true),
            ("sp/other", 8080, "UDP", 5299, true),
        ],
    );
    // Egress: the client may send TCP from its own named port only (new tuples: the
    // server's other port).
    lab.apply(&fixture("calico/source-ports-egress.yaml"));
    expect(
        &lab,
        "egress by the client's named source port",
        &[
            ("sp/client", 8081, "TCP", 7777, true),
            ("sp/client", 8081, "TCP", 1202, false),
            ("sp/other", 8081, "TCP", 1203, true),
            ("sp/client", 8081, "UDP", 5401, true),
        ],
    );
}

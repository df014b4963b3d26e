//! The verifier's budget (privileged: run as root): every program of the object loads,
//! and each production program stays far below the verifier's limit of one million
//! processed instructions, so a change that multiplies the states the verifier
//! explores fails here, in dev and in release (the verifier sees different code), not
//! on a node at load time.
//!
//! Prints each program's processed-instruction count (`verified_insns`, what
//! `bpftool prog show` calls `verified_insns`) and the size of its translated code.
//! `ENFORCER_BPF_OBJECT=<path>` measures another object file instead of the embedded
//! one (e.g. an older build), checking only that it loads.

use aya::{EbpfLoader, programs::Program};
use enforcer::dataplane::object::BPF_OBJECT;
use enforcer_common::{DEBUG_LOG_PROGRAMS, PROGRAMS};
use enforcer_tests::bpf::OrPanic as _;

/// The kernel's limit on processed instructions per program (`BPF_COMPLEXITY_LIMIT_INSNS`).
const VERIFIER_LIMIT: u32 = 1_000_000;
/// Ceiling for a production program: a quarter of the limit leaves room for the
/// verifier's behaviour to vary across kernels and compilers.
const PRODUCTION_BUDGET: u32 = VERIFIER_LIMIT / 4;

fn load(program: &mut Program) -> Result<(), aya::programs::ProgramError> {
    match program {
        Program::SchedClassifier(p) => p.load(),
        Program::Xdp(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        other => panic!("unexpected program type {:?}", other.prog_type()),
    }
}

#[test]
fn every_program_loads_within_the_verifier_budget() {
    let custom = std::env::var("ENFORCER_BPF_OBJECT").ok();
    let bytes;
    let object: &[u8] = if let Some(path) = &custom {
        bytes = std::fs::read(path).or_panic(path);
        &bytes
    } else {
        BPF_OBJECT
    };
    let mut ebpf = EbpfLoader::new()
        .load(object)
        .or_panic("loading the BPF object");
    let mut measured = Vec::new();
    for (name, program) in ebpf.programs_mut() {
        if let Err(e) = load(program) {
            panic!("verifier rejected {name}: {e:?}");
        }
        let info = program.info().or_panic("program info");
        let verified = info.verified_instruction_count().unwrap_or(0);
        let xlated = info.size_translated().unwrap_or(0) / 8;
        println!("{name:<16} verified_insns {verified:>8}  xlated_insns {xlated:>6}");
        measured.push((name.to_owned(), verified, xlated));
    }
    if custom.is_some() {
        return;
    }
    for (production, debug) in PROGRAMS {
        let found = |want: &str| {
            measured
                .iter()
                .find(|(n, _, _)| n == want)
                .map(|(_, verified, xlated)| (*verified, *xlated))
                .or_panic(&format!("program {want} in the object"))
        };
        let (verified, xlated) = found(production);
        assert!(
            verified > 0 && verified <= PRODUCTION_BUDGET,
            "{production}: {verified} processed instructions (budget {PRODUCTION_BUDGET})"
        );
        if let Some(debug) = debug {
            // Loaded at all means within the limit. The debug variant is the production
            // body plus its notes and the tail call: at least as much code. (Not as
            // many processed instructions: the verifier's pruning differs between two
            // programs, and the debug variant of `enf_host_xdp` verifies in half the
            // production program's count.)
            let (_, debug_xlated) = found(debug);
            assert!(
                debug_xlated >= xlated,
                "{debug} ({debug_xlated} instructions) is smaller than {production} ({xlated})"
            );
        }
    }
    for log in DEBUG_LOG_PROGRAMS {
        assert!(
            measured.iter().any(|(n, _, _)| n == log),
            "{log} missing from the object"
        );
    }
    assert_eq!(
        measured.len(),
        PROGRAMS
            .iter()
            .map(|(_, d)| 1 + usize::from(d.is_some()))
            .sum::<usize>()
            + DEBUG_LOG_PROGRAMS.len(),
        "programs in the object but not in enforcer_common::PROGRAMS: {measured:?}"
    );
}

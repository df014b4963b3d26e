//! The programs of the loaded object: which build ([`Variant`]), each by name and
//! type, and the debug-log variants' log programs (loaded and put in their program
//! arrays).

use aya::Ebpf;
use aya::maps::ProgramArray;
use aya::programs::{CgroupSkb, SchedClassifier, Xdp};

use enforcer_common::{
    MAP_DEBUG_TAIL_CGROUP, MAP_DEBUG_TAIL_TC, MAP_DEBUG_TAIL_XDP, PROG_HOST_XDP,
    PROG_HOST_XDP_DEBUG, PROG_LOG_CGROUP_DEBUG, PROG_LOG_TC_DEBUG, PROG_LOG_XDP_DEBUG,
};

use super::load_error::LoaderError;

/// Which build of the programs the agent loads and attaches: the production programs,
/// or their debug-log variants (`--bpf-debug-log`), which write an aya-log record per
/// verdict. Only one set is loaded: the other never goes through the verifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Production,
    DebugLog,
}

impl Variant {
    pub(super) fn pick(self, production: &'static str, debug: &'static str) -> &'static str {
        match self {
            Variant::Production => production,
            Variant::DebugLog => debug,
        }
    }

    /// The XDP program of this variant.
    pub fn host_xdp(self) -> &'static str {
        self.pick(PROG_HOST_XDP, PROG_HOST_XDP_DEBUG)
    }
}

/// Loads the log programs the debug-log variants tail-call, and puts them in
/// `ENF_DEBUG_TC` / `ENF_DEBUG_XDP` (which stay in the object, open for as long as the programs are:
/// the kernel empties a program array when its last user reference closes).
pub(super) fn load_debug_log_programs(ebpf: &mut Ebpf) -> Result<(), LoaderError> {
    let program_err = |program: &'static str, op: &'static str| {
        move |source| LoaderError::Program {
            program,
            op,
            source: Box::new(source),
        }
    };
    let tc = classifier(ebpf, PROG_LOG_TC_DEBUG)?;
    tc.load().map_err(program_err(PROG_LOG_TC_DEBUG, "load"))?;
    let tc_fd = tc
        .fd()
        .map_err(program_err(PROG_LOG_TC_DEBUG, "fd"))?
        .try_clone()
        .map_err(|e| program_err(PROG_LOG_TC_DEBUG, "fd")(e.into()))?;
    let program = PROG_LOG_XDP_DEBUG;
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(program_err(program, "type"))?;
    xdp.load().map_err(program_err(program, "load"))?;
    let xdp_fd = xdp
        .fd()
        .map_err(program_err(program, "fd"))?
        .try_clone()
        .map_err(|e| program_err(program, "fd")(e.into()))?;
    let program = PROG_LOG_CGROUP_DEBUG;
    let cg = cgroup_skb(ebpf, program)?;
    cg.load().map_err(program_err(program, "load"))?;
    let cg_fd = cg
        .fd()
        .map_err(program_err(program, "fd"))?
        .try_clone()
        .map_err(|e| program_err(program, "fd")(e.into()))?;
    for (map, fd) in [
        (MAP_DEBUG_TAIL_TC, tc_fd),
        (MAP_DEBUG_TAIL_XDP, xdp_fd),
        (MAP_DEBUG_TAIL_CGROUP, cg_fd),
    ] {
        let map_err = |op: &'static str| {
            move |source| LoaderError::DebugTail {
                map,
                op,
                source: Box::new(source),
            }
        };
        let found = ebpf.map_mut(map).ok_or(LoaderError::MissingMap { map })?;
        let mut tail = ProgramArray::try_from(found).map_err(map_err("open"))?;
        tail.set(0, &fd, 0)
            .map_err(map_err("set the log program"))?;
    }
    Ok(())
}

pub(super) fn xdp(ebpf: &mut Ebpf, variant: Variant) -> Result<&mut Xdp, LoaderError> {
    let program = variant.host_xdp();
    ebpf.program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(|source| LoaderError::Program {
            program,
            op: "type",
            source: Box::new(source),
        })
}

pub(super) fn cgroup_skb<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut CgroupSkb, LoaderError> {
    ebpf.program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(|source| LoaderError::Program {
            program,
            op: "type",
            source: Box::new(source),
        })
}

pub(super) fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut SchedClassifier, LoaderError> {
    ebpf.program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(|source| LoaderError::Program {
            program,
            op: "type",
            source: Box::new(source),
        })
}

//! The node-wide hooks: the guards on TC ingress and egress of every non-workload
//! interface, and the cgroup program (`enf_cg_in`) on local delivery to the node's
//! sockets. The egress guard (`enf_guard_eg`) and the cgroup program judge a client's
//! deferred Service egress after DNAT where no pod's ingress hook sees the packet
//! (security item 1); the ingress guard (`enf_guard_in`) drops tunnel packets from
//! sources that are not cluster nodes and notes `NodePort` clients before kube-proxy may
//! masquerade them (items 11 and 9).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aya::programs::{CgroupAttachMode, CgroupSkbAttachType, LinkOrder};
use enforcer_common::{PROG_CGROUP_INGRESS, PROG_CGROUP_INGRESS_DEBUG};

use super::loader::{
    CGROUP_KEY, CGROUP_LINK, GUARD_LINKS, Hook, LoadedDataplane, LoaderError, cgroup_skb, pin_link,
    remove_pins_in,
};

impl LoadedDataplane {
    /// Interfaces carrying the guard.
    pub fn guarded(&self) -> &BTreeMap<String, u32> {
        &self.guarded
    }

    /// Attaches the guards (`enf_guard_in`, `enf_guard_eg`) to TCX ingress and egress of
    /// `iface`, first in each chain, unless they are there for that ifindex already; a
    /// pinned link left by a previous agent is taken over atomically.
    pub fn attach_guard(&mut self, iface: &str, ifindex: u32) -> Result<(), LoaderError> {
        if self.guarded.get(iface) == Some(&ifindex) {
            return Ok(());
        }
        let dir = self.pin_dir.join(GUARD_LINKS);
        remove_pins_in(&dir, iface, Some(ifindex));
        for hook in Hook::GUARDS {
            let path = self.guard_link_path(iface, ifindex, hook);
            if let Some(held) = self.attach_one(iface, hook, &path, LinkOrder::first())? {
                self.held.insert((iface.to_owned(), hook.name()), held);
            }
        }
        self.guarded.insert(iface.to_owned(), ifindex);
        Ok(())
    }

    /// `guards/<iface>_<ifindex>_<guard hook>`.
    pub(super) fn guard_link_path(&self, iface: &str, ifindex: u32, hook: Hook) -> PathBuf {
        self.pin_dir
            .join(GUARD_LINKS)
            .join(format!("{iface}_{ifindex}_{}", hook.name()))
    }

    /// Removes the guards of an interface that is gone or became a workload's.
    pub fn unguard(&mut self, iface: &str) {
        self.guarded.remove(iface);
        for hook in Hook::GUARDS {
            self.held.remove(&(iface.to_owned(), hook.name()));
        }
        remove_pins_in(&self.pin_dir.join(GUARD_LINKS), iface, None);
    }

    /// Attaches the cgroup program (`enf_cg_in`) to cgroup ingress of `cgroup` (a cgroup
    /// v2 directory), alongside other programs there. The new link is pinned before the
    /// previous agent's is removed: no packet is delivered unjudged in between.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<(), LoaderError> {
        let program = self
            .variant
            .pick(PROG_CGROUP_INGRESS, PROG_CGROUP_INGRESS_DEBUG);
        let attach_err = |source| LoaderError::Attach {
            program,
            iface: cgroup.display().to_string(),
            hook: "cgroup-ingress",
            source: Box::new(source),
        };
        let dir = std::fs::File::open(cgroup).map_err(|source| LoaderError::Cgroup {
            path: cgroup.to_path_buf(),
            source,
        })?;
        let prog = cgroup_skb(&mut self.ebpf, program)?;
        let link_id = prog
            // A link to a cgroup always allows other programs next to it; the
            // multi-attach flag is for the older attach call only (the kernel refuses
            // it with a link).
            .attach(&dir, CgroupSkbAttachType::Ingress, CgroupAttachMode::Single)
            .map_err(attach_err)?;
        let link = prog.take_link(link_id).map_err(attach_err)?;
        let path = self.cgroup_link_path();
        let fresh = self.pin_dir.join(format!("{CGROUP_LINK}_new"));
        let _ = std::fs::remove_file(&fresh);
        let held = pin_link(link, &fresh)?;
        std::fs::rename(&fresh, &path).map_err(|source| LoaderError::Bpffs {
            op: "rename",
            path: fresh.clone(),
            source,
        })?;
        self.held
            .insert((CGROUP_KEY.0.to_owned(), CGROUP_KEY.1), held);
        Ok(())
    }

    /// The cgroup program's link pin.
    pub(super) fn cgroup_link_path(&self) -> PathBuf {
        self.pin_dir.join(CGROUP_LINK)
    }
}

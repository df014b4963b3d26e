//! The reconciler as the flow log's source of names: addresses from the cluster in
//! force, endpoints from the bound spec, policies from the dataplane's stable ids.

use std::net::IpAddr;

use super::flowlog::FlowNames;
use super::flowlog::names::Peer;
use super::reconcile::Reconciler;
use crate::model::PolicyName;

impl FlowNames for Reconciler {
    fn node(&self) -> &str {
        Reconciler::node(self)
    }

    fn peer(&self, ip: IpAddr, port: Option<u16>) -> Peer {
        self.addresses().peer(ip, port)
    }

    fn endpoint(&self, ifindex: u32, endpoint_id: u32) -> Option<String> {
        let spec = self.spec()?;
        let by_ifindex = self
            .bindings()
            .iter()
            .find(|(_, b)| b.ifindex == ifindex)
            .and_then(|(_, b)| b.endpoint.and_then(|i| spec.endpoints.get(i)));
        by_ifindex
            .or_else(|| {
                spec.endpoints
                    .iter()
                    .find(|e| e.info.endpoint_id == endpoint_id)
            })
            .map(|e| e.workload.clone())
    }

    fn policy(&self, id: u32) -> Option<PolicyName> {
        self.dataplane().policy_name(id, self.spec()?)
    }

    fn revision(&self, generation: u8) -> Option<u64> {
        self.slot_revision(generation)
    }
}

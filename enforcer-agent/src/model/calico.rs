//! Calico `projectcalico.org/v3` / `crd.projectcalico.org/v1` kinds.
//! PLACEHOLDER: the policy-core work replaces this with the complete typed model.

use serde::{Deserialize, Serialize};

use super::ObjectMeta;

macro_rules! placeholder {
    ($($name:ident),*) => {$(
        #[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
        pub struct $name {
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: serde_json::Value,
        }
    )*};
}
placeholder!(NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet, HostEndpoint);

//! EndpointSlices: which Services have slices, and whether any of them holds a ready endpoint.
//!
//! The EndpointSlice controller follows pod readiness directly, while a Deployment's `Available`
//! condition follows it through the ReplicaSet; a pod going away shows in its Service's slices
//! first, and a gateway stops sending to it from then on. Watching slices lets the controller
//! drop such a version from the route as soon as either says it is going away. Only one bit is
//! kept per slice: whether it has a ready endpoint. A Service with no slice known is judged by
//! its own facts alone, as without this watch (clusters or tests with no EndpointSlices).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::{Change, Index, ObjectKey};

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What is kept of one EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceFacts {
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: String,
    /// At least one endpoint is ready (`conditions.ready` absent counts as ready, as the API
    /// defines it).
    pub ready: bool,
}

impl SliceFacts {
    /// From an EndpointSlice's JSON; `None` when it names no Service.
    pub fn from_json(obj: &Value) -> Option<Self> {
        let service = obj["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()?;
        let ready = obj["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["conditions"]["ready"].as_bool() != Some(false));
        Some(SliceFacts {
            service: service.to_string(),
            ready,
        })
    }
}

/// The slices known, per Service.
#[derive(Debug, Default)]
pub(super) struct Slices {
    /// Service (canonical key) -> slice name -> has a ready endpoint.
    by_service: std::collections::HashMap<ObjectKey, BTreeMap<String, bool>>,
    /// Slice name -> its Service, to find a deleted slice's Service.
    service_of: std::collections::HashMap<(String, String), ObjectKey>,
    relisting: Option<HashSet<(String, String)>>,
}

impl Slices {
    pub(super) fn ready(&self, service: &ObjectKey) -> Option<bool> {
        self.by_service.get(service).map(|s| s.values().any(|r| *r))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_service.is_empty()
    }
}

impl Index {
    /// An EndpointSlice was listed, added or changed (`Some`) or deleted (`None`).
    pub fn upsert_slice(
        &mut self,
        namespace: &str,
        name: &str,
        facts: Option<SliceFacts>,
    ) -> Vec<Change> {
        let Some(short) = self.slice_service.clone() else {
            return Vec::new();
        };
        let id = (namespace.to_string(), name.to_string());
        if let Some(seen) = &mut self.slices.relisting {
            seen.insert(id.clone());
        }
        let before = self.slices.service_of.get(&id).cloned();
        let after = facts.as_ref().and_then(|f| {
            self.object_key(&short, namespace, &f.service)
                .map(|k| (k, f.ready))
        });
        let mut touched = Vec::new();
        if let Some(old) = before
            && after.as_ref().is_none_or(|(k, _)| *k != old)
        {
            self.slices.service_of.remove(&id);
            if let Some(s) = self.slices.by_service.get_mut(&old) {
                s.remove(name);
                if s.is_empty() {
                    self.slices.by_service.remove(&old);
                }
            }
            touched.push(old);
        }
        if let Some((key, ready)) = after {
            let was = self
                .slices
                .by_service
                .entry(key.clone())
                .or_default()
                .insert(name.to_string(), ready);
            self.slices.service_of.insert(id, key.clone());
            if was != Some(ready) {
                touched.push(key);
            }
        }
        let mut changes = Vec::new();
        for key in touched {
            if self.referenced_by.contains_key(&key) {
                changes.extend(self.recompute_referrers(&key));
            }
        }
        changes
    }

    /// Starts a re-list of EndpointSlices: those not upserted before [`Self::end_slice_relist`]
    /// are deleted then.
    pub fn begin_slice_relist(&mut self) {
        self.slices.relisting = Some(HashSet::new());
    }

    /// Ends a re-list of EndpointSlices.
    pub fn end_slice_relist(&mut self) -> Vec<Change> {
        let Some(seen) = self.slices.relisting.take() else {
            return Vec::new();
        };
        let gone: Vec<(String, String)> = self
            .slices
            .service_of
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        gone.iter()
            .flat_map(|(ns, name)| self.upsert_slice(ns, name, None))
            .collect()
    }
}

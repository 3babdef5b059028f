//! The in-memory index: routemaps and the facts of version resources -> desired routes.
//!
//! Watch events (or, in `iter8-render`, YAML documents) are fed in by calling it; every call
//! returns the [`Change`]s it caused: a routemap whose decision (route, availability, weights or
//! error) differs from the last one it reported. An event that changes no decision returns
//! nothing, so nothing downstream (applier, Events, status) does any work for it.
//!
//! Whole objects are never kept: a version resource is reduced to its [`ResourceFacts`] on
//! arrival, and each resource remembers which routemaps reference it, so an event touches only
//! the routemaps that name the object. No IO, no async, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};

use routing_core::readiness::{ObjectSource, ResourceFacts};
use routing_core::{RouteMapRef, RouteMapSpec};

use crate::config::Config;
pub use crate::decision::{
    Change, Decision, Traffic, VersionTraffic, Withdrawals, Withdrawn, decide, decide_withdrawn,
    guarded_states,
};
use crate::error::RouteMapError;
use crate::routemap::{RouteMapKey, RouteMapObject};

pub mod slices;

/// A version resource: canonical type short name, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Canonical short name of the type (the first configured name for its group/resource).
    pub short_name: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

#[derive(Debug)]
struct Entry {
    object: RouteMapObject,
    refs: Vec<ObjectKey>,
    last: Option<DecisionDigest>,
    /// While the routemap is invalid, its last good spec (same uid), when the index keeps it
    /// ([`Index::keep_last_good`]).
    last_good: Option<Box<RouteMapSpec>>,
    /// Candidates the guard withdrew (version name -> why); empty for almost every routemap.
    withdrawn: Withdrawals,
}

impl Entry {
    /// The spec decisions come from: the routemap's own, or its last good one while it is invalid.
    fn in_force(&self) -> Option<&RouteMapSpec> {
        self.object.spec.as_ref().ok().or(self.last_good.as_deref())
    }
}

/// What the index remembers of the last decision: enough to tell whether a new one differs.
/// The route itself is not kept (it would be most of a decision's memory, held for every
/// routemap): it is a deterministic function of the spec, which is kept, and of these fields.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DecisionDigest {
    Desired {
        /// Per version: available, effective weight, reason.
        versions: Vec<(bool, u32, Option<String>)>,
        /// Candidates withdrawn by the guard.
        withdrawn: Vec<String>,
        warnings: Vec<String>,
        /// Why the routemap is invalid, when this comes from its last good spec.
        invalid: Option<RouteMapError>,
    },
    Invalid(RouteMapError),
}

impl DecisionDigest {
    fn of(decision: &Decision) -> Self {
        match decision {
            Decision::Desired { traffic, .. } => DecisionDigest::Desired {
                versions: traffic
                    .versions
                    .iter()
                    .map(|v| (v.available, v.weight, v.reason.clone()))
                    .collect(),
                withdrawn: traffic
                    .withdrawn()
                    .map(|(name, _)| name.to_string())
                    .collect(),
                warnings: traffic.warnings.clone(),
                invalid: traffic.invalid.clone(),
            },
            Decision::Invalid { error } => DecisionDigest::Invalid(error.clone()),
        }
    }
}

/// The index. See the module doc.
#[derive(Debug)]
pub struct Index {
    /// Version resources may live in another namespace than their routemap's: a cluster-scoped
    /// controller configured with `allowCrossNamespaceReferences`.
    cross_namespace: bool,
    /// Short name -> canonical short name.
    canonical: HashMap<String, String>,
    /// Short name -> readiness conditions.
    conditions: HashMap<String, Vec<String>>,
    /// Boxed: a B-tree node holds 11 values inline, most of them unused space.
    routemaps: BTreeMap<RouteMapKey, Box<Entry>>,
    facts: HashMap<ObjectKey, ResourceFacts>,
    /// Who names each object, sorted. A `Vec`, not a `BTreeSet`: almost every object has one
    /// referrer, and a set allocates a whole B-tree node (11 keys) for it.
    referenced_by: HashMap<ObjectKey, Vec<RouteMapKey>>,
    relisting: HashMap<String, HashSet<ObjectKey>>,
    relisting_routemaps: Option<HashSet<RouteMapKey>>,
    /// False for an index that only collects objects (offline rendering decides afterwards).
    deciding: bool,
    /// The canonical short name of core Services when EndpointSlices refine their readiness.
    slice_service: Option<String>,
    slices: slices::Slices,
    /// Keep deciding an invalid routemap from its last good spec ([`Index::keep_last_good`]).
    keep_last_good: bool,
    /// Withdrawals read back from routes whose routemap is not held yet: by routemap, its uid.
    restoring: HashMap<RouteMapKey, (String, Withdrawals)>,
    /// Routemaps whose withdrawals this process has set (or restored): restores no longer apply.
    guard_spoke: HashSet<RouteMapKey>,
}

impl Index {
    /// An empty index for a configuration.
    pub fn new(config: &Config) -> Self {
        let mut canonical = HashMap::new();
        let mut first_for: HashMap<(String, String), String> = HashMap::new();
        for (short, t) in &config.resource_types {
            let canon = first_for
                .entry((t.group.clone(), t.resource.clone()))
                .or_insert_with(|| short.clone());
            canonical.insert(short.clone(), canon.clone());
        }
        Index {
            cross_namespace: config.cluster_scoped && config.allow_cross_namespace_references,
            canonical,
            conditions: config
                .resource_types
                .iter()
                .map(|(s, t)| (s.clone(), t.conditions.clone()))
                .collect(),
            routemaps: BTreeMap::new(),
            facts: HashMap::new(),
            referenced_by: HashMap::new(),
            relisting: HashMap::new(),
            relisting_routemaps: None,
            deciding: true,
            slice_service: config.slice_service_type(),
            slices: slices::Slices::default(),
            keep_last_good: false,
            restoring: HashMap::new(),
            guard_spoke: HashSet::new(),
        }
    }

    /// While a routemap is invalid, keep its last good spec (the last one of the same uid that
    /// parsed and whose references were accepted) in force: its version resources stay watched
    /// and every readiness change is decided from it, so gating goes on. Such a decision is
    /// [`Decision::Desired`] with [`Traffic::invalid`] set (the routemap's error). Off by default:
    /// an invalid routemap is then [`Decision::Invalid`] and decides nothing until it is fixed.
    pub fn keep_last_good(&mut self, yes: bool) {
        self.keep_last_good = yes;
    }

    /// An index that collects routemaps and facts but decides nothing as they arrive: the
    /// caller decides once at the end with [`Index::decide`] (offline rendering).
    pub fn collecting(config: &Config) -> Self {
        Index {
            deciding: false,
            ..Index::new(config)
        }
    }

    /// Stops deciding as objects arrive, as [`Index::collecting`] does, until [`Index::resume`]:
    /// the controller pauses while its initial lists run, so that each routemap is planned once,
    /// with all its resources known, rather than once per version resource listed.
    pub fn pause(&mut self) {
        self.deciding = false;
    }

    /// Decides as objects arrive again. Returns every routemap, in namespace/name order, for the
    /// caller to decide one at a time with [`Index::recheck`] (no list of routes is built).
    pub fn resume(&mut self) -> Vec<RouteMapKey> {
        self.deciding = true;
        self.routemaps.keys().cloned().collect()
    }

    /// The routemaps held, in namespace/name order.
    pub fn routemap_objects(&self) -> impl Iterator<Item = &RouteMapObject> {
        self.routemaps.values().map(|e| &e.object)
    }

    /// Decides one routemap with version facts from `source` (the index itself, or an
    /// assumption layered on it): the decision function of the controller and `iter8-render`.
    pub fn decide(&self, object: &RouteMapObject, source: &impl ObjectSource) -> Decision {
        self.decide_withdrawn(object, source, &Withdrawals::new())
    }

    /// [`Index::decide`] with candidates withdrawn by the guard (ignored unless the routemap
    /// has a guard, as in the controller).
    pub fn decide_withdrawn(
        &self,
        object: &RouteMapObject,
        source: &impl ObjectSource,
        withdrawn: &Withdrawals,
    ) -> Decision {
        match &object.spec {
            Err(e) => Decision::Invalid { error: e.clone() },
            Ok(spec) => match self.check_references(&object.key, spec) {
                Err(error) => Decision::Invalid { error },
                Ok(()) if spec.guard.is_some() => {
                    decide_withdrawn(&owner_of(object), spec, source, withdrawn)
                }
                Ok(()) => decide(&owner_of(object), spec, source),
            },
        }
    }

    /// Number of routemaps known.
    pub fn routemap_count(&self) -> usize {
        self.routemaps.len()
    }

    /// Number of versions over all valid routemaps.
    pub fn version_count(&self) -> usize {
        self.routemaps
            .values()
            .filter_map(|e| e.object.spec.as_ref().ok())
            .map(|s| s.versions.len())
            .sum()
    }

    /// Number of version resources whose facts are held.
    pub fn resource_count(&self) -> usize {
        self.facts.len()
    }

    /// The decision for one routemap, from what the index holds now.
    pub fn current_decision(&self, key: &RouteMapKey) -> Option<Decision> {
        let entry = self.routemaps.get(key)?;
        Some(self.decide_entry(entry))
    }

    /// Decides a held routemap: from its own spec, or from its last good spec while invalid.
    fn decide_entry(&self, entry: &Entry) -> Decision {
        let (Err(error), Some(good)) = (&entry.object.spec, &entry.last_good) else {
            return self.decide_withdrawn(&entry.object, self, &entry.withdrawn);
        };
        match decide_withdrawn(&owner_of(&entry.object), good, self, &entry.withdrawn) {
            Decision::Desired { route, mut traffic } => {
                traffic.invalid = Some(error.clone());
                Decision::Desired { route, traffic }
            }
            // A spec kept as good was valid and its references accepted: it plans.
            Decision::Invalid { .. } => Decision::Invalid {
                error: error.clone(),
            },
        }
    }

    /// The parsed spec of a valid routemap.
    pub fn spec(&self, key: &RouteMapKey) -> Option<&RouteMapSpec> {
        self.routemaps.get(key)?.object.spec.as_ref().ok()
    }

    /// A routemap was added or changed.
    pub fn upsert_routemap(&mut self, object: RouteMapObject) -> Vec<Change> {
        let key = object.key.clone();
        if let Some(seen) = &mut self.relisting_routemaps {
            seen.insert(key.clone());
        }
        // The last decision still describes the routemap only if its spec and owner are the same.
        let (last, last_good, mut withdrawn) = match self.remove_entry(&key) {
            Some(old) if old.object.uid == object.uid => {
                let Entry {
                    object: old_object,
                    last: old_last,
                    last_good: old_good,
                    withdrawn,
                    ..
                } = *old;
                let last = if old_object.spec == object.spec {
                    old_last
                } else {
                    None
                };
                let last_good = match old_object.spec {
                    _ if !self.keep_last_good || object.spec.is_ok() => None,
                    Ok(spec) if self.check_references(&key, &spec).is_ok() => Some(Box::new(spec)),
                    _ => old_good,
                };
                (last, last_good, withdrawn)
            }
            _ => (None, None, Withdrawals::new()),
        };
        let in_force = object.spec.as_ref().ok().or(last_good.as_deref());
        // A withdrawal outlives an edit of the routemap, not the candidate's leaving it or the
        // guard's removal (the guard task is told and forgets it too).
        withdrawn.retain(|name, _| {
            in_force.is_some_and(|s| {
                s.guard.is_some() && s.versions.iter().skip(1).any(|v| &v.name == name)
            })
        });
        let refs = match in_force {
            Some(spec) => self.object_keys(&key, spec),
            None => Vec::new(),
        };
        for r in &refs {
            let referrers = self
                .referenced_by
                .entry(r.clone())
                .or_insert_with(|| Vec::with_capacity(1));
            if let Err(at) = referrers.binary_search(&key) {
                referrers.insert(at, key.clone());
            }
        }
        self.routemaps.insert(
            key.clone(),
            Box::new(Entry {
                object,
                refs,
                last,
                last_good,
                withdrawn,
            }),
        );
        if let Some((uid, withdrawn)) = self.restoring.remove(&key) {
            // Decided with them at once: the restore decides again.
            if let Some(change) = self.restore_withdrawn(&key, &uid, withdrawn) {
                return vec![change];
            }
        }
        self.recheck(&key).into_iter().collect()
    }

    /// A routemap was deleted.
    pub fn delete_routemap(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        let key = RouteMapKey::new(namespace, name);
        match self.remove_entry(&key) {
            Some(_) => vec![Change::Removed { key }],
            None => Vec::new(),
        }
    }

    /// Starts a re-list of routemaps: those not upserted before [`Self::end_routemap_relist`]
    /// are deleted then.
    pub fn begin_routemap_relist(&mut self) {
        self.relisting_routemaps = Some(HashSet::new());
    }

    /// Ends a re-list of routemaps.
    pub fn end_routemap_relist(&mut self) -> Vec<Change> {
        let Some(seen) = self.relisting_routemaps.take() else {
            return Vec::new();
        };
        let gone: Vec<RouteMapKey> = self
            .routemaps
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        gone.iter()
            .flat_map(|k| self.delete_routemap(&k.namespace, &k.name))
            .collect()
    }

    /// A version resource was added or changed. `short_name` is any configured short name of its type.
    pub fn upsert_resource(
        &mut self,
        short_name: &str,
        namespace: &str,
        name: &str,
        facts: ResourceFacts,
    ) -> Vec<Change> {
        let Some(key) = self.object_key(short_name, namespace, name) else {
            return Vec::new();
        };
        if let Some(seen) = self.relisting.get_mut(&key.short_name) {
            seen.insert(key.clone());
        }
        if !self.referenced_by.contains_key(&key) {
            // Nobody names it (yet): keep its facts for a routemap that may come, decide nothing.
            self.facts.insert(key, facts);
            return Vec::new();
        }
        if self.facts.get(&key) == Some(&facts) {
            return Vec::new();
        }
        self.facts.insert(key.clone(), facts);
        self.recompute_referrers(&key)
    }

    /// A version resource was deleted.
    pub fn delete_resource(
        &mut self,
        short_name: &str,
        namespace: &str,
        name: &str,
    ) -> Vec<Change> {
        let Some(key) = self.object_key(short_name, namespace, name) else {
            return Vec::new();
        };
        if self.facts.remove(&key).is_none() {
            return Vec::new();
        }
        self.recompute_referrers(&key)
    }

    /// Starts a re-list of one type: objects not upserted before [`Self::end_relist`] are
    /// deleted then (a watch that expired and listed again).
    pub fn begin_relist(&mut self, short_name: &str) {
        if let Some(canon) = self.canonical.get(short_name) {
            self.relisting.insert(canon.clone(), HashSet::new());
        }
    }

    /// Ends a re-list of one type.
    pub fn end_relist(&mut self, short_name: &str) -> Vec<Change> {
        let Some(canon) = self.canonical.get(short_name).cloned() else {
            return Vec::new();
        };
        let Some(seen) = self.relisting.remove(&canon) else {
            return Vec::new();
        };
        let gone: Vec<ObjectKey> = self
            .facts
            .keys()
            .filter(|k| k.short_name == canon && !seen.contains(*k))
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for k in gone {
            changes.extend(self.delete_resource(&k.short_name, &k.namespace, &k.name));
        }
        changes
    }

    fn object_key(&self, short_name: &str, namespace: &str, name: &str) -> Option<ObjectKey> {
        Some(ObjectKey {
            short_name: self.canonical.get(short_name)?.clone(),
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    fn object_keys(&self, key: &RouteMapKey, spec: &RouteMapSpec) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = spec
            .versions
            .iter()
            .flat_map(|v| &v.resources)
            .filter_map(|r| {
                let ns = r.namespace.as_deref().unwrap_or(&key.namespace);
                self.object_key(&r.gvr_short, ns, &r.name)
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn remove_entry(&mut self, key: &RouteMapKey) -> Option<Box<Entry>> {
        let entry = self.routemaps.remove(key)?;
        for r in &entry.refs {
            if let Some(set) = self.referenced_by.get_mut(r) {
                set.retain(|k| k != key);
                if set.is_empty() {
                    self.referenced_by.remove(r);
                }
            }
        }
        Some(entry)
    }

    fn recompute_referrers(&mut self, key: &ObjectKey) -> Vec<Change> {
        if !self.deciding {
            return Vec::new();
        }
        let referrers: Vec<RouteMapKey> = self.referenced_by.get(key).cloned().unwrap_or_default();
        let mut changes = Vec::new();
        for k in &referrers {
            if !self.availability_unchanged(k) {
                changes.extend(self.recheck(k));
            }
        }
        changes
    }

    /// Fast path for resource events: the spec did not change, so if every version's
    /// availability, weight, reason and warnings are as last decided, so is the decision (no
    /// planning).
    fn availability_unchanged(&self, key: &RouteMapKey) -> bool {
        let Some(entry) = self.routemaps.get(key) else {
            return true;
        };
        let (
            Some(spec),
            Some(DecisionDigest::Desired {
                versions, warnings, ..
            }),
        ) = (entry.in_force(), &entry.last)
        else {
            return false;
        };
        let states = guarded_states(&key.namespace, spec, self, &entry.withdrawn);
        let weights = routing_core::effective_weights(spec, &states);
        versions.len() == states.len()
            && versions.iter().zip(states.iter().zip(&weights)).all(
                |((available, weight, reason), (s, w))| {
                    *available == s.available && weight == w && *reason == s.reason
                },
            )
            && warnings
                .iter()
                .eq(states.iter().flat_map(|s| s.warnings.iter()))
    }

    /// The guard withdrew a candidate (`Some(why)`) or let it back in (`None`): the routemap is
    /// decided again, the candidate planned as unavailable while withdrawn. Ignored for a
    /// routemap or version not held, the primary, or a routemap without a guard.
    pub fn set_withdrawn(
        &mut self,
        key: &RouteMapKey,
        version: &str,
        withdrawn: Option<Withdrawn>,
    ) -> Option<Change> {
        // From now on the guard of this process decides: a restore arriving late must not undo it.
        self.restoring.remove(key);
        self.guard_spoke.insert(key.clone());
        let entry = self.routemaps.get_mut(key)?;
        let guarded = entry.in_force().is_some_and(|s| {
            s.guard.is_some() && s.versions.iter().skip(1).any(|v| v.name == version)
        });
        let changed = match withdrawn {
            Some(w) if guarded => entry.withdrawn.insert(version.to_string(), w).is_none(),
            Some(_) => false,
            None => entry.withdrawn.remove(version).is_some(),
        };
        if changed { self.recheck(key) } else { None }
    }

    /// Withdrawals an earlier process made, read back from the status annotation on the route
    /// it wrote for routemap `key` (of uid `uid`): taken once, before this process's guard has
    /// said anything of the routemap, and only for its guarded candidates; held until the
    /// routemap arrives if it is not known yet. The guard task then keeps each candidate out
    /// while its identity is the one recorded, and lets it back in otherwise.
    pub fn restore_withdrawn(
        &mut self,
        key: &RouteMapKey,
        uid: &str,
        withdrawn: Withdrawals,
    ) -> Option<Change> {
        if withdrawn.is_empty() || self.guard_spoke.contains(key) {
            return None;
        }
        let Some(entry) = self.routemaps.get_mut(key) else {
            self.restoring
                .insert(key.clone(), (uid.to_string(), withdrawn));
            return None;
        };
        if entry.object.uid != uid || !entry.withdrawn.is_empty() {
            return None;
        }
        let candidates: Vec<String> = match entry.in_force() {
            Some(s) if s.guard.is_some() => {
                s.versions.iter().skip(1).map(|v| v.name.clone()).collect()
            }
            _ => return None,
        };
        entry.withdrawn = withdrawn
            .into_iter()
            .filter(|(name, _)| candidates.contains(name))
            .collect();
        self.guard_spoke.insert(key.clone());
        self.recheck(key)
    }

    /// What the guard needs of a guarded routemap: its guard, and per candidate its backend,
    /// availability and identity. `None` when the routemap is not held or has no guard.
    pub fn guard_view(&self, key: &RouteMapKey) -> Option<GuardView> {
        let entry = self.routemaps.get(key)?;
        let spec = entry.in_force()?;
        let guard = spec.guard.clone()?;
        let states = routing_core::version_states(&key.namespace, spec, self);
        let candidates = spec
            .versions
            .iter()
            .zip(&states)
            .skip(1)
            .map(|(v, s)| {
                let mut fingerprint = String::new();
                let mut retry = None;
                for r in &v.resources {
                    let ns = r.namespace.as_deref().unwrap_or(&key.namespace);
                    let facts = self.facts(&r.gvr_short, ns, &r.name);
                    let generation = facts.and_then(|f| f.generation);
                    fingerprint.push_str(&format!(
                        "{}/{}:{};",
                        r.gvr_short,
                        r.name,
                        generation.map_or_else(|| "-".to_string(), |g| g.to_string())
                    ));
                    if retry.is_none() {
                        retry = facts.and_then(|f| f.guard_retry.clone());
                    }
                }
                GuardCandidate {
                    version: v.clone(),
                    available: s.available,
                    fingerprint,
                    retry,
                    withdrawn: entry.withdrawn.get(&v.name).cloned(),
                }
            })
            .collect();
        Some(GuardView {
            key: key.clone(),
            uid: entry.object.uid.clone(),
            guard,
            candidates,
        })
    }

    /// The routemaps that name a version resource (any configured short name of its type).
    pub fn referrers(&self, short_name: &str, namespace: &str, name: &str) -> Vec<RouteMapKey> {
        self.object_key(short_name, namespace, name)
            .and_then(|k| self.referenced_by.get(&k).cloned())
            .unwrap_or_default()
    }

    /// Decides one routemap again; a change only if the decision differs from the last one.
    pub fn recheck(&mut self, key: &RouteMapKey) -> Option<Change> {
        if !self.deciding {
            return None;
        }
        let entry = self.routemaps.get(key)?;
        let owner = owner_of(&entry.object);
        let decision = self.decide_entry(entry);
        let memo = DecisionDigest::of(&decision);
        let entry = self.routemaps.get_mut(key)?;
        if entry.last.as_ref() == Some(&memo) {
            return None;
        }
        entry.last = Some(memo);
        Some(Change::Decided {
            key: key.clone(),
            owner,
            decision,
        })
    }

    /// Types must be configured; version resources must be in the routemap's namespace unless
    /// the controller is cluster-scoped and allows cross-namespace references.
    fn check_references(
        &self,
        key: &RouteMapKey,
        spec: &RouteMapSpec,
    ) -> Result<(), RouteMapError> {
        for (version, v) in spec.versions.iter().enumerate() {
            for (resource, r) in v.resources.iter().enumerate() {
                if !self.canonical.contains_key(&r.gvr_short) {
                    let mut known: Vec<&str> = self.canonical.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(RouteMapError::UnknownType {
                        version,
                        resource,
                        short_name: r.gvr_short.clone(),
                        configured: known.join(", "),
                    });
                }
                if let Some(ns) = &r.namespace
                    && !self.cross_namespace
                    && ns != &key.namespace
                {
                    return Err(RouteMapError::OtherNamespace {
                        version,
                        resource,
                        namespace: ns.clone(),
                        routemap_namespace: key.namespace.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl ObjectSource for Index {
    fn conditions(&self, gvr_short: &str) -> Option<&[String]> {
        self.conditions.get(gvr_short).map(Vec::as_slice)
    }

    fn facts(&self, gvr_short: &str, namespace: &str, name: &str) -> Option<&ResourceFacts> {
        self.facts
            .get(&self.object_key(gvr_short, namespace, name)?)
    }

    fn endpoints_ready(&self, gvr_short: &str, namespace: &str, name: &str) -> Option<bool> {
        if self.slices.is_empty() {
            return None;
        }
        let key = self.object_key(gvr_short, namespace, name)?;
        (Some(&key.short_name) == self.slice_service.as_ref())
            .then(|| self.slices.ready(&key))
            .flatten()
    }
}

/// A guarded routemap as the guard sees it ([`Index::guard_view`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GuardView {
    /// Which routemap.
    pub key: RouteMapKey,
    /// Its uid (a new routemap of the same name is a new guard).
    pub uid: String,
    /// Its guard.
    pub guard: Box<routing_core::GuardSpec>,
    /// Every version but the primary, in order.
    pub candidates: Vec<GuardCandidate>,
}

/// One candidate of a guarded routemap.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardCandidate {
    /// The version as the routemap declares it (its backend, port and resources).
    pub version: routing_core::spec::VersionSpec,
    /// Ready by its resources (the guard's withdrawal aside).
    pub available: bool,
    /// Its version fingerprint: each resource's `metadata.generation` (a new image or spec is
    /// a new generation, and so a new candidate).
    pub fingerprint: String,
    /// The `iter8.tools/guard-retry` annotation of its first resource that has one.
    pub retry: Option<String>,
    /// Withdrawn now: why, and the identity it was withdrawn with.
    pub withdrawn: Option<Withdrawn>,
}

/// The identity of a routemap as the owner of its route.
pub fn owner_of(object: &RouteMapObject) -> RouteMapRef {
    RouteMapRef {
        namespace: object.key.namespace.clone(),
        name: object.key.name.clone(),
        uid: object.uid.clone(),
    }
}

//! The seed canary tutorial as one flow, for every caller: `just tutorial`, `tests/seed.rs`,
//! `tests/traffic.rs` and `tests/install.rs` run these steps, each with its own way of making
//! a version ready ([`Platform::set_ready`]: Deployment status alone, or with an EndpointSlice
//! and a real httpbin behind it) and its own checks at each [`Stage`] ([`Platform::at`]).
//!
//! The steps are the tutorial's, with real `helm upgrade --install` / `helm delete` of
//! `charts/release` and the tutorial's values files (`fixtures/charts/values/seed-*.yaml`):
//! 1. the initial version: the route sends everything to `httpbin-0` once it is ready;
//! 2. the candidate: no rule for `httpbin-1` (and no write) while it is not ready, then
//!    `traffic: test` to `httpbin-1`, everything else to `httpbin-0`;
//! 3. promotion (with a new image, as a real promotion has): the candidate rule goes, then one
//!    rule to the new `httpbin-0` once it has rolled out;
//! 4. `helm delete`: the route is owned by the routemap, so Kubernetes' garbage collector
//!    deletes it; the test API server has none, so the harness plays that part and says so.
//!
//! After every write the route's `RouteApplied` Events equal its generation: one Event per
//! write, one write per change. The controller must already run (the tutorial installs it
//! first).

use anyhow::{Result, anyhow, ensure};
use kube::api::DeleteParams;

use crate::cluster::Cluster;
use crate::live::{Live, canary_split, one_rule_to, plain_request, test_request};
use crate::out::{note, ok, step};
use crate::release::{Deleted, Release, helm};
use crate::tools::{promote_with_new_image, values};
use crate::wait::{timeout, wait_for};

/// The release's name, as in the tutorial.
pub const APP: &str = "httpbin";
/// The routemap the release chart writes.
pub const ROUTEMAP: &str = "httpbin-routemap";
/// The tutorial's values files, one per step.
pub const VALUES: [&str; 3] = [
    "seed-1-initial.yaml",
    "seed-2-candidate.yaml",
    "seed-3-promote.yaml",
];

/// Where the flow is when it hands over to [`Platform::at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Step 1 done: everything goes to the ready `httpbin-0`.
    Initial,
    /// Step 2, `httpbin-1` deployed and judged, not ready: still no candidate rule.
    CandidateNotReady,
    /// Step 2 done: `traffic: test` goes to `httpbin-1`.
    CandidateReady,
    /// Step 3, the promotion applied: no candidate rule, the new `httpbin-0` rolling out.
    PrimaryRollingOut,
    /// Step 3 done: everything goes to the new `httpbin-0`.
    Promoted,
    /// Step 4, `helm delete` done; the route is still there until the garbage collector acts.
    Deleted,
}

/// What differs between the callers of the flow.
// Only implemented and called with concrete types in this crate's tests and binaries, so the
// futures' `Send` bounds never need naming.
#[allow(async_fn_in_trait)]
pub trait Platform {
    /// Reports `version` ready or not as the cluster would (a controller-manager's Deployment
    /// status, with a data plane also the kubelet's endpoint readiness).
    async fn set_ready(&mut self, seed: &Seed<'_>, version: &str, ready: bool) -> Result<()>;

    /// An upgrade (or `helm delete`) deleted the Service of `version`: what the EndpointSlice
    /// controller would do, and the version's pods going away.
    async fn version_removed(&mut self, _seed: &Seed<'_>, _version: &str) -> Result<()> {
        Ok(())
    }

    /// Before each `helm upgrade --install` with `values_file` (the tutorial shows the values).
    async fn before_upgrade(&mut self, _seed: &Seed<'_>, _values_file: &str) -> Result<()> {
        Ok(())
    }

    /// The caller's own checks at `stage`, with the live route when there is one.
    async fn at(&mut self, seed: &mut Seed<'_>, stage: Stage, live: Option<&Live>) -> Result<()>;
}

/// A platform with no data plane: readiness is the Deployment's status alone, as a
/// controller-manager reports it.
pub async fn deployment_ready(seed: &Seed<'_>, version: &str, ready: bool) -> Result<()> {
    let generation = seed
        .cluster
        .set_deployment(&seed.ns, version, ready)
        .await?;
    note(format!(
        "(harness, as a controller-manager) deploy/{version} status: Available={}, observedGeneration {generation}",
        if ready { "True" } else { "False" }
    ));
    Ok(())
}

/// The tutorial in one namespace.
#[derive(Debug)]
pub struct Seed<'a> {
    /// The API server.
    pub cluster: &'a Cluster,
    /// The namespace of the release (and of the controller, when namespace-scoped).
    pub ns: String,
    /// The release, made with real helm.
    pub release: Release<'a>,
    /// The route's name; a caller renaming it at a stage sets it.
    pub route: String,
    /// What `helm delete` removed, once it ran.
    pub deleted: Option<Deleted>,
}

impl<'a> Seed<'a> {
    /// The tutorial's release `httpbin` in `ns` (which must exist).
    pub fn new(cluster: &'a Cluster, ns: &str) -> Self {
        Seed {
            cluster,
            ns: ns.into(),
            release: Release::new(cluster, APP, ns),
            route: APP.into(),
            deleted: None,
        }
    }

    /// Every step, in order.
    pub async fn run(&mut self, p: &mut impl Platform) -> Result<()> {
        self.initial(p).await?;
        self.candidate(p).await?;
        self.promote(p).await?;
        self.delete(p).await
    }

    /// `helm upgrade --install` with a tutorial values file; `new_image`: with the image changed
    /// too, as a real promotion would ([`promote_with_new_image`]).
    async fn upgrade(&mut self, p: &mut impl Platform, file: &str, new_image: bool) -> Result<()> {
        p.before_upgrade(self, file).await?;
        let mut paths = vec![values(file)];
        if new_image {
            paths.push(promote_with_new_image(
                &self.cluster.dir,
                &format!("promote-new-image-{}", self.ns),
            )?);
        }
        let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
        self.release.upgrade(&refs).await?;
        Ok(())
    }

    /// Step 1: the initial version.
    pub async fn initial(&mut self, p: &mut impl Platform) -> Result<()> {
        let ns = self.ns.clone();
        step(
            format!("{ns} 1"),
            format!(
                "deploy the initial version: helm upgrade --install {APP} charts/release -n {ns} -f {}",
                VALUES[0]
            ),
        );
        self.upgrade(p, VALUES[0], false).await?;
        self.cluster
            .wait_status(&ns, ROUTEMAP, &[], &["httpbin-0"])
            .await?;
        ok("the controller has judged the routemap: httpbin-0 not available yet");
        let live = self.primary_ready(p, "httpbin-0").await?;
        ensure!(
            live.app_version_headers_ok(),
            "every backend must set the response header app-version: <its name>"
        );
        let parent = &live.route.spec.parent_refs;
        ensure!(
            parent.len() == 1
                && parent[0].kind == "Service"
                && parent[0].name == APP
                && parent[0].port == Some(80),
            "parentRefs {parent:?}"
        );
        ok("parentRef: Service httpbin port 80 (mesh); every backend sets app-version");
        live.expect_all_to("httpbin-0")?;
        self.events_agree(&live).await?;
        p.at(self, Stage::Initial, Some(&live)).await
    }

    /// Step 2: the candidate, first not ready, then ready.
    pub async fn candidate(&mut self, p: &mut impl Platform) -> Result<()> {
        let ns = self.ns.clone();
        step(
            format!("{ns} 2"),
            format!(
                "deploy the candidate: helm upgrade --install {APP} charts/release -n {ns} -f {}",
                VALUES[1]
            ),
        );
        let before = self.cluster.existing_route(&ns, &self.route).await?;
        self.upgrade(p, VALUES[1], false).await?;
        p.set_ready(self, "httpbin-1", false).await?;
        // The status names httpbin-1: the controller has judged the new routemap, and made any
        // route write that decision needed before reporting it.
        self.cluster
            .wait_status(&ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
            .await?;
        p.at(self, Stage::CandidateNotReady, None).await?;
        let live = self.cluster.existing_route(&ns, &self.route).await?;
        ensure!(
            // The generation moves with the spec only (the status annotation on the route changes
            // to report httpbin-1, as it should).
            live.rules() == 1 && live.generation() == before.generation(),
            "no candidate rule (and no spec write) while httpbin-1 is unavailable: {}",
            live.describe()
        );
        ok("no candidate rule while httpbin-1 is unavailable (route spec not rewritten)");
        p.set_ready(self, "httpbin-1", true).await?;
        let live = self
            .cluster
            .wait_route(
                &ns,
                &self.route,
                "a traffic: test rule to httpbin-1",
                canary_split("httpbin-0", "httpbin-1"),
            )
            .await?;
        note(format!("httpbin-1 ready: {}", live.describe()));
        ensure!(live.app_version_headers_ok(), "app-version headers");
        ok(format!(
            "GET / traffic: test -> {}",
            live.explain(&test_request())
        ));
        ok(format!("GET / -> {}", live.explain(&plain_request())));
        self.events_agree(&live).await?;
        p.at(self, Stage::CandidateReady, Some(&live)).await
    }

    /// Step 3: promotion, with a new image so the new primary rolls out.
    pub async fn promote(&mut self, p: &mut impl Platform) -> Result<()> {
        let ns = self.ns.clone();
        step(
            format!("{ns} 3"),
            format!(
                "promote: helm upgrade --install {APP} charts/release -n {ns} -f {} (and a new image, as a real promotion has)",
                VALUES[2]
            ),
        );
        self.upgrade(p, VALUES[2], true).await?;
        p.version_removed(self, "httpbin-1").await?;
        let (generation, observed) = self
            .cluster
            .deployment_generations(&ns, "httpbin-0")
            .await?;
        ensure!(
            generation > observed,
            "the image change must bump deploy/httpbin-0's generation ({generation} vs observed {observed})"
        );
        self.cluster
            .wait_status(&ns, ROUTEMAP, &[], &["httpbin-0"])
            .await?;
        ok(format!(
            "deploy/httpbin-0 generation {generation} > observedGeneration {observed}: httpbin-0 unavailable while it rolls out"
        ));
        let live = self
            .cluster
            .wait_route(&ns, &self.route, "the candidate rule removed", |r| {
                (r.rules() == 1)
                    .then_some(())
                    .ok_or_else(|| "still a candidate rule".into())
            })
            .await?;
        note(format!("while httpbin-0 rolls out: {}", live.describe()));
        p.at(self, Stage::PrimaryRollingOut, Some(&live)).await?;
        let live = self.primary_ready(p, "new httpbin-0").await?;
        live.expect_all_to("httpbin-0")?;
        self.events_agree(&live).await?;
        p.at(self, Stage::Promoted, Some(&live)).await
    }

    /// Step 4: `helm delete`; the route goes with its owner.
    pub async fn delete(&mut self, p: &mut impl Platform) -> Result<()> {
        let ns = self.ns.clone();
        step(
            format!("{ns} 4"),
            format!("cleanup: helm delete {APP} -n {ns}"),
        );
        let routemap = self
            .cluster
            .configmap(&ns, ROUTEMAP)
            .await?
            .ok_or_else(|| anyhow!("no routemap {ROUTEMAP}"))?;
        let uid = routemap.metadata.uid.clone().unwrap_or_default();
        let live = self.cluster.existing_route(&ns, &self.route).await?;
        let owners = &live.route.metadata.owner_references;
        ensure!(
            owners.len() == 1
                && owners[0].api_version == "v1"
                && owners[0].kind == "ConfigMap"
                && owners[0].name == ROUTEMAP
                && owners[0].uid == uid
                && owners[0].controller,
            "owner references {owners:?} (routemap uid {uid})"
        );
        ok(format!(
            "the route's owner reference: v1 ConfigMap {ROUTEMAP} uid {uid} (controller)"
        ));
        let deleted = self.release.delete().await?;
        ensure!(
            self.cluster.configmap(&ns, ROUTEMAP).await?.is_none(),
            "routemap still there after helm delete"
        );
        ensure!(
            helm(self.cluster, &["list", "-n", &ns, "-q"])?
                .lines()
                .all(|l| l.trim() != APP),
            "helm still lists {APP}"
        );
        ok(format!("helm deleted {}", deleted.objects.join(" ")));
        self.deleted = Some(deleted);
        for version in ["httpbin-0"] {
            p.version_removed(self, version).await?;
        }
        p.at(self, Stage::Deleted, Some(&live)).await?;
        if collect_garbage(self.cluster, &ns, &self.route).await? {
            note(format!(
                "(harness, as Kubernetes' garbage collector) HTTPRoute {} deleted: its owner {ROUTEMAP} is gone",
                self.route
            ));
        }
        ensure!(
            self.cluster.route(&ns, &self.route).await?.is_none(),
            "route {} still there after its owner was deleted",
            self.route
        );
        Ok(())
    }

    /// `httpbin-0` made ready: the controller reports it available and routes everything to it.
    async fn primary_ready(&mut self, p: &mut impl Platform, which: &str) -> Result<Live> {
        p.set_ready(self, "httpbin-0", true).await?;
        self.cluster
            .wait_status(&self.ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0"])
            .await?;
        let live = self
            .cluster
            .wait_route(
                &self.ns,
                &self.route,
                "one rule to httpbin-0",
                one_rule_to("httpbin-0"),
            )
            .await?;
        note(format!("{which} ready: {}", live.describe()));
        Ok(live)
    }

    /// `RouteApplied` Events on the routemap = the route's generation: one Event per write.
    pub async fn events_agree(&self, live: &Live) -> Result<()> {
        let (ns, route) = (&self.ns, &self.route);
        let n = wait_for(
            "RouteApplied Events = route generation",
            timeout(),
            || async {
                let events = self
                    .cluster
                    .event_count(ns, ROUTEMAP, "RouteApplied")
                    .await? as i64;
                let generation = self
                    .cluster
                    .route(ns, route)
                    .await?
                    .map_or(0, |r| r.generation());
                Ok(if events == generation {
                    Ok(events)
                } else {
                    Err(format!(
                        "{events} RouteApplied Events, generation {generation}"
                    ))
                })
            },
        )
        .await?;
        ensure!(
            n == live.generation(),
            "{n} RouteApplied Events, but the route read before has generation {}",
            live.generation()
        );
        ok(format!("{n} RouteApplied Event(s) = route generation {n}"));
        Ok(())
    }
}

/// Plays Kubernetes' garbage collector for one route: deletes it if no owner of it exists any
/// more (an owner is the routemap ConfigMap of that name and uid). Returns whether it deleted.
pub async fn collect_garbage(cluster: &Cluster, ns: &str, route: &str) -> Result<bool> {
    let api = cluster.routes(ns);
    let Some(r) = api.get_opt(route).await? else {
        return Ok(false);
    };
    for owner in r.metadata.owner_references.iter().flatten() {
        let cm = cluster.configmap(ns, &owner.name).await?;
        if cm.is_some_and(|c| c.metadata.uid.as_deref() == Some(owner.uid.as_str())) {
            return Ok(false);
        }
    }
    api.delete(route, &DeleteParams::background()).await?;
    Ok(true)
}

/// A platform with a data plane ([`crate::gateway::dataplane`]): a version is ready when the
/// kubelet would report its endpoint ready (the EndpointSlice, with a real httpbin behind it)
/// and the Deployment controller `Available=True`; unready in the same order (the slice follows
/// pod readiness directly, the Deployment's `Available` through its ReplicaSet).
pub async fn dataplane_ready(
    dp: &mut crate::gateway::dataplane::Dataplane<'_>,
    ns: &str,
    version: &str,
    ready: bool,
) -> Result<()> {
    dp.set_version(ns, version, ready).await?;
    let port = dp.backend(ns, version)?.addr.port();
    note(format!(
        "(harness, as the kubelet and the controller-manager) EndpointSlice {version}-e2e endpoint 127.0.0.1:{port} (its httpbin) ready={ready}; deploy/{version} Available={}",
        if ready { "True" } else { "False" }
    ));
    Ok(())
}

/// A version's Service was deleted: what the EndpointSlice controller does (its slice goes).
pub async fn dataplane_removed(
    dp: &mut crate::gateway::dataplane::Dataplane<'_>,
    ns: &str,
    version: &str,
) -> Result<()> {
    dp.delete_slice(ns, version).await?;
    note(format!(
        "(harness, as the EndpointSlice controller) Service {version} deleted: its EndpointSlice {version}-e2e goes too"
    ));
    Ok(())
}

//! Installed as users install it: `helm install` of `charts/controller` (real release records in
//! Secrets), its Deployment run as the chart's pod would run (the image `just image` builds, the
//! service account's token, the chart's ConfigMap, security context and probes: `pod.rs`), RBAC
//! enforced by the API server, then the seed tutorial with `helm upgrade --install` /
//! `helm delete` of `charts/release`; namespace-scoped, then cluster-scoped with the tutorial in
//! two application namespaces. The API server's authorization log proves least privilege: no
//! request of the controller was forbidden, and every grant of the chart was used (or is listed
//! below with the reason this tier cannot exercise it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use iter8_e2e::metrics::sum_series;
use iter8_e2e::pod::{Docker, Pod};
use iter8_e2e::prelude::*;
use iter8_e2e::tools::{free_port, http_get, repo_root, run, tool};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const RELEASE: &str = "iter8";
const ROUTEMAP: &str = "httpbin-routemap";
const ROUTE: &str = "httpbin";
const RENAMED: &str = "httpbin-renamed";

/// Grants of the chart this tier cannot exercise, and why.
const UNEXERCISED: &[(&str, &str, &str, &str)] = &[
    (
        "serving.kserve.io",
        "inferenceservices",
        "list",
        "no KServe CRD here: the controller watches a configured type only once discovery serves it",
    ),
    (
        "serving.kserve.io",
        "inferenceservices",
        "watch",
        "no KServe CRD here: the controller watches a configured type only once discovery serves it",
    ),
];

/// What the authorization log says of one controller.
#[derive(Debug, Default)]
struct Audit {
    allowed: usize,
    forbidden: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_with_helm() -> Result<()> {
    let docker = Docker::from_env()?;
    let image = chart_image()?;
    // The line scripts/image-check.sh prints, for the image this test runs.
    println!("{}", docker.describe_image(&image)?);
    let cluster = Cluster::start("install").await?;
    let mut suite = Suite::new(&cluster)?;
    let mut audits: Vec<Audit> = Vec::new();
    suite
        .run(
            "namespace-scoped: helm install iter8 -n iter8-system, the tutorial in iter8-system",
            install(&cluster, &docker, false, &mut audits),
        )
        .await;
    suite
        .run(
            "cluster-scoped: helm install iter8 -n iter8-cluster --set clusterScoped=true, the tutorial in team-a and team-b",
            install(&cluster, &docker, true, &mut audits),
        )
        .await;
    let allowed: usize = audits.iter().map(|a| a.allowed).sum();
    let forbidden: usize = audits.iter().map(|a| a.forbidden).sum();
    println!("controller requests under chart RBAC: {allowed} allowed, {forbidden} forbidden");
    let result = suite.finish();
    ensure!(
        audits.len() == 2 || std::env::var_os("ITER8_E2E_ONLY").is_some(),
        "only {} of 2 controllers were audited",
        audits.len()
    );
    ensure!(
        forbidden == 0,
        "the controller was refused {forbidden} request(s) under the chart's RBAC"
    );
    result
}

/// The image the chart runs by default (`helm template`).
fn chart_image() -> Result<String> {
    let rendered = run(
        Command::new(tool("helm")?)
            .arg("template")
            .arg(RELEASE)
            .arg(repo_root().join("charts/controller")),
        None,
    )?;
    let deploy = rendered_object(&rendered, "Deployment", RELEASE)?;
    deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the chart's Deployment names no image"))
}

/// helm against the test API server, with its state under the server's directory.
fn helm(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let home = cluster.dir.join("helm");
    let mut cmd = Command::new(tool("helm")?);
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(args);
    note(format!("helm {}", args.join(" ")));
    run(&mut cmd, None)
}

/// The chart's admin port, unless something on this host already listens there (the pods
/// share the host network): then a free one, set through the chart's own value.
fn admin_port() -> Result<(u16, Vec<String>)> {
    let default = 8080;
    if std::net::TcpListener::bind(("0.0.0.0", default)).is_ok() {
        return Ok((default, Vec::new()));
    }
    let port = free_port()?;
    note(format!(
        "port {default} is taken on this host: --set metrics.port={port}"
    ));
    Ok((port, vec!["--set".into(), format!("metrics.port={port}")]))
}

async fn install(
    cluster: &Cluster,
    docker: &Docker,
    cluster_scoped: bool,
    audits: &mut Vec<Audit>,
) -> Result<()> {
    let ns = if cluster_scoped {
        "iter8-cluster"
    } else {
        "iter8-system"
    };
    step(
        "install",
        format!("helm install {RELEASE} charts/controller -n {ns}"),
    );
    let (port, mut extra) = admin_port()?;
    if cluster_scoped {
        extra.extend(["--set".into(), "clusterScoped=true".into()]);
    }
    let chart = repo_root().join("charts/controller");
    let chart = chart.to_string_lossy();
    let mut args = vec!["install", RELEASE, &chart, "-n", ns, "--create-namespace"];
    args.extend(extra.iter().map(String::as_str));
    helm(cluster, &args)?;
    let manifest = helm(cluster, &["get", "manifest", RELEASE, "-n", ns])?;
    let created = manifest_objects(&manifest)?;
    ok(format!(
        "helm release {RELEASE} deployed: {}",
        created
            .iter()
            .map(|(k, n, _)| format!("{k}/{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    ensure!(
        helm(cluster, &["list", "-n", ns, "-q"])?.trim() == RELEASE,
        "helm list does not show {RELEASE}"
    );

    let log_start = authz_log(cluster)?.len();
    let mut pod = Pod::run(cluster, docker, ns, RELEASE).await?;
    pod.wait_ready().await?;
    ensure!(pod.ready(), "pod not ready");
    // What a controller-manager would report once the pod is ready.
    cluster.set_deployment(ns, RELEASE, true).await?;
    let admin: SocketAddr = ([127, 0, 0, 1], port).into();
    let (code, _) = http_get(admin, "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    ok(format!(
        "the controller runs in-cluster as {} (/readyz via the readiness probe, /metrics {code} on {admin})",
        pod.user
    ));

    if cluster_scoped {
        for app in ["team-a", "team-b"] {
            tutorial(cluster, app, false).await?;
        }
        cross_namespace_refused(cluster).await?;
    } else {
        tutorial(cluster, ns, true).await?;
    }
    ok(format!(
        "{} applies in all (iter8_applies_total{{result=\"applied\"}})",
        sum_series(
            &http_get(admin, "/metrics")?.1,
            "iter8_applies_total{result=\"applied\"}"
        )
    ));

    let code = pod.stop()?;
    ensure!(
        code == 0,
        "the controller exited with {code} on docker stop"
    );
    // Everything the controller did is in the log up to here; what follows is the test's.
    let log = authz_log(cluster)?;
    let controller_lines = &log[log_start..];
    let audit = least_privilege(cluster, ns, &pod.user, controller_lines, cluster_scoped).await?;
    audits.push(audit);
    negative_checks(cluster, ns, &pod, cluster_scoped).await?;

    step("uninstall", format!("helm delete {RELEASE} -n {ns}"));
    helm(cluster, &["delete", RELEASE, "-n", ns])?;
    nothing_left(cluster, ns, &created).await?;
    Ok(())
}

/// `(kind.group, name, namespace)` of every object of a helm manifest.
fn manifest_objects(manifest: &str) -> Result<Vec<(String, String, String)>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifest).context("parsing the manifest")?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            let kind = d["kind"].as_str()?.to_lowercase();
            let api = d["apiVersion"].as_str()?;
            let kind = match api.split_once('/') {
                Some((group, _)) => format!("{kind}.{group}"),
                None => kind,
            };
            Some((
                kind,
                d["metadata"]["name"].as_str()?.to_string(),
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ))
        })
        .collect())
}

/// The JSON lines of the API server's authorization log.
fn authz_log(cluster: &Cluster) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(cluster.dir.join("authz.log")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("authz.log line {l}")))
        .collect()
}

/// RouteApplied Events = route generation (one Event per write, one write per change).
async fn events_agree(cluster: &Cluster, ns: &str, route: &str) -> Result<()> {
    let n = wait_for(
        "RouteApplied Events = route generation",
        timeout(),
        || async {
            let events = cluster.event_count(ns, ROUTEMAP, "RouteApplied").await? as i64;
            let generation = cluster
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
    ok(format!("{n} RouteApplied Event(s) = route generation {n}"));
    Ok(())
}

/// The release chart with real helm: `helm upgrade --install httpbin charts/release`.
fn release(cluster: &Cluster, ns: &str, values: &[&Path]) -> Result<()> {
    let chart = repo_root().join("charts/release");
    let chart = chart.to_string_lossy();
    let mut args: Vec<String> = ["upgrade", "--install", "httpbin", &chart, "-n", ns]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push("--create-namespace".into());
    for v in values {
        args.push("-f".into());
        args.push(v.to_string_lossy().into_owned());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    helm(cluster, &refs)?;
    Ok(())
}

async fn primary_ready(cluster: &Cluster, ns: &str) -> Result<Live> {
    let generation = cluster.set_deployment(ns, "httpbin-0", true).await?;
    note(format!(
        "deploy/httpbin-0 status: Available=True, observedGeneration {generation}"
    ));
    cluster
        .wait_status(ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0"])
        .await?;
    cluster
        .wait_route(ns, ROUTE, "one rule to httpbin-0", one_rule_to("httpbin-0"))
        .await
}

fn all_to_primary(live: &Live) -> Result<()> {
    for req in [plain_request(), test_request()] {
        ensure!(
            live.serves(&req) == [("httpbin-0".into(), Some("httpbin-0".into()))],
            "{req:?} -> {}",
            live.explain(&req)
        );
    }
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    ok(format!(
        "GET / traffic: test -> {}",
        live.explain(&test_request())
    ));
    Ok(())
}

/// The seed tutorial in `ns` with real helm releases; `rename`: also rename the route (the
/// controller then deletes the old one: its `delete` grant).
async fn tutorial(cluster: &Cluster, ns: &str, rename: bool) -> Result<()> {
    step(
        format!("{ns} 1"),
        "helm upgrade --install httpbin -f seed-1-initial.yaml",
    );
    release(cluster, ns, &[&values("seed-1-initial.yaml")])?;
    cluster
        .wait_status(ns, ROUTEMAP, &[], &["httpbin-0"])
        .await?;
    let live = primary_ready(cluster, ns).await?;
    println!("==> step {ns} 1: httpbin-0 ready: {}", live.describe());
    ensure!(
        live.app_version_headers_ok(),
        "backends must set app-version"
    );
    let parent = &live.route.spec.parent_refs;
    ensure!(
        parent.len() == 1 && parent[0].kind == "Service" && parent[0].name == "httpbin",
        "parentRefs {parent:?}"
    );
    ok("parentRef: Service httpbin; every backend sets app-version");
    all_to_primary(&live)?;
    events_agree(cluster, ns, ROUTE).await?;

    step(
        format!("{ns} 2"),
        "helm upgrade --install httpbin -f seed-2-candidate.yaml",
    );
    let before = live.resource_version();
    release(cluster, ns, &[&values("seed-2-candidate.yaml")])?;
    // The status annotation names httpbin-1: the controller has judged the new routemap.
    cluster
        .wait_status(ns, ROUTEMAP, &["httpbin-0"], &["httpbin-0", "httpbin-1"])
        .await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        live.rules() == 1 && live.resource_version() == before,
        "no candidate rule (and no write) while httpbin-1 is unavailable: {}",
        live.describe()
    );
    ok("no candidate rule while httpbin-1 is unavailable (route not rewritten)");
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "a traffic: test rule to httpbin-1",
            canary_split("httpbin-0", "httpbin-1"),
        )
        .await?;
    println!("==> step {ns} 2: httpbin-1 ready: {}", live.describe());
    ok(format!(
        "GET / traffic: test -> {}",
        live.explain(&test_request())
    ));
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    events_agree(cluster, ns, ROUTE).await?;

    step(
        format!("{ns} 3"),
        "helm upgrade --install httpbin -f seed-3-promote.yaml (new image)",
    );
    let promote = cluster
        .dir
        .join(format!("seed-3-promote-new-image-{ns}.yaml"));
    std::fs::write(
        &promote,
        std::fs::read_to_string(values("seed-3-promote.yaml"))?.replace(
            "image: kennethreitz/httpbin",
            "image: kennethreitz/httpbin:latest",
        ),
    )?;
    release(cluster, ns, &[&values("seed-3-promote.yaml"), &promote])?;
    let (generation, observed) = cluster.deployment_generations(ns, "httpbin-0").await?;
    ensure!(
        generation > observed,
        "the image change must bump generation ({generation} vs {observed})"
    );
    if let Err(e) = cluster.wait_status(ns, ROUTEMAP, &[], &["httpbin-0"]).await {
        show_events(&cluster.events(ns, ROUTEMAP).await?);
        let d = cluster.kubectl(&["get", "deploy", "-n", ns, "-o", "yaml"])?;
        note(d);
        return Err(e);
    }
    cluster
        .wait_route(ns, ROUTE, "the candidate rule removed", |r| {
            (r.rules() == 1)
                .then_some(())
                .ok_or_else(|| "still a candidate rule".into())
        })
        .await?;
    let live = primary_ready(cluster, ns).await?;
    println!("==> step {ns} 3: new httpbin-0 ready: {}", live.describe());
    all_to_primary(&live)?;
    events_agree(cluster, ns, ROUTE).await?;

    let mut route = ROUTE;
    if rename {
        step(
            format!("{ns} rename"),
            format!("the routemap renames its route to {RENAMED}"),
        );
        let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
        let cm = api.get(ROUTEMAP).await?;
        let (key, data) = cm
            .data
            .as_ref()
            .and_then(|d| d.iter().next())
            .ok_or_else(|| anyhow!("routemap without data"))?;
        let from = format!(r#""name":"{ROUTE}","parentRefs""#);
        ensure!(
            data.matches(&from).count() == 1,
            "routemap route name not found"
        );
        let renamed = data.replace(&from, &format!(r#""name":"{RENAMED}","parentRefs""#));
        api.patch(
            ROUTEMAP,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {key: renamed}})),
        )
        .await?;
        cluster
            .wait_route(
                ns,
                RENAMED,
                "one rule to httpbin-0",
                one_rule_to("httpbin-0"),
            )
            .await?;
        wait_for(
            "the old route to be deleted by the controller",
            timeout(),
            || async {
                Ok(match cluster.route(ns, ROUTE).await? {
                    None => Ok(()),
                    Some(r) => Err(format!("still there (rv {})", r.resource_version())),
                })
            },
        )
        .await?;
        ok(format!(
            "{RENAMED} written, {ROUTE} deleted by the controller"
        ));
        route = RENAMED;
    }

    step(format!("{ns} 4"), "helm delete httpbin");
    let routemap = cluster
        .configmap(ns, ROUTEMAP)
        .await?
        .ok_or_else(|| anyhow!("no routemap"))?;
    let uid = routemap.metadata.uid.clone().unwrap_or_default();
    let live = cluster.existing_route(ns, route).await?;
    let owners = &live.route.metadata.owner_references;
    ensure!(
        owners.len() == 1
            && owners[0].kind == "ConfigMap"
            && owners[0].name == ROUTEMAP
            && owners[0].uid == uid,
        "owner references {owners:?}"
    );
    helm(cluster, &["delete", "httpbin", "-n", ns])?;
    ensure!(
        cluster.configmap(ns, ROUTEMAP).await?.is_none(),
        "routemap still there after helm delete"
    );
    ensure!(
        helm(cluster, &["list", "-n", ns, "-q"])?
            .lines()
            .all(|l| l.trim() != "httpbin"),
        "helm still lists httpbin"
    );
    ok(format!(
        "release deleted; route {route} is owned by {ROUTEMAP} (uid {uid}): Kubernetes' garbage collector deletes it (this server has none)"
    ));
    Ok(())
}

/// A routemap in team-a naming a Deployment in team-b: refused by the cluster-scoped
/// controller (allowCrossNamespaceReferences is off by default) with a Warning naming the field.
async fn cross_namespace_refused(cluster: &Cluster) -> Result<()> {
    step(
        "cross-namespace",
        "a routemap in team-a names deploy/httpbin-0 in team-b",
    );
    let rendered = run(
        Command::new(tool("helm")?)
            .args(["template", "xns"])
            .arg(repo_root().join("charts/release"))
            .args(["-n", "team-a", "-f"])
            .arg(values("seed-1-initial.yaml")),
        None,
    )?;
    let mut cm = rendered_object(&rendered, "ConfigMap", "xns-routemap")?;
    let data = cm["data"]["routemap.yaml"]
        .as_str()
        .ok_or_else(|| anyhow!("no routemap.yaml"))?;
    let from = r#"{"gvrShort":"deploy","name":"xns-0","namespace":"team-a"}"#;
    ensure!(data.contains(from), "unexpected routemap {data}");
    cm["data"]["routemap.yaml"] = Value::String(data.replace(
        from,
        r#"{"gvrShort":"deploy","name":"xns-0","namespace":"team-b"}"#,
    ));
    let cm: ConfigMap = serde_json::from_value(cm)?;
    Api::<ConfigMap>::namespaced(cluster.client.clone(), "team-a")
        .create(&PostParams::default(), &cm)
        .await?;
    let message = wait_for(
        "a Warning InvalidRouteMap on xns-routemap",
        timeout(),
        || async {
            let events = cluster.events("team-a", "xns-routemap").await?;
            Ok(events
                .iter()
                .find(|e| e.reason.as_deref() == Some("InvalidRouteMap"))
                .map(|e| {
                    (
                        e.type_.clone().unwrap_or_default(),
                        e.message.clone().unwrap_or_default(),
                    )
                })
                .ok_or_else(|| format!("{} Events", events.len())))
        },
    )
    .await?;
    ensure!(
        message.0 == "Warning"
            && message.1.contains("versions[0].resources[1].namespace")
            && message.1.contains("allowCrossNamespaceReferences"),
        "Event {message:?}"
    );
    ok(format!("Warning InvalidRouteMap: {}", message.1));
    ensure!(
        cluster.route("team-a", "xns").await?.is_none(),
        "a route was written for a refused routemap"
    );
    Api::<ConfigMap>::namespaced(cluster.client.clone(), "team-a")
        .delete("xns-routemap", &Default::default())
        .await?;
    Ok(())
}

/// `(apiGroup, resource[/subresource], verb)`.
type Grant = (String, String, String);

fn grants_of(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// The controller's requests in the log: none forbidden, every grant used (or excused).
async fn least_privilege(
    cluster: &Cluster,
    ns: &str,
    user: &str,
    lines: &[Value],
    cluster_scoped: bool,
) -> Result<Audit> {
    step("rbac", format!("the authz log of {user}"));
    let mine: Vec<&Value> = lines.iter().filter(|l| l["user"] == user).collect();
    let mut audit = Audit::default();
    let mut used: BTreeMap<Grant, usize> = BTreeMap::new();
    let mut non_resource = BTreeSet::new();
    for l in &mine {
        if l["allowed"] == true {
            audit.allowed += 1;
        } else {
            audit.forbidden += 1;
            note(format!("FORBIDDEN: {l}"));
        }
        let resource = l["resource"].as_str().unwrap_or_default();
        if resource.is_empty() {
            non_resource.insert(format!(
                "{} {}",
                l["verb"].as_str().unwrap_or_default(),
                l["path"].as_str().unwrap_or_default()
            ));
            continue;
        }
        let sub = l["subresource"].as_str().unwrap_or_default();
        let resource = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        *used
            .entry((
                l["apiGroup"].as_str().unwrap_or_default().to_string(),
                resource,
                l["verb"].as_str().unwrap_or_default().to_string(),
            ))
            .or_default() += 1;
    }
    note(format!(
        "{} requests: {} allowed, {} forbidden; non-resource: {}",
        mine.len(),
        audit.allowed,
        audit.forbidden,
        non_resource.into_iter().collect::<Vec<_>>().join(", ")
    ));
    // The chart's grants, as the server holds them.
    let mut rules = if cluster_scoped {
        Api::<ClusterRole>::all(cluster.client.clone())
            .get(RELEASE)
            .await?
            .rules
            .unwrap_or_default()
    } else {
        Api::<Role>::namespaced(cluster.client.clone(), ns)
            .get(RELEASE)
            .await?
            .rules
            .unwrap_or_default()
    };
    rules.extend(
        Api::<Role>::namespaced(cluster.client.clone(), ns)
            .get(&format!("{RELEASE}-leader-election"))
            .await?
            .rules
            .unwrap_or_default(),
    );
    let grants = grants_of(&rules);
    let mut unused = Vec::new();
    for g in &grants {
        match used.get(g) {
            Some(n) => note(format!("used: {} {} {} ({n}x)", g.2, g.1, show_group(&g.0))),
            None => match UNEXERCISED.iter().find(|(grp, res, verb, _)| {
                (*grp, *res, *verb) == (g.0.as_str(), g.1.as_str(), g.2.as_str())
            }) {
                Some((_, _, _, why)) => note(format!(
                    "not exercised: {} {} {}: {why}",
                    g.2,
                    g.1,
                    show_group(&g.0)
                )),
                None => unused.push(format!("{} {} {}", g.2, g.1, show_group(&g.0))),
            },
        }
    }
    let beyond: Vec<String> = used
        .keys()
        .filter(|u| !grants.contains(*u))
        .map(|g| format!("{} {} {}", g.2, g.1, show_group(&g.0)))
        .collect();
    ensure!(
        beyond.is_empty(),
        "requests outside the chart's grants: {}",
        beyond.join(", ")
    );
    ensure!(
        unused.is_empty(),
        "grants of the chart the controller never used (remove them, or say why this tier cannot exercise them): {}",
        unused.join(", ")
    );
    ok(format!(
        "{} grants, each used at least once or listed as not exercisable here",
        grants.len()
    ));
    Ok(audit)
}

fn show_group(g: &str) -> String {
    if g.is_empty() {
        "(core)".into()
    } else {
        format!("({g})")
    }
}

/// A client with the pod's own bearer token.
async fn client_with_token(cluster: &Cluster, token: &str) -> Result<kube::Client> {
    let admin = std::fs::read_to_string(&cluster.kubeconfig)?;
    let text = admin.replace(
        "token: test-apiserver-allows-everyone",
        &format!("token: {token}"),
    );
    ensure!(text != admin, "unexpected kubeconfig");
    let kc = kube::config::Kubeconfig::from_yaml(&text)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn expect_forbidden<T: std::fmt::Debug>(what: &str, r: kube::Result<T>) -> Result<()> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            ok(format!("{what}: 403 ({})", s.message));
            Ok(())
        }
        other => bail!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// With the controller's own token: no Secrets, and (namespace-scoped) no route elsewhere.
async fn negative_checks(
    cluster: &Cluster,
    ns: &str,
    pod: &Pod,
    cluster_scoped: bool,
) -> Result<()> {
    step(
        "rbac",
        format!("requests as {} that must be refused", pod.user),
    );
    let before = authz_log(cluster)?.len();
    let client = client_with_token(cluster, &pod.token).await?;
    expect_forbidden(
        &format!("list secrets in {ns}"),
        Api::<Secret>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await,
    )?;
    let helm_secret = Api::<Secret>::namespaced(cluster.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("owner=helm,name={RELEASE}")))
        .await?
        .items
        .into_iter()
        .next()
        .and_then(|s| s.metadata.name)
        .ok_or_else(|| anyhow!("no helm release Secret for {RELEASE} in {ns}"))?;
    expect_forbidden(
        &format!("get secret {helm_secret} (helm's release record)"),
        Api::<Secret>::namespaced(client.clone(), ns)
            .get(&helm_secret)
            .await,
    )?;
    let mut expected = 2;
    if cluster_scoped {
        expect_forbidden(
            "list secrets in all namespaces",
            Api::<Secret>::all(client.clone())
                .list(&ListParams::default())
                .await,
        )?;
        expected += 1;
    } else {
        let other = "default";
        let route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "not-mine", "namespace": other},
            "spec": {"rules": [{"backendRefs": [{"name": "x", "port": 80}]}]}
        }))?;
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            other,
            &k8s_adapter::kube_types::httproute_resource(),
        );
        expect_forbidden(
            &format!("create an HTTPRoute in namespace {other}"),
            api.create(&PostParams::default(), &route).await,
        )?;
        expect_forbidden(
            &format!("server-side apply of an HTTPRoute in namespace {other}"),
            api.patch(
                "not-mine",
                &PatchParams::apply("iter8-controller"),
                &Patch::Apply(&route),
            )
            .await,
        )?;
        expected += 2;
    }
    let denied = authz_log(cluster)?[before..]
        .iter()
        .filter(|l| l["user"] == pod.user.as_str() && l["allowed"] == false)
        .count();
    ensure!(
        denied == expected,
        "the authz log shows {denied} denials of {}, want {expected}",
        pod.user
    );
    ok(format!("the authz log shows these {denied} denials"));
    Ok(())
}

/// After `helm delete iter8`: every object the chart created is gone, helm's records too, and
/// nothing in the namespaces involved carries a finalizer or a deletion timestamp. The
/// controller's Lease stays (the controller created it, not the chart; released, with no
/// holder, on SIGTERM), as do Events (they expire by TTL in a real cluster).
async fn nothing_left(
    cluster: &Cluster,
    ns: &str,
    created: &[(String, String, String)],
) -> Result<()> {
    for (kind, name, obj_ns) in created {
        let mut args = vec![
            "get",
            kind.as_str(),
            name.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        if !obj_ns.is_empty() {
            args.extend(["-n", obj_ns.as_str()]);
        }
        let out = cluster.kubectl(&args)?;
        ensure!(
            out.trim().is_empty(),
            "{kind}/{name} is still there after helm delete"
        );
    }
    ok(format!(
        "gone: {}",
        created
            .iter()
            .map(|(k, n, _)| format!("{}/{n}", k.split('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let records =
        cluster.kubectl(&["get", "secrets", "-n", ns, "-l", "owner=helm", "-o", "name"])?;
    ensure!(records.trim().is_empty(), "helm records left: {records}");
    ok("no helm release records left");
    let types = "configmaps,services,deployments.apps,serviceaccounts,secrets,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,leases.coordination.k8s.io,httproutes.gateway.networking.k8s.io";
    let mut stuck = Vec::new();
    for scope in [
        vec!["get", types, "-A", "-o", "json"],
        vec![
            "get",
            "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io,namespaces",
            "-o",
            "json",
        ],
    ] {
        let list: Value = serde_json::from_str(&cluster.kubectl(&scope)?)?;
        for item in list["items"].as_array().into_iter().flatten() {
            let md = &item["metadata"];
            let finalizers = md["finalizers"].as_array().is_some_and(|f| !f.is_empty());
            if finalizers || !md["deletionTimestamp"].is_null() {
                stuck.push(format!(
                    "{} {}/{}",
                    item["kind"].as_str().unwrap_or_default(),
                    md["namespace"].as_str().unwrap_or_default(),
                    md["name"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    ensure!(
        stuck.is_empty(),
        "objects stuck with finalizers: {}",
        stuck.join(", ")
    );
    ok("no object anywhere carries a finalizer or a deletion timestamp");
    let leases = cluster.kubectl(&["get", "leases", "-n", ns, "-o", "name"])?;
    note(format!(
        "left by design: the controller's Lease ({}; it created it, helm did not), Events (TTL)",
        leases.trim()
    ));
    Ok(())
}

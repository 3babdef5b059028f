//! Least privilege of the installed controller, from the API server's authorization log: no
//! request forbidden, every grant of the chart used (or excused here), and requests with the
//! pod's own token that must be refused.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, bail, ensure};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::install::RELEASE;
use crate::out::{note, ok, step};
use crate::pod::Pod;

/// Grants of the chart this tier cannot exercise, and why.
pub const UNEXERCISED: &[(&str, &str, &str, &str)] = &[
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
pub struct Audit {
    pub allowed: usize,
    pub forbidden: usize,
}

/// The JSON lines of the API server's authorization log.
pub fn authz_log(cluster: &Cluster) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(cluster.dir.join("authz.log")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("authz.log line {l}")))
        .collect()
}

/// `(apiGroup, resource[/subresource], verb)`.
pub type Grant = (String, String, String);

pub fn grants_of(rules: &[PolicyRule]) -> BTreeSet<Grant> {
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
pub async fn least_privilege(
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

pub fn show_group(g: &str) -> String {
    if g.is_empty() {
        "(core)".into()
    } else {
        format!("({g})")
    }
}

/// A client with the pod's own bearer token.
pub async fn client_with_token(cluster: &Cluster, token: &str) -> Result<kube::Client> {
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

pub fn expect_forbidden<T: std::fmt::Debug>(what: &str, r: kube::Result<T>) -> Result<()> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            ok(format!("{what}: 403 ({})", s.message));
            Ok(())
        }
        other => bail!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// With the controller's own token: no Secrets, no write to any ConfigMap (its status lives on
/// its own routes), no Lease but its own, and (namespace-scoped) no route elsewhere.
pub async fn negative_checks(
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
    // No write verb on ConfigMaps: not even the routemaps it reads, nor its own configuration.
    let cm_patch = |name: &str, namespace: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace,
                            "annotations": {"iter8.tools/status": "{}"}}})
    };
    expect_forbidden(
        &format!("patch ConfigMap {RELEASE} in {ns}"),
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &k8s_adapter::kube_types::configmap_resource(),
        )
        .patch(
            RELEASE,
            &PatchParams::apply("iter8-controller-status").force(),
            &Patch::Apply(&cm_patch(RELEASE, ns)),
        )
        .await,
    )?;
    // Leases: get and patch name the controller's own Lease only.
    let lease: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "someone-elses-lease", "namespace": ns},
        "spec": {"holderIdentity": "iter8"}
    }))?;
    expect_forbidden(
        &format!("patch Lease someone-elses-lease in {ns}"),
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &kube::core::ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&()),
        )
        .patch(
            "someone-elses-lease",
            &PatchParams::apply("iter8-controller"),
            &Patch::Apply(&lease),
        )
        .await,
    )?;
    let mut expected = 4;
    if cluster_scoped {
        expect_forbidden(
            "patch ConfigMap aws-auth in kube-system",
            Api::<DynamicObject>::namespaced_with(
                client.clone(),
                "kube-system",
                &k8s_adapter::kube_types::configmap_resource(),
            )
            .patch(
                "aws-auth",
                &PatchParams::apply("iter8-controller-status").force(),
                &Patch::Apply(&cm_patch("aws-auth", "kube-system")),
            )
            .await,
        )?;
        expected += 1;
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

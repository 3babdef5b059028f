//! Blue-green weights (and their live `iter8.tools/weight` override) and mirroring, against a
//! real API server with the real controller.

mod common;

use anyhow::{Result, ensure};
use common::*;

const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies() {
    let cluster = Cluster::start("strategies").await.expect("test API server");
    let mut suite = Suite::new(&cluster);
    suite
        .run(
            "blue-green 30/70, live weight override",
            blue_green(&cluster),
        )
        .await;
    suite.run("mirror", mirror(&cluster)).await;
    suite.finish();
}

fn weights_are(want: &[(&str, u32)]) -> impl Fn(&Live) -> std::result::Result<(), String> + use<> {
    let want: Vec<(String, u32)> = want.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    move |r: &Live| {
        if r.rules() == 1 && r.backends(0) == want {
            Ok(())
        } else {
            Err(format!("want one rule with {want:?}"))
        }
    }
}

async fn blue_green(cluster: &Cluster) -> Result<()> {
    let ns = "bluegreen";
    cluster.create_namespace(ns).await?;
    let mut release = Release::new(cluster, "httpbin", ns);
    step(
        1,
        "release with blue-green-30-70.yaml, no version ready yet",
    );
    release.upgrade(&[&values("blue-green-30-70.yaml")])?;
    let mut controller = Controller::start(cluster, ns, "iter8-controller-0")?;
    controller.wait_ready().await?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "the primary alone at weight 1",
            weights_are(&[("httpbin-0", 1)]),
        )
        .await?;
    ok(format!(
        "nothing ready: all weights 0, so the primary gets 1: {}",
        live.describe()
    ));
    let gateway = live
        .route
        .spec
        .parent_refs
        .iter()
        .any(|p| p.kind == "Gateway" && p.name == "my-gateway");
    ensure!(gateway, "parentRefs lack Gateway my-gateway");
    ok("parentRefs: Service httpbin and Gateway my-gateway");

    step(2, "httpbin-0 ready, httpbin-1 not");
    cluster.set_deployment(ns, "httpbin-0", true).await?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "httpbin-0 at 30 alone",
            weights_are(&[("httpbin-0", 30)]),
        )
        .await?;
    ok(format!(
        "unavailable httpbin-1 left out: {}",
        live.describe()
    ));

    step(3, "both ready: weights 30/70");
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "30/70",
            weights_are(&[("httpbin-0", 30), ("httpbin-1", 70)]),
        )
        .await?;
    ok(live.describe());
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    ensure!(live.app_version_headers_ok(), "app-version headers");

    step(
        4,
        "kubectl annotate --overwrite cm httpbin-1-weight-config iter8.tools/weight=80",
    );
    cluster.kubectl(&[
        "annotate",
        "-n",
        ns,
        "--overwrite",
        "cm",
        "httpbin-1-weight-config",
        "iter8.tools/weight=80",
    ])?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "30/80",
            weights_are(&[("httpbin-0", 30), ("httpbin-1", 80)]),
        )
        .await?;
    ok(format!("live weight override: {}", live.describe()));
    ok(format!("GET / -> {}", live.explain(&plain_request())));

    step(
        5,
        "kubectl annotate --overwrite cm httpbin-0-weight-config iter8.tools/weight=0",
    );
    cluster.kubectl(&[
        "annotate",
        "-n",
        ns,
        "--overwrite",
        "cm",
        "httpbin-0-weight-config",
        "iter8.tools/weight=0",
    ])?;
    let live = cluster
        .wait_route(
            ns,
            ROUTE,
            "httpbin-1 alone",
            weights_are(&[("httpbin-1", 80)]),
        )
        .await?;
    ok(format!(
        "weight 0 leaves httpbin-0 out of the rule: {}",
        live.describe()
    ));
    let n = writes_agree(cluster, &controller, ns, ROUTEMAP, ROUTE).await?;
    ensure!(n as i64 == live.generation(), "{n} writes");
    ok(format!(
        "{n} RouteApplied Events = {n} applies = route generation {n}"
    ));
    controller.stop()?;
    Ok(())
}

async fn mirror(cluster: &Cluster) -> Result<()> {
    let ns = "mirror";
    cluster.create_namespace(ns).await?;
    let mut release = Release::new(cluster, "httpbin", ns);
    step(
        1,
        "release with mirror.yaml (httpbin-1 mirrored at 25%, httpbin-2 at 0)",
    );
    release.upgrade(&[&values("mirror.yaml")])?;
    let mut controller = Controller::start(cluster, ns, "iter8-controller-0")?;
    controller.wait_ready().await?;
    cluster.set_deployment(ns, "httpbin-0", true).await?;
    cluster
        .wait_status(
            ns,
            ROUTEMAP,
            &["httpbin-0"],
            &["httpbin-0", "httpbin-1", "httpbin-2"],
        )
        .await?;
    let live = cluster
        .wait_route(ns, ROUTE, "the primary alone", |r| {
            (r.backends(0) == [("httpbin-0".to_string(), 1)] && r.mirrors().is_empty())
                .then_some(())
                .ok_or_else(|| "want httpbin-0 without mirrors".into())
        })
        .await?;
    ok(format!(
        "candidate not ready: no mirror filter: {}",
        live.describe()
    ));
    ensure!(
        live.route.spec.rules[0].backend_refs[0].port == 8080,
        "port 8080"
    );

    step(2, "httpbin-1 ready");
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let live = cluster
        .wait_route(ns, ROUTE, "a RequestMirror filter to httpbin-1", |r| {
            (r.mirrors() == [("httpbin-1".to_string(), 25)])
                .then_some(())
                .ok_or_else(|| "no mirror to httpbin-1 at 25%".into())
        })
        .await?;
    ok(live.describe());
    ok(format!("GET / -> {}", live.explain(&plain_request())));

    step(3, "httpbin-2 ready (weight 0)");
    cluster.set_deployment(ns, "httpbin-2", true).await?;
    cluster
        .wait_status(
            ns,
            ROUTEMAP,
            &["httpbin-0", "httpbin-1", "httpbin-2"],
            &["httpbin-0", "httpbin-1", "httpbin-2"],
        )
        .await?;
    settle().await;
    let live = cluster
        .route(ns, ROUTE)
        .await?
        .ok_or_else(|| anyhow::anyhow!("route gone"))?;
    ensure!(
        live.mirrors() == [("httpbin-1".to_string(), 25)]
            && live.backends(0) == [("httpbin-0".to_string(), 1)],
        "weight 0 must not mirror: {}",
        live.describe()
    );
    ok(format!(
        "a weight-0 candidate gets no mirror: {}",
        live.describe()
    ));
    controller.stop()?;
    Ok(())
}

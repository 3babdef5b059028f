//! Blue-green weights (and their live `iter8.tools/weight` override) and mirroring, against a
//! real API server with the real controller.

use anyhow::{Result, ensure};
use iter8_e2e::prelude::*;

const ROUTE: &str = "httpbin";
const ROUTEMAP: &str = "httpbin-routemap";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies() -> Result<()> {
    let cluster = Cluster::start("strategies").await?;
    let mut suite = Suite::new(&cluster)?;
    suite
        .run(
            "blue-green 30/70, live weight override",
            blue_green(&cluster),
        )
        .await;
    suite.run("mirror", mirror(&cluster)).await;
    suite.finish()
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

/// Waits until the route is one rule with exactly the weights `want`; prints `why` and the route.
async fn expect_weights(
    cluster: &Cluster,
    ns: &str,
    want: &[(&str, u32)],
    why: &str,
) -> Result<Live> {
    let what = format!("one rule with weights {want:?}");
    let live = cluster
        .wait_route(ns, ROUTE, &what, weights_are(want))
        .await?;
    ok(format!("{why}: {}", live.describe()));
    Ok(live)
}

/// Step `n`: a user overrides a version's weight live, with the annotation on one of its
/// resources (the chart's `<version>-weight-config` ConfigMap).
fn annotate_weight(cluster: &Cluster, ns: &str, n: u32, cm: &str, weight: u32) -> Result<()> {
    let annotation = format!("iter8.tools/weight={weight}");
    step(
        n,
        format!("kubectl annotate --overwrite cm {cm} {annotation}"),
    );
    cluster
        .kubectl(&["annotate", "-n", ns, "--overwrite", "cm", cm, &annotation])
        .map(|_| ())
}

async fn blue_green(cluster: &Cluster) -> Result<()> {
    let ns = "bluegreen";
    step(
        1,
        "release with blue-green-30-70.yaml, no version ready yet",
    );
    let (_release, mut controller) =
        release_with_controller(cluster, ns, "blue-green-30-70.yaml").await?;
    let live = expect_weights(
        cluster,
        ns,
        &[("httpbin-0", 1)],
        "nothing ready: all weights 0, so the primary gets 1",
    )
    .await?;
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
    expect_weights(
        cluster,
        ns,
        &[("httpbin-0", 30)],
        "unavailable httpbin-1 left out",
    )
    .await?;

    step(3, "both ready: weights 30/70");
    cluster.set_deployment(ns, "httpbin-1", true).await?;
    let live = expect_weights(
        cluster,
        ns,
        &[("httpbin-0", 30), ("httpbin-1", 70)],
        "both available",
    )
    .await?;
    ok(format!("GET / -> {}", live.explain(&plain_request())));
    ensure!(live.app_version_headers_ok(), "app-version headers");

    annotate_weight(cluster, ns, 4, "httpbin-1-weight-config", 80)?;
    let live = expect_weights(
        cluster,
        ns,
        &[("httpbin-0", 30), ("httpbin-1", 80)],
        "live weight override",
    )
    .await?;
    ok(format!("GET / -> {}", live.explain(&plain_request())));

    annotate_weight(cluster, ns, 5, "httpbin-0-weight-config", 0)?;
    let live = expect_weights(
        cluster,
        ns,
        &[("httpbin-1", 80)],
        "weight 0 leaves httpbin-0 out of the rule",
    )
    .await?;
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
    step(
        1,
        "release with mirror.yaml (httpbin-1 mirrored at 25%, httpbin-2 at 0)",
    );
    let (_release, mut controller) = release_with_controller(cluster, ns, "mirror.yaml").await?;
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
    controller.wait_caught_up(cluster, ns).await?;
    let applied = controller.applied()?;
    cluster.set_deployment(ns, "httpbin-2", true).await?;
    cluster
        .wait_status(
            ns,
            ROUTEMAP,
            &["httpbin-0", "httpbin-1", "httpbin-2"],
            &["httpbin-0", "httpbin-1", "httpbin-2"],
        )
        .await?;
    // Evidence that the controller has judged httpbin-2 ready before checking the route.
    controller.wait_caught_up(cluster, ns).await?;
    let live = cluster.existing_route(ns, ROUTE).await?;
    ensure!(
        controller.applied()? == applied,
        "a weight-0 candidate becoming ready needs no write"
    );
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

//! Telling users: publishes the Event and writes the status annotation that
//! `routemap_index::report` decided, for the writer task ([`crate::apply`]), its only caller.
//!
//! The annotation is written by server-side apply with its own field manager
//! (`iter8-controller-status`), owning that one annotation only, so it never conflicts with Helm,
//! which owns the data and labels. The apply carries the routemap's uid: if the routemap was
//! deleted meanwhile the call fails instead of creating an empty ConfigMap.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use routemap_index::report::{EventNote, Report};
use routing_core::RouteMapRef;
use routing_core::keys::{REPORTING_CONTROLLER, STATUS_ANNOTATION, STATUS_FIELD_MANAGER};
use serde_json::json;

use crate::error::{WriteError, write_error};
use crate::kube_types::{
    CoreEvent, DynamicObject, Timestamp, configmap_reference, configmap_resource, core_event, now,
};
use crate::metrics::Metrics;

/// How long a status write throttled after its Event is waited out in place before the report
/// is given up to a retry (which would publish the Event again).
const STATUS_THROTTLED_BUDGET: Duration = Duration::from_secs(300);

/// Publishes Events and writes the status annotation.
#[derive(Clone)]
pub struct StatusWriter {
    client: Client,
    instance: Option<String>,
    timeout: Duration,
    metrics: Metrics,
    /// The wall clock Events are stamped with (fixed in tests, so their bodies are exact).
    clock: fn() -> Timestamp,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl StatusWriter {
    /// A writer reporting as `iter8-controller`, instance `instance` (the pod name).
    pub fn new(
        client: Client,
        instance: Option<String>,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        StatusWriter {
            instance,
            client,
            timeout,
            metrics,
            clock: now,
        }
    }

    /// The same writer stamping Events with `clock` instead of the system clock.
    pub fn with_clock(self, clock: fn() -> Timestamp) -> Self {
        StatusWriter { clock, ..self }
    }

    /// Publishes the report's Event, then writes its status annotation. A throttled Event
    /// stops here (the whole report is retried after the server's delay); any other failure
    /// to publish it is logged and counted, and the status still goes on.
    pub async fn publish(&self, owner: &RouteMapRef, report: &Report) -> Result<(), WriteError> {
        if let Some(event) = &report.event
            && let Err(e @ WriteError::Throttled { .. }) = self.event(owner, event).await
        {
            return Err(e);
        }
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
                "annotations": {
                    STATUS_ANNOTATION: serde_json::to_string(&report.status).unwrap_or_default(),
                },
            },
        });
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &owner.namespace, &configmap_resource());
        let params = PatchParams::apply(STATUS_FIELD_MANAGER).force();
        // Once the Event is out, a throttled status write is waited out here, as the server
        // asks, rather than by retrying the whole report (which would publish the Event twice).
        let started = tokio::time::Instant::now();
        loop {
            let answer = tokio::time::timeout(
                self.timeout,
                api.patch(&owner.name, &params, &Patch::Apply(&body)),
            )
            .await;
            let e = match answer {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => write_error(e),
                Err(_) => WriteError::Timeout(self.timeout),
            };
            match e {
                WriteError::Throttled { retry_after, .. }
                    if report.event.is_some() && started.elapsed() < STATUS_THROTTLED_BUDGET =>
                {
                    self.metrics.throttled("status");
                    tokio::time::sleep(retry_after.mul_f64(1.0 + fastrand::f64() / 2.0)).await;
                }
                WriteError::Throttled { .. } => return Err(e),
                e => {
                    self.metrics.error("status");
                    return Err(e);
                }
            }
        }
    }

    /// Publishes an Event on its own (a route removed); a failure is logged and counted.
    pub async fn publish_event(&self, owner: &RouteMapRef, event: &EventNote) {
        let _ = self.event(owner, event).await;
    }

    async fn event(&self, owner: &RouteMapRef, event: &EventNote) -> Result<(), WriteError> {
        let reference = configmap_reference(&owner.namespace, &owner.name, &owner.uid);
        let ev = core_event(
            &reference,
            event.warning,
            event.reason,
            &event.note,
            REPORTING_CONTROLLER,
            self.instance.as_deref(),
            (self.clock)(),
        );
        let events: Api<CoreEvent> = Api::namespaced(self.client.clone(), &owner.namespace);
        let kind = if event.warning { "Warning" } else { "Normal" };
        match tokio::time::timeout(self.timeout, events.create(&Default::default(), &ev)).await {
            Ok(Ok(_)) => {
                self.metrics.event(kind, event.reason);
                Ok(())
            }
            Ok(Err(e)) => {
                let e = write_error(e);
                if !matches!(e, WriteError::Throttled { .. }) {
                    self.metrics.error("event");
                    tracing::warn!(reason = event.reason, error = %e, "cannot publish Event");
                }
                Err(e)
            }
            Err(_) => {
                self.metrics.error("event");
                tracing::warn!(reason = event.reason, "publishing Event timed out");
                Err(WriteError::Timeout(self.timeout))
            }
        }
    }
}

//! Telling users: publishes the Event (on the routemap ConfigMap) and writes the status
//! annotation (on the HTTPRoute the controller wrote for it) that `routemap_index::report`
//! decided, for the writer task ([`crate::writer`]), its only caller.
//!
//! The controller never writes a ConfigMap: its credentials have no write verb on them. The
//! annotation is written on our own route by server-side apply with its own field manager
//! (`iter8-controller-status`), owning that one annotation only, so the route's apply (which
//! never sets annotations) never takes it away and it never counts as drift. The apply carries
//! the route's uid: if the route was deleted meanwhile the call fails instead of creating one.

use std::time::Duration;

use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use routemap_index::live::RouteId;
use routemap_index::report::{EventNote, Report};
use routing_core::RouteMapRef;
use routing_core::keys::{REPORTING_CONTROLLER, STATUS_ANNOTATION, STATUS_FIELD_MANAGER};
use serde_json::json;

use crate::error::{WriteError, write_error};
use crate::kube_types::{
    CoreEvent, DynamicObject, Timestamp, configmap_reference, core_event, httproute_resource, now,
};
use crate::metrics::Metrics;
use routing_core::route::HTTPROUTE_API_VERSION;

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

    /// Publishes the report's Event, then writes its status annotation on `route` (our route
    /// and its uid; `None`: Events only). A throttled Event stops here (the whole report is
    /// retried after the server's delay); any other failure to publish it is logged and
    /// counted, and the status still goes on. Returns whether the Event went out with how the
    /// status write went: a failed status write after its Event is retried alone by the
    /// planner (`WritePlanner::event_out`), never waited out inside this call.
    pub async fn publish(
        &self,
        owner: &RouteMapRef,
        report: &Report,
        route: Option<&(RouteId, String)>,
    ) -> (bool, Result<(), WriteError>) {
        let event_out = match &report.event {
            Some(event) => match self.event(owner, event).await {
                Err(e @ WriteError::Throttled { .. }) => return (false, Err(e)),
                answer => answer.is_ok(),
            },
            None => false,
        };
        let Some((id, uid)) = route else {
            return (event_out, Ok(()));
        };
        let body = json!({
            "apiVersion": HTTPROUTE_API_VERSION,
            "kind": "HTTPRoute",
            "metadata": {
                "name": id.name,
                "namespace": id.namespace,
                "uid": uid,
                "annotations": {
                    STATUS_ANNOTATION: serde_json::to_string(&report.status).unwrap_or_default(),
                },
            },
        });
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &id.namespace, &httproute_resource());
        let params = PatchParams::apply(STATUS_FIELD_MANAGER).force();
        let answer = tokio::time::timeout(
            self.timeout,
            api.patch(&id.name, &params, &Patch::Apply(&body)),
        )
        .await;
        let answer = match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(write_error(e)),
            Err(_) => Err(WriteError::Timeout(self.timeout)),
        };
        match &answer {
            Err(WriteError::Throttled { .. }) => self.metrics.throttled("status"),
            Err(_) => self.metrics.error("status"),
            Ok(()) => {}
        }
        (event_out, answer)
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

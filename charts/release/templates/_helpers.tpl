{{/*
Helpers of the release chart. Every name and namespace is computed here once, so the objects and
the routemap cannot disagree.
*/}}

{{/* Application name: application.metadata.name, else the Helm release name. */}}
{{- define "release.appName" -}}
{{- $app := .Values.application | default dict -}}
{{- $md := $app.metadata | default dict -}}
{{- $md.name | default .Release.Name -}}
{{- end -}}

{{/* Application namespace: application.metadata.namespace, else the Helm release namespace. */}}
{{- define "release.appNamespace" -}}
{{- $app := .Values.application | default dict -}}
{{- $md := $app.metadata | default dict -}}
{{- $md.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Strategy, default none. */}}
{{- define "release.strategy" -}}
{{- $app := .Values.application | default dict -}}
{{- $app.strategy | default "none" -}}
{{- end -}}

{{/*
Everything computed about one version, as JSON. Argument: (list $root $index $version).
  name, namespace            the version's name (<app>-<index> unless metadata.name) and namespace
  deployName/Namespace       the Deployment (deploymentSpecification.metadata overrides)
  svcName/Namespace          the Service (serviceSpecification.metadata overrides); svcName is the
                             routemap version name, the backend and the app-version header value
  containerPort              port of the generated Deployment/Service: version > application > 80
  port                       route port: a custom Service's spec.ports[0].port, else containerPort
  labels, annotations        version metadata merged over application metadata, watch label forced
  weight                     blue-green/mirror weight; default 50, an explicit 0 stays 0
*/}}
{{- define "release.versionInfo" -}}
{{- $root := index . 0 -}}
{{- $i := index . 1 -}}
{{- $v := index . 2 -}}
{{- $app := $root.Values.application -}}
{{- $appMd := $app.metadata | default dict -}}
{{- $md := $v.metadata | default dict -}}
{{- $name := $md.name | default (printf "%s-%d" (include "release.appName" $root) $i) -}}
{{- $ns := $md.namespace | default (include "release.appNamespace" $root) -}}
{{- $labels := merge (dict "iter8.tools/watch" "true") (deepCopy ($md.labels | default dict)) (deepCopy ($appMd.labels | default dict)) -}}
{{- $annotations := merge (deepCopy ($md.annotations | default dict)) (deepCopy ($appMd.annotations | default dict)) -}}
{{- $ds := $v.deploymentSpecification | default dict -}}
{{- $dsMd := $ds.metadata | default dict -}}
{{- $ss := $v.serviceSpecification | default dict -}}
{{- $ssMd := $ss.metadata | default dict -}}
{{- $containerPort := $v.port | default $app.port | default 80 | int -}}
{{- $port := $containerPort -}}
{{- $ssSpec := $ss.spec | default dict -}}
{{- with $ssSpec.ports -}}
{{- with (first .) -}}
{{- if .port -}}
{{- $port = .port | int -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $weight := 50 -}}
{{- if and (hasKey $v "weight") (not (kindIs "invalid" $v.weight)) -}}
{{- $weight = $v.weight | int -}}
{{- end -}}
{{- toJson (dict
  "index" $i
  "name" $name
  "namespace" $ns
  "deployName" ($dsMd.name | default $name)
  "deployNamespace" ($dsMd.namespace | default $ns)
  "svcName" ($ssMd.name | default $name)
  "svcNamespace" ($ssMd.namespace | default $ns)
  "containerPort" $containerPort
  "port" $port
  "labels" $labels
  "annotations" $annotations
  "weight" $weight
) -}}
{{- end -}}

{{/*
Object metadata for a version object. Argument: (list $versionInfo $name $namespace $userMetadata).
The user's metadata (from deploymentSpecification/serviceSpecification) wins key by key, except
the watch label, which is always "true".
*/}}
{{- define "release.versionMetadata" -}}
{{- $vi := index . 0 -}}
{{- $computed := dict "name" (index . 1) "namespace" (index . 2) "labels" (deepCopy $vi.labels) "annotations" (deepCopy $vi.annotations) -}}
{{- $meta := merge (deepCopy (index . 3 | default dict)) $computed -}}
{{- if not (kindIs "map" $meta.labels) -}}
{{- $_ := set $meta "labels" dict -}}
{{- end -}}
{{- $_ := set $meta.labels "iter8.tools/watch" "true" -}}
{{- if not $meta.annotations -}}
{{- $_ := unset $meta "annotations" -}}
{{- end -}}
{{- toYaml $meta -}}
{{- end -}}

{{/*
Checks the values that the schema cannot check. Included at the top of every template, so the
first template rendered fails with the message below, whatever Helm renders first.
*/}}
{{- define "release.validate" -}}
{{- $envs := list "deployment-gtw" "deployment" -}}
{{- $strategies := dict "deployment-gtw" (list "none" "canary" "blue-green" "mirror") "deployment" (list "none") -}}
{{- $all := list "none" "canary" "blue-green" "mirror" -}}
{{- $env := .Values.environment | default "" | toString -}}
{{- if not (has $env $envs) -}}
{{- fail (printf "environment %q is not supported: accepted values are %s (Iter8's deployment-istio and kserve environments are not provided by this chart)" $env (join ", " $envs)) -}}
{{- end -}}
{{- $strategy := include "release.strategy" . -}}
{{- if not (has $strategy $all) -}}
{{- fail (printf "application.strategy %q is not supported: accepted values are %s" $strategy (join ", " $all)) -}}
{{- end -}}
{{- if not (has $strategy (get $strategies $env)) -}}
{{- fail (printf "application.strategy %q is not supported with environment %q: accepted values are %s (use environment deployment-gtw for canary, blue-green or mirror)" $strategy $env (join ", " (get $strategies $env))) -}}
{{- end -}}
{{- $appNs := include "release.appNamespace" . -}}
{{- $seen := dict -}}
{{- range $i, $v := .Values.application.versions -}}
{{- $vi := include "release.versionInfo" (list $ $i $v) | fromJson -}}
{{- $where := printf "application.versions[%d] (%s)" $i $vi.svcName -}}
{{- if and (not $v.deploymentSpecification) (not $v.image) -}}
{{- fail (printf "%s: image is required when no deploymentSpecification is given" $where) -}}
{{- end -}}
{{- if and (eq $strategy "canary") (gt $i 0) (not $v.matches) -}}
{{- fail (printf "%s: a canary candidate needs matches (a Gateway API HTTPRouteMatch list, e.g. matches: [{headers: [{name: traffic, value: test}]}]); without them it would take all traffic" $where) -}}
{{- end -}}
{{- if and (eq $strategy "canary") (eq (int $i) 0) $v.matches -}}
{{- fail (printf "%s: the primary (version 0) is the catch-all and takes no matches; put matches on the candidates" $where) -}}
{{- end -}}
{{- if and (eq $strategy "mirror") (gt (int $vi.weight) 100) -}}
{{- fail (printf "%s: weight %d is a mirror percentage and must be between 0 and 100" $where (int $vi.weight)) -}}
{{- end -}}
{{- if ne $vi.svcNamespace $appNs -}}
{{- fail (printf "%s: the Service is in namespace %q but the route is in %q; a version's Service must be in the application namespace" $where $vi.svcNamespace $appNs) -}}
{{- end -}}
{{- if hasKey $seen $vi.svcName -}}
{{- fail (printf "%s: Service name %q is used by application.versions[%d] too; version names must be unique" $where $vi.svcName (int (get $seen $vi.svcName))) -}}
{{- end -}}
{{- $_ := set $seen $vi.svcName $i -}}
{{- end -}}
{{- with .Values.application.guard -}}
{{- include "release.validateGuard" (list . $strategy) -}}
{{- end -}}
{{- end -}}

{{/*
Checks application.guard beyond its schema with the controller's own rules and messages
(crates/routing-core/src/validate/guard.rs, docs/guard.md), naming application.guard where the
controller names guard: the strategy, the bounds of the durations, window at least interval, and
which queries go with which metrics and objectives. The query templates' variables are left to
the controller (a routemap it refuses keeps its last good spec in force and gets a Warning Event
naming the field). The chart test release_rejects_bad_guards_as_the_controller_does holds the
messages to the controller's. Argument: (list $guard $strategy).
*/}}
{{- define "release.validateGuard" -}}
{{- $g := index . 0 -}}
{{- $strategy := index . 1 -}}
{{- if eq $strategy "none" -}}
{{- fail "application.guard: only with strategy canary, blue-green or mirror (strategy none writes no route to withdraw a candidate from); set application.strategy (environment deployment-gtw) or remove application.guard" -}}
{{- end -}}
{{- $interval := include "release.durationMillis" ($g.interval | default "10s") | atoi -}}
{{- $window := include "release.durationMillis" ($g.window | default "1m") | atoi -}}
{{- $bounds := list (list "interval" $interval 1000 600000 "1s-10m") (list "window" $window 10000 3600000 "10s-1h") -}}
{{- $objectives := $g.objectives | default dict -}}
{{- if $objectives.latencyP99 -}}
{{- $bounds = append $bounds (list "objectives.latencyP99" (include "release.durationMillis" $objectives.latencyP99 | atoi) 1 600000 "1ms-10m") -}}
{{- end -}}
{{- range $bounds -}}
{{- $value := index . 1 -}}
{{- if or (lt $value (index . 2)) (gt $value (index . 3)) -}}
{{- fail (printf "application.guard.%s: %s is out of range %s" (index . 0) (include "release.durationText" $value) (index . 4)) -}}
{{- end -}}
{{- end -}}
{{- if lt $window $interval -}}
{{- fail (printf "application.guard.window: %s is shorter than application.guard.interval %s: requests between two judgements would go unjudged" (include "release.durationText" $window) (include "release.durationText" $interval)) -}}
{{- end -}}
{{- $queries := $g.queries -}}
{{- if and (eq $g.metrics "custom") (not $queries) -}}
{{- fail "application.guard.queries: metrics: custom needs queries (requests, and one per objective)" -}}
{{- end -}}
{{- if and $queries (ne $g.metrics "custom") -}}
{{- fail (printf "application.guard.queries: only with metrics: custom (metrics: %s has its own queries)" $g.metrics) -}}
{{- end -}}
{{- with $queries -}}
{{- if not .requests -}}
{{- fail "application.guard.queries.requests: is required: it counts the requests in the window (see minRequests)" -}}
{{- end -}}
{{- range list "errorRate" "latencyP99" -}}
{{- $objective := hasKey $objectives . -}}
{{- $query := hasKey $queries . -}}
{{- if and $objective (not $query) -}}
{{- fail (printf "application.guard.queries.%s: is required: objectives.%s is set" . .) -}}
{{- end -}}
{{- if and $query (not $objective) -}}
{{- fail (printf "application.guard.queries.%s: objectives.%s is not set, so nothing would judge this query" . .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Milliseconds of a duration as the schema accepts it (Go/Prometheus text: integers with units h,
m, s, ms, largest first, e.g. 1m30s, 500ms).
*/}}
{{- define "release.durationMillis" -}}
{{- $units := dict "h" 3600000 "m" 60000 "s" 1000 "ms" 1 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|h|m|s)" (toString .) -1 -}}
{{- $number := regexFind "^[0-9]+" . -}}
{{- $total = add $total (mul (atoi $number) (get $units (trimPrefix $number .))) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* Milliseconds as Prometheus text, largest units first (90000 -> 1m30s). */}}
{{- define "release.durationText" -}}
{{- $ms := int64 . -}}
{{- if eq $ms 0 -}}
0s
{{- else -}}
{{- range list (list "h" 3600000) (list "m" 60000) (list "s" 1000) (list "ms" 1) -}}
{{- $n := div $ms (index . 1) -}}
{{- if gt $n 0 -}}
{{- $n }}{{ index . 0 -}}
{{- $ms = sub $ms (mul $n (index . 1)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

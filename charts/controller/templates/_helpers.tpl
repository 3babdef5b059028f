{{/* Name of every object of the release (Iter8 1.1 named them after the release, e.g. iter8). */}}
{{- define "controller.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "controller.selectorLabels" -}}
app.kubernetes.io/name: iter8-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "controller.labels" -}}
{{ include "controller.selectorLabels" . }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: iter8
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{/* Log level as the controller spells it ("warning", Iter8 1.1's spelling, becomes "warn"). */}}
{{- define "controller.logLevel" -}}
{{- $l := .Values.logLevel | default "info" | lower -}}
{{- if eq $l "warning" }}warn{{ else }}{{ $l }}{{ end -}}
{{- end -}}

{{/*
The resource types, normalised to lower-case keys {group, version, resource, kind, conditions},
as JSON. Iter8 1.1's Group/Version/Resource/Kind spellings are accepted. Fails on a type without
resource or version, and on Secrets (the controller never reads them).
*/}}
{{- define "controller.resourceTypes" -}}
{{- $out := dict -}}
{{- range $short, $t := .Values.resourceTypes -}}
{{- if $t -}}
{{- $group := "" -}}
{{- if hasKey $t "group" }}{{ $group = $t.group | default "" }}{{ else if hasKey $t "Group" }}{{ $group = $t.Group | default "" }}{{ end -}}
{{- $version := $t.version | default $t.Version | default "" -}}
{{- $resource := $t.resource | default $t.Resource | default "" -}}
{{- $kind := $t.kind | default $t.Kind | default "" -}}
{{- if not $version -}}
{{- fail (printf "resourceTypes.%s: version is required (e.g. v1)" $short) -}}
{{- end -}}
{{- if not $resource -}}
{{- fail (printf "resourceTypes.%s: resource is required (the plural resource name, e.g. deployments)" $short) -}}
{{- end -}}
{{- if and (eq $group "") (eq $resource "secrets") -}}
{{- fail (printf "resourceTypes.%s: Secrets cannot be watched; the controller never reads Secrets" $short) -}}
{{- end -}}
{{- $e := dict "group" $group "version" $version "resource" $resource -}}
{{- if $kind }}{{ $_ := set $e "kind" $kind }}{{ end -}}
{{- with ($t.conditions | default $t.Conditions) }}{{ $_ := set $e "conditions" . }}{{ end -}}
{{- $_ := set $out $short $e -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
RBAC rules for the cluster-wide or namespace-wide role (leases are in a separate Role), as YAML.
Only what the controller calls (crates/k8s-adapter; tests/chart_controller.rs names the call
behind each rule): list/watch on the watched types, one rule per API group; endpointslices
list/watch unless endpointSlices is false; configmaps list/watch only: no write verb on any
ConfigMap, in either scope (the status lives in an annotation on the route the controller wrote,
and Events); httproutes also get (a route the owned-route watch does not see is looked at
before its first create: one that is not ours is never written), patch and create (server-side
apply; the API server checks create when an apply
creates the route) and delete (a route its routemap no longer writes after a rename, only when
it carries that routemap's label and uid as owner); events create (core/v1). No update, no
Secrets.
*/}}
{{- define "controller.rules" -}}
{{- $types := include "controller.resourceTypes" . | fromJson -}}
{{- $byGroup := dict -}}
{{- range $short, $t := $types -}}
{{- $special := or (and (eq $t.group "") (eq $t.resource "configmaps")) (and (eq $t.group "gateway.networking.k8s.io") (eq $t.resource "httproutes")) -}}
{{- if not $special -}}
{{- $_ := set $byGroup $t.group (append (get $byGroup $t.group | default list) $t.resource) -}}
{{- end -}}
{{- end -}}
{{- range $group := keys $byGroup | sortAlpha }}
- apiGroups: [{{ $group | quote }}]
  resources: [{{ get $byGroup $group | uniq | sortAlpha | join ", " }}]
  verbs: [list, watch]
{{- end }}
{{- if ne .Values.endpointSlices false }}
- apiGroups: ["discovery.k8s.io"]
  resources: [endpointslices]
  verbs: [list, watch]
{{- end }}
- apiGroups: [""]
  resources: [configmaps]
  verbs: [list, watch]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: [httproutes]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* Names, labels and derived settings shared by the templates. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just the release name when it already contains the chart name. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* What selects the operator's Pods; never changes across upgrades. */}}
{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every object. */}}
{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" . }}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ferry
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of an object of the operator component. */}}
{{- define "ferry.operatorLabels" -}}
{{ include "ferry.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest pins it. */}}
{{- define "ferry.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "ferry.leaseName" -}}
{{- default (include "ferry.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* "true" when the artifact store is a file:// path on a volume. */}}
{{- define "ferry.fileStore" -}}
{{- if hasPrefix "file://" .Values.artifacts.store }}true{{ end }}
{{- end }}

{{/* The mount path of a file:// store: file:///var/lib/ferry/artifacts → /var/lib/ferry/artifacts. */}}
{{- define "ferry.fileStorePath" -}}
{{- trimPrefix "file://" .Values.artifacts.store | trimSuffix "/" }}
{{- end }}

{{/* The artifact server of a file:// store: its name (Deployment and Service), selector and URL. */}}
{{- define "ferry.artifactServerName" -}}
{{- printf "%s-artifacts" (include "ferry.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.artifactServerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: artifact-server
{{- end }}

{{- define "ferry.artifactServerUrl" -}}
{{- printf "http://%s.%s.svc:%v" (include "ferry.artifactServerName" .) .Release.Namespace .Values.artifacts.server.port }}
{{- end }}

{{- define "ferry.signingKeySecretName" -}}
{{- default (printf "%s-artifact-signing-key" (include "ferry.fullname" .)) .Values.artifacts.server.signingKeySecret }}
{{- end }}

{{/* The claim holding a file:// store: an existing one, or the chart's. */}}
{{- define "ferry.artifactClaim" -}}
{{- if .Values.artifacts.persistence.existingClaim }}
{{- .Values.artifacts.persistence.existingClaim }}
{{- else if .Values.artifacts.persistence.enabled }}
{{- printf "%s-artifacts" (include "ferry.fullname" .) }}
{{- end }}
{{- end }}

{{- define "ferry.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "ferry.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ferry.postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: postgresql
{{- end }}

{{/*
Checks the combinations a JSON schema cannot express well; each message says what to change.
*/}}
{{- define "ferry.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount above 1 needs leaderElection.enabled=true: without a Lease every replica would reconcile the same runs" }}
{{- end }}
{{- if and (include "ferry.fileStore" .) (not (include "ferry.artifactClaim" .)) }}
{{- fail (printf "artifacts.store is %s but artifacts.persistence is disabled and no existingClaim is set: the artifact server would have no volume; enable artifacts.persistence, set artifacts.persistence.existingClaim, or use a gs:// store" .Values.artifacts.store) }}
{{- end }}
{{- if and (include "ferry.fileStore" .) (eq (include "ferry.fileStorePath" .) "") }}
{{- fail "artifacts.store file:/// needs a path, e.g. file:///var/lib/ferry/artifacts" }}
{{- end }}
{{- if ge (int .Values.leaderElection.renewDeadlineSeconds) (int .Values.leaderElection.leaseDurationSeconds) }}
{{- fail "leaderElection.renewDeadlineSeconds must be below leaderElection.leaseDurationSeconds" }}
{{- end }}
{{- if and .Values.database.external.secretName .Values.database.postgresql.enabled }}
{{- fail "set either database.external.secretName or database.postgresql.enabled, not both" }}
{{- end }}
{{- end }}

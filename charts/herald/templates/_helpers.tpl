{{/* Names, labels and the rendered Herald config shared by the templates. */}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, cut to leave room for the "-migrate" suffix. */}}
{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "herald.sqlite" -}}
{{- if eq .Values.database.driver "sqlite" }}true{{ end }}
{{- end }}

{{/*
herald.config is /etc/herald/herald.yaml: the values blocks that are Herald
config keys, 1:1, and only the selected adapter's block. Keys the values leave
out keep Herald's defaults. Secrets never appear here: a `<key>_secret`
value in a block becomes the variable HERALD_<BLOCK>_<KEY> (herald.env).
destinations go as they are (the schema refuses `_secret` references there:
destinations are config-file only, so their secrets come from mounted files).
*/}}
{{- define "herald.config" -}}
{{- $database := include "herald.block" .Values.database | fromYaml }}
{{- if and (not $database.dsn) (include "herald.sqlite" .) }}
{{- $_ := set $database "dsn" "/data/herald.db" }}
{{- end -}}
database:
  {{- toYaml $database | nindent 2 }}
adapter: {{ .Values.adapter | quote }}
{{- with include "herald.block" (index .Values .Values.adapter) | fromYaml }}
{{ $.Values.adapter }}:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.destinations }}
destinations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.relay }}
relay:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "herald.block" .Values.delivery_log | fromYaml }}
delivery_log:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.log }}
log:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "herald.block" .Values.enricher | fromYaml }}
enricher:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "herald.block" .Values.tracing | fromYaml }}
tracing:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "herald.block" .Values.subscriptions | fromYaml }}
subscriptions:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .Values.health.enabled }}
http:
  listen: ":{{ .Values.health.port }}"
  {{- if .Values.health.consoleReadOnly }}
  console_read_only: true
  {{- end }}
  {{- with .Values.health.consoleSampleEvery }}
  console_sample_every: {{ . | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/* herald.block is a config block without its `_secret` references and empty values. */}}
{{- define "herald.block" -}}
{{- $out := dict }}
{{- range $k, $v := . }}
{{- if and (not (hasSuffix "_secret" $k)) (or $v (kindIs "bool" $v) (kindIs "float64" $v) (kindIs "int64" $v)) }}
{{- $_ := set $out $k $v }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
herald.env is the environment every Herald container gets. A value
`<key>_secret: {name, key}` in the database, enricher or subscriptions block or
the selected adapter's block becomes HERALD_<BLOCK>_<KEY> from that Secret (the Secret's
key defaults to the config key's name): database.dsn_secret → HERALD_DATABASE_DSN,
enricher.portal_dsn_secret → HERALD_ENRICHER_PORTAL_DSN,
nats.password_secret → HERALD_NATS_PASSWORD, webhook.secrets_secret →
HERALD_WEBHOOK_SECRETS (comma-separated, as Herald reads lists from the
environment), subscriptions.secrets_key_secret →
HERALD_SUBSCRIPTIONS_SECRETS_KEY. The http tokens live under health, beside the port they
guard: health.ingestTokenSecret → HERALD_HTTP_INGEST_TOKEN,
health.adminTokenSecret → HERALD_HTTP_ADMIN_TOKEN.
*/}}
{{- define "herald.env" -}}
{{- range $block := list "database" "enricher" "subscriptions" .Values.adapter }}
{{- range $k, $v := (index $.Values $block | default dict) }}
{{- if and (hasSuffix "_secret" $k) (kindIs "map" $v) }}
{{- if $v.name }}
{{- $key := trimSuffix "_secret" $k }}
- name: {{ printf "HERALD_%s_%s" $block $key | upper }}
  valueFrom:
    secretKeyRef:
      name: {{ $v.name }}
      key: {{ $v.key | default $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.health.ingestTokenSecret }}
{{- if .name }}
- name: HERALD_HTTP_INGEST_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key | default "ingest_token" }}
{{- end }}
{{- end }}
{{- with .Values.health.adminTokenSecret }}
{{- if .name }}
- name: HERALD_HTTP_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key | default "admin_token" }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
herald.containerBase is what the relay container and the migration containers
share: image, environment, security context and mounts. They differ only in
name, args, ports and probes.
*/}}
{{- define "herald.containerBase" -}}
image: {{ include "herald.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- with (include "herald.env" . | trim) }}
env:
  {{- . | nindent 2 }}
{{- end }}
{{- with .Values.extraEnvFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: config
    mountPath: /etc/herald
    readOnly: true
  - name: tmp
    mountPath: /tmp
  {{- if include "herald.sqlite" . }}
  - name: data
    mountPath: /data
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Volumes for herald.containerBase's mounts; $configMap names the config. */}}
{{- define "herald.volumes" -}}
{{- $ := index . 0 }}
{{- $configMap := index . 1 }}
- name: config
  configMap:
    name: {{ $configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if include "herald.sqlite" $ }}
- name: data
  {{- if not $.Values.persistence.enabled }}
  emptyDir: {}
  {{- else }}
  persistentVolumeClaim:
    claimName: {{ $.Values.persistence.existingClaim | default (printf "%s-data" (include "herald.fullname" $)) }}
  {{- end }}
{{- end }}
{{- with $.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
herald.validate stops rendering with a message naming the value. The schema
already refuses all of these (so `helm lint` does too, where `fail` only logs);
this is the message for `--skip-schema-validation`, and for what the schema
cannot say.
*/}}
{{- define "herald.validate" -}}
{{- $driver := .Values.database.driver }}
{{- if and (eq $driver "sqlite") (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount: %d relays on SQLite: SQLite allows one writer, so set replicaCount: 1, or use database.driver postgres or mysql to run several relays" (int .Values.replicaCount)) }}
{{- end }}
{{- if and (ne $driver "sqlite") (not (dig "dsn_secret" "name" "" .Values.database)) (not .Values.database.dsn) }}
{{- fail (printf "database: driver %s needs a DSN: set database.dsn_secret.name (a Secret holding it, recommended) or database.dsn" $driver) }}
{{- end }}
{{- if and (eq .Values.adapter "nats") (eq (toString .Values.nats.url) "embedded") }}
{{- fail "nats.url: embedded runs a private NATS server inside each relay pod that no consumer can reach; point nats.url at your NATS cluster (docs/deploy.md pairs the chart with the official NATS chart)" }}
{{- end }}
{{- if and (dig "adminTokenSecret" "name" "" .Values.health) (not .Values.health.enabled) }}
{{- fail "health.adminTokenSecret: the admin API is served on the operations port, so it needs health.enabled (which renders http.listen)" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not (and .Values.health.enabled .Values.service.enabled)) }}
{{- fail "serviceMonitor.enabled: needs health.enabled and service.enabled (the ServiceMonitor scrapes /metrics through the Service)" }}
{{- end }}
{{- end }}

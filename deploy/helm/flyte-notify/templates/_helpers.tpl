{{/* Names, labels, the config file and the checks every workload template runs first. */}}

{{- define "flyte-notify.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flyte-notify.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flyte-notify.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flyte-notify.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flyte-notify.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flyte-notify.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: notifications
app.kubernetes.io/part-of: flyte
{{- end -}}

{{- define "flyte-notify.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flyte-notify.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flyte-notify.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Paths inside the pod. */}}
{{- define "flyte-notify.dataDir" -}}/var/lib/flyte-notify{{- end -}}
{{- define "flyte-notify.configDir" -}}
{{- if .Values.existingConfigMap.name -}}/etc/flyte-notify/merged{{- else -}}/etc/flyte-notify{{- end -}}
{{- end -}}
{{- define "flyte-notify.configPath" -}}{{ include "flyte-notify.configDir" . }}/flyte-notify.yaml{{- end -}}
{{- define "flyte-notify.tlsDir" -}}/etc/flyte-notify-tls{{- end -}}
{{- define "flyte-notify.authDir" -}}/etc/flyte-notify-auth{{- end -}}

{{/*
The flyteNotify: section: the operator's configmap.flyteNotify with the keys the chart owns added
(ports, paths, store, shutdown timing, TLS and token files mounted from Secrets).
*/}}
{{- define "flyte-notify.flyteNotifyConfig" -}}
{{- $v := .Values -}}
{{- $own := dict
  "listen" (printf "0.0.0.0:%d" (int $v.service.port))
  "dataDir" (include "flyte-notify.dataDir" .)
  "store" $v.store
  "shutdownDrainDelay" (printf "%ds" (int $v.shutdown.drainDelaySeconds))
  "shutdownGrace" (printf "%ds" (int $v.shutdown.graceSeconds))
-}}
{{- if $v.metrics.enabled -}}
{{- $_ := set $own "metricsListen" (printf "0.0.0.0:%d" (int $v.metrics.port)) -}}
{{- end -}}
{{- if $v.tls.secretName -}}
{{- $tls := dict "certFile" (printf "%s/tls.crt" (include "flyte-notify.tlsDir" .)) "keyFile" (printf "%s/tls.key" (include "flyte-notify.tlsDir" .)) -}}
{{- if $v.tls.clientAuth -}}
{{- $_ := set $tls "clientCaFile" (printf "%s/ca.crt" (include "flyte-notify.tlsDir" .)) -}}
{{- end -}}
{{- $_ := set $own "tls" $tls -}}
{{- end -}}
{{- if $v.auth.tokensSecret.name -}}
{{- $_ := set $own "auth" (dict "tokensFile" (printf "%s/tokens" (include "flyte-notify.authDir" .))) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (deepCopy $v.configmap.flyteNotify) $own) -}}
{{- end -}}

{{/* The whole config file (without existingConfigMap) or its flyteNotify: half (with it). */}}
{{- define "flyte-notify.configFile" -}}
# Rendered by the flyte-notify Helm chart; `flyte-notify check-config --config FILE` validates it.
{{- if and (not .Values.existingConfigMap.name) .Values.configmap.notifications }}
notifications:
{{- toYaml .Values.configmap.notifications | nindent 2 }}
{{- end }}
flyteNotify:
{{- include "flyte-notify.flyteNotifyConfig" . | nindent 2 }}
{{- end -}}

{{/*
What the schema cannot say. Each message names the value to change.
*/}}
{{- define "flyte-notify.validate" -}}
{{- $v := .Values -}}
{{- if and (eq $v.store "sqlite") (gt (int $v.replicas) 1) -}}
{{- fail (printf "replicas: %d with store: sqlite is refused: the embedded SQLite ledger is one file that one process owns (a second one is refused by flyte-notify itself). Set replicas: 1, or for several replicas set store: postgres and postgres.dsnSecret.name (a Secret with the PostgreSQL DSN)." (int $v.replicas)) -}}
{{- end -}}
{{- if and (eq $v.store "postgres") (not $v.postgres.dsnSecret.name) -}}
{{- fail "store: postgres needs postgres.dsnSecret.name: an existing Secret whose key postgres.dsnSecret.key (default dsn) holds the DSN, e.g. postgres://flyte-notify:PASSWORD@db:5432/flyte_notify?sslmode=require" -}}
{{- end -}}
{{- if and $v.existingConfigMap.name $v.configmap.notifications -}}
{{- fail (printf "configmap.notifications and existingConfigMap.name (%s) both give the notifications: block; keep one (existingConfigMap reads it from that ConfigMap's key %s)" $v.existingConfigMap.name $v.existingConfigMap.key) -}}
{{- end -}}
{{- $budget := add (int $v.shutdown.drainDelaySeconds) (int $v.shutdown.graceSeconds) -}}
{{- if le (int $v.terminationGracePeriodSeconds) (int $budget) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than shutdown.drainDelaySeconds + shutdown.graceSeconds (%d), or the kubelet kills the pod before its sends are recorded" (int $v.terminationGracePeriodSeconds) (int $budget)) -}}
{{- end -}}
{{- $owned := dict
  "listen" "service.port"
  "dataDir" "the chart (the volume at /var/lib/flyte-notify)"
  "store" "store"
  "metricsListen" "metrics.enabled and metrics.port"
  "shutdownGrace" "shutdown.graceSeconds"
  "shutdownDeadline" "shutdown.graceSeconds"
  "shutdownDrainDelay" "shutdown.drainDelaySeconds"
  "tls" "tls.secretName and tls.clientAuth"
-}}
{{- range $key, $instead := $owned -}}
{{- if hasKey $v.configmap.flyteNotify $key -}}
{{- fail (printf "configmap.flyteNotify.%s is set by the chart: use %s instead" $key $instead) -}}
{{- end -}}
{{- end -}}
{{- with $v.configmap.flyteNotify.postgres -}}
{{- if hasKey . "dsn" -}}
{{- fail "configmap.flyteNotify.postgres.dsn: the DSN comes from a Secret, postgres.dsnSecret (it reaches the process as FLYTE_NOTIFY_POSTGRES_DSN, which wins over the file)" -}}
{{- end -}}
{{- end -}}
{{- if $v.auth.tokensSecret.name -}}
{{- with $v.configmap.flyteNotify.auth -}}
{{- if hasKey . "tokensFile" -}}
{{- fail "configmap.flyteNotify.auth.tokensFile and auth.tokensSecret.name both name the tokens; keep one" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $reserved := list "/etc/flyte-notify" (include "flyte-notify.dataDir" .) "/tmp" (include "flyte-notify.tlsDir" .) (include "flyte-notify.authDir" .) -}}
{{- range $v.secretMounts -}}
{{- if has (trimSuffix "/" .mountPath) $reserved -}}
{{- fail (printf "secretMounts %s: mountPath %s is used by the chart; pick another, e.g. /etc/secrets" .name .mountPath) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The probes: native gRPC, or TCP checks when TLS is on (the kubelet's gRPC probe has no TLS). */}}
{{- define "flyte-notify.probe" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $p := index . 2 -}}
{{- if $root.Values.tls.secretName }}
tcpSocket:
  port: grpc
{{- else }}
grpc:
  port: {{ int $root.Values.service.port }}
  service: {{ $service | quote }}
{{- end }}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $p $k }}
{{ $k }}: {{ int (index $p $k) }}
{{- end }}
{{- end }}
{{- end -}}

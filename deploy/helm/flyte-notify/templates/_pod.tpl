{{/* The pod template both shapes share (StatefulSet for sqlite, Deployment for postgres). */}}
{{- define "flyte-notify.podTemplate" -}}
{{- $v := .Values -}}
metadata:
  labels:
    {{- include "flyte-notify.labels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A change of the rendered config file rolls the pods (flyte-notify reads it at start only).
    # With existingConfigMap, that ConfigMap's own changes need a `kubectl rollout restart`.
    checksum/config: {{ include "flyte-notify.configFile" . | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "flyte-notify.serviceAccountName" . }}
  automountServiceAccountToken: {{ $v.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ int $v.terminationGracePeriodSeconds }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if $v.existingConfigMap.name }}
  initContainers:
    # flyte-notify reads one file: the notifications: block from the existing ConfigMap, then
    # the chart's flyteNotify: section (the two have different top-level keys, so the result is
    # one YAML mapping; a duplicate key would be refused by flyte-notify at start).
    - name: config
      image: {{ printf "%s:%s" $v.configMerge.image.repository $v.configMerge.image.tag }}
      imagePullPolicy: {{ $v.configMerge.image.pullPolicy }}
      command:
        - sh
        - -ec
        - '{ cat "$1"; echo; cat "$2"; } > "$3"'
        - merge
        - /etc/flyte-notify/base/notifications.yaml
        - /etc/flyte-notify/chart/flyte-notify.yaml
        - {{ include "flyte-notify.configPath" . }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      resources:
        {{- toYaml $v.configMerge.resources | nindent 8 }}
      volumeMounts:
        - name: base-config
          mountPath: /etc/flyte-notify/base
          readOnly: true
        - name: config
          mountPath: /etc/flyte-notify/chart
          readOnly: true
        - name: merged-config
          mountPath: {{ include "flyte-notify.configDir" . }}
  {{- end }}
  containers:
    - name: flyte-notify
      image: {{ include "flyte-notify.image" . }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      # listen, dataDir and the rest are in the file, so check-config sees what serve runs.
      args: ["serve", "--config", {{ include "flyte-notify.configPath" . | quote }}]
      ports:
        - name: grpc
          containerPort: {{ int $v.service.port }}
          protocol: TCP
        {{- if $v.metrics.enabled }}
        - name: metrics
          containerPort: {{ int $v.metrics.port }}
          protocol: TCP
        {{- end }}
      {{- if or (eq $v.store "postgres") $v.secretEnv $v.extraEnv }}
      env:
        {{- if eq $v.store "postgres" }}
        - name: FLYTE_NOTIFY_POSTGRES_DSN
          valueFrom:
            secretKeyRef:
              name: {{ $v.postgres.dsnSecret.name }}
              key: {{ $v.postgres.dsnSecret.key }}
        {{- end }}
        {{- range $v.secretEnv }}
        - name: {{ .name }}
          valueFrom:
            secretKeyRef:
              name: {{ .secretName }}
              key: {{ .key }}
              {{- if hasKey . "optional" }}
              optional: {{ .optional }}
              {{- end }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      startupProbe:
        {{- include "flyte-notify.probe" (list . "flytenotify.v1.NotificationService" $v.probes.startup) | trim | nindent 8 }}
      livenessProbe:
        {{- include "flyte-notify.probe" (list . "" $v.probes.liveness) | trim | nindent 8 }}
      readinessProbe:
        {{- include "flyte-notify.probe" (list . "flytenotify.v1.NotificationService" $v.probes.readiness) | trim | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: {{ include "flyte-notify.dataDir" . }}
        - name: tmp
          mountPath: /tmp
        {{- if $v.existingConfigMap.name }}
        - name: merged-config
          mountPath: {{ include "flyte-notify.configDir" . }}
          readOnly: true
        {{- else }}
        - name: config
          mountPath: {{ include "flyte-notify.configDir" . }}
          readOnly: true
        {{- end }}
        {{- if $v.tls.secretName }}
        - name: tls
          mountPath: {{ include "flyte-notify.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if $v.auth.tokensSecret.name }}
        - name: auth-tokens
          mountPath: {{ include "flyte-notify.authDir" . }}
          readOnly: true
        {{- end }}
        {{- range $v.secretMounts }}
        - name: secret-{{ .name }}
          mountPath: {{ .mountPath }}
          readOnly: true
        {{- end }}
  volumes:
    {{- if or (eq $v.store "postgres") (not $v.persistence.enabled) }}
    # The shared ledger is in PostgreSQL; the data dir holds only a Maildir, if one is used.
    - name: data
      emptyDir: {}
    {{- end }}
    # SQLite may spill large sorts to a temp file; the root filesystem is read-only.
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    - name: config
      configMap:
        name: {{ include "flyte-notify.fullname" . }}
    {{- if $v.existingConfigMap.name }}
    - name: base-config
      configMap:
        name: {{ $v.existingConfigMap.name }}
        items:
          - key: {{ $v.existingConfigMap.key }}
            path: notifications.yaml
    - name: merged-config
      emptyDir:
        medium: Memory
        sizeLimit: 1Mi
    {{- end }}
    {{- if $v.tls.secretName }}
    - name: tls
      secret:
        secretName: {{ $v.tls.secretName }}
        defaultMode: 0440
        items:
          - { key: tls.crt, path: tls.crt }
          - { key: tls.key, path: tls.key }
          {{- if $v.tls.clientAuth }}
          - { key: ca.crt, path: ca.crt }
          {{- end }}
    {{- end }}
    {{- if $v.auth.tokensSecret.name }}
    - name: auth-tokens
      secret:
        secretName: {{ $v.auth.tokensSecret.name }}
        defaultMode: 0440
        items:
          - key: {{ $v.auth.tokensSecret.key }}
            path: tokens
    {{- end }}
    {{- range $v.secretMounts }}
    - name: secret-{{ .name }}
      secret:
        secretName: {{ .secretName }}
        defaultMode: 0440
        {{- with .items }}
        items:
          {{- toYaml . | nindent 10 }}
        {{- end }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

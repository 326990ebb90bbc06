{{/* Chart name, overridable. */}}
{{- define "imagepull-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name when it already contains the chart name, so
the default release "imagepull-exporter" gives the same names as deploy/base. */}}
{{- define "imagepull-exporter.fullname" -}}
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

{{- define "imagepull-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagepull-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "imagepull-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "imagepull-exporter.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "imagepull-exporter.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The selector labels of the pods that run the Kubernetes join (the
Deployment or the shards), not the node probes. */}}
{{- define "imagepull-exporter.exporterSelectorLabels" -}}
{{ include "imagepull-exporter.selectorLabels" . }}
app.kubernetes.io/component: exporter
{{- end -}}

{{/* A map of labels or annotations with every value a quoted string: --set
makes booleans and integers of "true" and "1", which Kubernetes refuses in
labels and annotations. */}}
{{- define "imagepull-exporter.stringMap" -}}
{{- range $k, $v := . }}
{{ $k | quote }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}
{{/* The same, to be included after a key at indent: "\n" plus the lines, or
nothing for an empty map. Usage: include "imagepull-exporter.stringMapAt"
(list 4 .Values.podLabels) */}}
{{- define "imagepull-exporter.stringMapAt" -}}
{{- $at := index . 0 -}}
{{- with index . 1 -}}
{{- include "imagepull-exporter.stringMap" . | trim | nindent $at -}}
{{- end -}}
{{- end -}}

{{/* Whether the cluster serves the prometheus-operator's API
(ServiceMonitor, PodMonitor, PrometheusRule): "true" or "". `helm template`
knows only what --api-versions tells it. */}}
{{- define "imagepull-exporter.hasMonitoringAPI" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{- define "imagepull-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imagepull-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "imagepull-exporter.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The configuration file: values.config when set, else files/config.yml
(a generated copy of deploy/base/config.yml). */}}
{{- define "imagepull-exporter.config" -}}
{{- if .Values.config -}}
{{- toYaml .Values.config -}}
{{- else -}}
{{- .Files.Get "files/config.yml" -}}
{{- end -}}
{{- end -}}

{{/* The probes every pod of the chart has. With webConfig the endpoints
want TLS and basic auth, which the kubelet's HTTP probes could only pass with
the password in the pod spec: TCP checks of the port instead. */}}
{{- define "imagepull-exporter.probes" -}}
{{- if .Values.webConfig.enabled -}}
livenessProbe:
  tcpSocket:
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  tcpSocket:
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- else -}}
livenessProbe:
  httpGet:
    path: /-/healthy
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /-/ready
    port: http
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}
{{- end -}}

{{/* webConfig: the flag, the mount and the volume (two Secrets under
/etc/imagepull_exporter/web/, as deploy/components/web-config). */}}
{{- define "imagepull-exporter.webConfigArg" -}}
- --web.config.file=/etc/imagepull_exporter/web/web-config.yml
{{- end -}}
{{- define "imagepull-exporter.webConfigMount" -}}
- name: web
  mountPath: /etc/imagepull_exporter/web
  readOnly: true
{{- end -}}
{{- define "imagepull-exporter.webConfigVolume" -}}
{{- $full := include "imagepull-exporter.fullname" . -}}
- name: web
  projected:
    sources:
      - secret:
          name: {{ default (printf "%s-web-config" $full) .Values.webConfig.configSecret }}
          items:
            - key: web-config.yml
              path: web-config.yml
      - secret:
          name: {{ default (printf "%s-tls" $full) .Values.webConfig.tlsSecret }}
          items:
            - key: tls.crt
              path: tls.crt
            - key: tls.key
              path: tls.key
{{- end -}}

{{/* webConfig: how Prometheus scrapes (https, the CA of the TLS Secret, basic
auth from the scrape Secret). */}}
{{- define "imagepull-exporter.webConfigScrape" -}}
{{- $full := include "imagepull-exporter.fullname" . -}}
{{- $scrape := default (printf "%s-scrape" $full) .Values.webConfig.scrapeSecret -}}
scheme: https
tlsConfig:
  ca:
    secret:
      name: {{ default (printf "%s-tls" $full) .Values.webConfig.tlsSecret }}
      key: ca.crt
  serverName: {{ default (printf "%s.%s.svc" $full .Release.Namespace) .Values.webConfig.serverName }}
basicAuth:
  username:
    name: {{ $scrape }}
    key: username
  password:
    name: {{ $scrape }}
    key: password
{{- end -}}

{{/* credentials: the mount and the projected volume of module credentials
(components/credentials). */}}
{{- define "imagepull-exporter.credentialsMount" -}}
- name: credentials
  mountPath: /etc/imagepull_exporter/credentials
  readOnly: true
{{- end -}}
{{- define "imagepull-exporter.credentialsVolume" -}}
{{- $full := include "imagepull-exporter.fullname" . -}}
- name: credentials
  projected:
    sources:
      {{- if or .Values.credentials.secrets .Values.credentials.configMaps }}
      {{- range .Values.credentials.secrets }}
      - secret:
          {{- toYaml . | nindent 10 }}
      {{- end }}
      {{- range .Values.credentials.configMaps }}
      - configMap:
          {{- toYaml . | nindent 10 }}
      {{- end }}
      {{- else }}
      - secret:
          name: {{ $full }}-credentials
          optional: true
      - configMap:
          name: {{ $full }}-credentials
          optional: true
      {{- end }}
{{- end -}}

{{/* Pod template of the exporter that runs the Kubernetes join: the
Deployment, or each StatefulSet shard. */}}
{{- define "imagepull-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "imagepull-exporter.exporterSelectorLabels" . | nindent 4 }}
    {{- include "imagepull-exporter.stringMapAt" (list 4 .Values.podLabels) }}
  annotations:
    checksum/config: {{ include "imagepull-exporter.config" . | sha256sum }}
    {{- include "imagepull-exporter.stringMapAt" (list 4 .Values.podAnnotations) }}
spec:
  serviceAccountName: {{ include "imagepull-exporter.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: exporter
      image: {{ include "imagepull-exporter.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file=/etc/imagepull_exporter/config.yml
        - --web.listen-address=:{{ .Values.port }}
        {{- if .Values.kube.discoverTargets }}
        - --kube.discover-targets
        {{- end }}
        {{- if not .Values.kube.watchEvents }}
        - --no-kube.watch-events
        {{- end }}
        {{- if .Values.sharding.enabled }}
        - --shard.from-hostname
        - --total-shards={{ .Values.sharding.replicas }}
        {{- end }}
        {{- if .Values.pullSecrets.enabled }}
        - --kube.use-pull-secrets
        {{- end }}
        {{- if .Values.webConfig.enabled }}
        {{- include "imagepull-exporter.webConfigArg" . | nindent 8 }}
        {{- end }}
        {{- if .Values.credentialProviders.enabled }}
        - --kube.credential-provider-config=/etc/imagepull_exporter/credential-providers/credential-providers.yaml
        - --kube.credential-provider-bin-dir={{ .Values.credentialProviders.binDir }}
        {{- end }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        # The Go runtime's soft memory limit, from the container's limit.
        - name: GOMEMLIMIT
          valueFrom:
            resourceFieldRef:
              resource: limits.memory
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.port }}
          protocol: TCP
      {{- include "imagepull-exporter.probes" . | nindent 6 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/imagepull_exporter
          readOnly: true
        {{- if .Values.webConfig.enabled }}
        {{- include "imagepull-exporter.webConfigMount" . | nindent 8 }}
        {{- end }}
        {{- if .Values.credentials.enabled }}
        {{- include "imagepull-exporter.credentialsMount" . | nindent 8 }}
        {{- end }}
        {{- if .Values.credentialProviders.enabled }}
        - name: credential-providers
          mountPath: /etc/imagepull_exporter/credential-providers
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "imagepull-exporter.fullname" . }}
    {{- if .Values.webConfig.enabled }}
    {{- include "imagepull-exporter.webConfigVolume" . | nindent 4 }}
    {{- end }}
    {{- if .Values.credentials.enabled }}
    {{- include "imagepull-exporter.credentialsVolume" . | nindent 4 }}
    {{- end }}
    {{- if .Values.credentialProviders.enabled }}
    - name: credential-providers
      configMap:
        name: {{ default (printf "%s-credential-providers" (include "imagepull-exporter.fullname" .)) .Values.credentialProviders.configMap }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- include "imagepull-exporter.stringMapAt" (list 4 .) }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range . }}
    {{- $c := deepCopy . }}
    {{- if not $c.labelSelector }}
    {{- $_ := set $c "labelSelector" (dict "matchLabels" (include "imagepull-exporter.exporterSelectorLabels" $ | fromYaml)) }}
    {{- end }}
    - {{ toYaml $c | indent 6 | trim }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* The mixin's rule groups (files/prometheus-rule-groups.yaml, generated)
as the PrometheusRule's spec, without prometheusRule.disabledAlerts and with
prometheusRule.additionalRuleLabels on every alert. A disabled name that is
not an alert of the mixin fails the install: a typo must not keep an alert
someone meant to drop. A group left without rules is dropped. */}}
{{- define "imagepull-exporter.ruleGroups" -}}
{{- $pr := .Values.prometheusRule -}}
{{- $extra := dict -}}
{{- range $k, $v := $pr.additionalRuleLabels -}}
{{- $_ := set $extra $k (toString $v) -}}
{{- end -}}
{{- $known := list -}}
{{- $groups := list -}}
{{- range $g := (.Files.Get "files/prometheus-rule-groups.yaml" | fromYaml).groups -}}
{{- $rules := list -}}
{{- range $r := $g.rules -}}
{{- if not $r.alert -}}
{{- $rules = append $rules $r -}}
{{- else -}}
{{- $known = append $known $r.alert -}}
{{- if not (has $r.alert $pr.disabledAlerts) -}}
{{- if $extra -}}
{{- $r = set (deepCopy $r) "labels" (merge (deepCopy (default dict $r.labels)) $extra) -}}
{{- end -}}
{{- $rules = append $rules $r -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $rules -}}
{{- $groups = append $groups (set (deepCopy $g) "rules" $rules) -}}
{{- end -}}
{{- end -}}
{{- range $pr.disabledAlerts -}}
{{- if not (has . $known) -}}
{{- fail (printf "prometheusRule.disabledAlerts: %q is not an alert of the mixin; its alerts are %s" . (join ", " ($known | uniq | sortAlpha))) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "groups" $groups) -}}
{{- end -}}

{{/* A ServiceMonitor's or PodMonitor's relabelings: the job label the
mixin selects first, then the user's; and the user's metricRelabelings.
Usage: include "imagepull-exporter.scrapeRelabelings" (list .Values.serviceMonitor jobName) */}}
{{- define "imagepull-exporter.scrapeRelabelings" -}}
{{- $m := index . 0 -}}
relabelings:
  - action: replace
    targetLabel: job
    replacement: {{ index . 1 }}
  {{- with $m.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $m.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

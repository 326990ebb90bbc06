// Everything a setup may need to change lives here. Override with
//   (import 'imagepull-mixin/mixin.libsonnet') + { _config+:: { imagepullSelector: 'job="imagepull"' } }
{
  _config+:: {
    // Selectors -----------------------------------------------------------

    // Selects the exporter's own series: probe metrics, the Kubernetes join and its `up`.
    imagepullSelector: 'job="imagepull-exporter"',
    // Selects every exporter that probes mirrors: the central Deployment (config `mirrors:`) and the node-probe DaemonSet, which reads each node's containerd/CRI-O mirrors and whose job deploy/ names imagepull-exporter-node.
    imagepullMirrorSelector: 'job=~"imagepull-exporter|imagepull-exporter-node"',
    // Selects kube-state-metrics; only the Cluster impact dashboard uses it, to cross-check waiting containers.
    kubeStateMetricsSelector: 'job="kube-state-metrics"',
    // Selects the kubelets' /metrics endpoint, for ImagePullKubeletPullErrorsHigh (clusters that scrape kubelets).
    kubeletSelector: 'job="kubelet", metrics_path="/metrics"',
    // Label that names the node on kubelet series (kube-prometheus keeps the node in `instance`; some setups relabel it to `node`).
    kubeletNodeLabel: 'instance',

    // Multi-cluster -------------------------------------------------------

    // Label that tells clusters apart when one Prometheus/Thanos/Mimir sees several; kept in every aggregation and join.
    clusterLabel: 'cluster',
    // Show the dashboards' cluster variable; it always exists so queries stay the same, hidden in single-cluster setups.
    showMultiCluster: false,

    // Alert metadata ------------------------------------------------------

    // Runbook link per alert; %s becomes the alert name in lower case, which is GitHub's anchor for the runbook heading.
    runbookURLPattern: 'https://github.com/imagepull/imagepull_exporter/blob/main/mixin/runbook.md#%s',
    // Severity label values, so setups with other names (page/ticket, P1/P3) can map them.
    severityCritical: 'critical',
    severityWarning: 'warning',
    severityInfo: 'info',
    // Severity of ImagePullNodesRateLimited: the blocked containers page or warn through ImagePullPodsBlocked already; this one says why, for the team that owns the nodes' egress.
    nodesRateLimitedSeverity: $._config.severityWarning,
    // Severity of ImagePullFailureRateHigh: pulls that fail and then succeed on a retry slow rollouts but block nothing (ImagePullPodsBlocked covers containers that stay blocked).
    pullFailureRateHighSeverity: $._config.severityWarning,

    // Cause classes -------------------------------------------------------
    // The exporter's classes, as probe/reasons.go defines them; mixin_test.go fails when these drift from Go. Not meant to be overridden.

    // Failure reasons about the registry itself, in the exporter's precedence order (probe.Reasons, Reason.RegistryLevel): one of them wins over per-image results as the registry's cause.
    registryLevelReasons: ['dns', 'connect', 'tls', 'timeout', 'server_error', 'rate_limited', 'unauthorized', 'protocol'],
    // Failure reasons about one image, which say nothing about the registry's other images; the join reports them only when every target of a registry fails that way.
    perImageReasons: ['not_found', 'forbidden'],
    // Failure reasons that leave the question open (Reason.Inconclusive): no_credentials, the registry asked an anonymous probe for credentials. The registry answered, so it is up, but the exporter cannot know whether the pods, with their own pull secrets, can pull. Never a join cause, a workload's cause or an auth failure, and no alert fires on them (mixin_test.go checks that no alert matches them).
    inconclusiveReasons: ['no_credentials'],
    // Failure reasons about the exporter's own files (a missing password_file, an unreadable CA bundle or docker config), never a registry's or an image's cause (Reason.Local): no registry or image alert lists them, since the registry may be fine; ImagePullExporterConfigBroken pages the exporter's owners instead.
    localReasons: ['config'],

    // Down reasons of imagepull_registry_failure_reason that mean the registry itself cannot be reached or is broken (ImagePullRegistryUnreachable). Not rate_limited (ImagePullRateLimited), unauthorized (ImagePullRegistryAuthFailing) nor protocol (often a proxy on the exporter's path, see podsBlockedCriticalCauses).
    unreachableReasons: ['dns', 'connect', 'tls', 'timeout', 'server_error'],
    // Probe failure reasons that are about one target's path when its registry answers other probes (Reason.PathLevel): its module's TLS or CA, proxy, plain_http or timeout, or a broken route (ImagePullTargetFailing). While the registry is down the same reasons are ImagePullRegistryUnreachable's.
    targetFailingReasons: ['dns', 'connect', 'tls', 'timeout', 'server_error', 'protocol'],
    // Probe failure reasons that mean the registry rejects credentials the exporter was given (ImagePullRegistryAuthFailing). An anonymous probe asked for credentials is no_credentials (inconclusiveReasons), never one of these.
    authFailureReasons: ['unauthorized', 'forbidden'],
    // Join causes for which blocked containers page: registry-level causes that prove the nodes cannot pull either. The other registry-level causes warn: `unauthorized` says the credentials the exporter was given are rejected, which does not prove the pods' pull secrets fail (a pull secret's rejection is per credential and never the registry's cause); `protocol` is the exporter's reading of a reply that breaks the spec, often a proxy on the exporter's path or a quirk the runtime works around (a manifest HEAD without Docker-Content-Digest, which containerd follows with a GET), so it does not prove the nodes fail. Per-image causes (not_found, forbidden), registry_ok and unprobed belong to the workload's owners and warn.
    podsBlockedCriticalCauses: ['dns', 'connect', 'tls', 'timeout', 'server_error', 'rate_limited'],

    // Thresholds ----------------------------------------------------------

    // ImagePullRateLimitLow fires when remaining/limit of a source is below this fraction.
    rateLimitLowRatio: 0.1,
    // Range over which ImagePullRateLimitExhaustionForecast measures how fast the remaining pulls fall.
    rateLimitForecastLookback: '1h',
    // ImagePullRateLimitExhaustionForecast stays quiet while more than this fraction of the limit is left, so short bursts do not warn.
    rateLimitForecastMaxHeadroom: 0.5,
    // Manifest HEAD latency quantile ImagePullManifestLatencyHigh watches; must be one of manifestLatencyQuantiles.
    manifestLatencyQuantile: '0.9',
    // ImagePullManifestLatencyHigh fires when that quantile is above this many seconds.
    manifestLatencyThresholdSeconds: 2,
    // ImagePullPodsBlocked fires when more than this many containers of one registry and cause wait on images.
    podsBlockedThreshold: 0,
    // ImagePullPodsBlocked and ImagePullNodesRateLimited name at most this many nodes (those with the most waiting containers), so a registry-wide outage on 500 nodes stays a readable notification.
    alertMaxNodes: 10,
    // Range of rate() over imagepull_pull_failures_total for ImagePullFailureRateHigh: several of the kubelet's back-off periods (up to 5m), so one container's retries do not look like a burst.
    pullFailureRateWindow: '10m',
    // ImagePullFailureRateHigh fires when the nodes fail more pulls per minute than this from one registry (all causes together).
    pullFailuresPerMinuteThreshold: 1,
    // ImagePullRescheduleRisk fires when more than this many running containers could not be started again.
    rescheduleRiskThreshold: 0,
    // ImagePullTLSCertExpiring fires when a registry's certificate expires within this many seconds.
    tlsCertExpiryThresholdSeconds: 14 * 24 * 3600,
    // ImagePullKubeletPullErrorsHigh fires when one kubelet fails more image pulls per minute than this.
    kubeletPullErrorsPerMinuteThreshold: 1,
    // ImagePullProbesStale fires when a registry's oldest probe is older than this many of its own intervals.
    probesStaleIntervals: 5,

    // `for:` durations ----------------------------------------------------
    // Shorten them (e.g. all to '1m') for end-to-end tests; see mixin/README.md.

    // How long a registry must be down (imagepull_registry_up 0) with an unreachable reason before ImagePullRegistryUnreachable fires.
    registryUnreachableFor: '5m',
    // How long the critical ImagePullRegistryUnreachable keeps firing after recovery, so the warning it inhibits resolves first.
    registryUnreachableKeepFiringFor: '1m',
    // How long one target must fail for a path-level reason while its registry is up before ImagePullTargetFailing fires: longer than the slowest targets' probe interval (5m for discovered images in deploy/), so the targets probed first in a registry outage, which fail while a not-yet-reprobed target still holds the registry up, do not raise it.
    targetFailingFor: '15m',
    // How long a registry's own health API (Harbor, Quay, Artifactory, Nexus) must report it unhealthy before ImagePullRegistryUnhealthy fires: a component check flapping once is not a page.
    registryUnhealthyFor: '5m',
    // How long the critical ImagePullRegistryUnhealthy keeps firing after recovery, so the warning it inhibits resolves first (as for ImagePullRegistryUnreachable).
    registryUnhealthyKeepFiringFor: '1m',
    // How long probes must fail with unauthorized/forbidden before ImagePullRegistryAuthFailing fires.
    registryAuthFailingFor: '10m',
    // How long a pull secret must fail to log in before ImagePullPullSecretInvalid fires (auth checks run every 15m by default).
    pullSecretInvalidFor: '15m',
    // How long headroom must stay low before ImagePullRateLimitLow fires.
    rateLimitLowFor: '10m',
    // How long the forecast must hold before ImagePullRateLimitExhaustionForecast fires.
    rateLimitExhaustionForecastFor: '15m',
    // How long probes must get 429 before ImagePullRateLimited fires; a 429 is unambiguous, so short.
    rateLimitedFor: '2m',
    // How long the latency quantile must stay high before ImagePullManifestLatencyHigh fires.
    manifestLatencyHighFor: '15m',
    // How long containers must wait before ImagePullPodsBlocked fires; the kubelet's back-off starts at 10s.
    podsBlockedFor: '5m',
    // How long a workload's image must be unavailable before ImagePullWorkloadImageUnavailable fires. Keep it longer than registryUnreachableFor: in a registry outage every workload of the registry gets a series, and ImagePullRegistryUnreachable must fire (and inhibit them in Alertmanager) first. It also lets a CI pipeline that applies the manifest before the push finishes catch up.
    workloadImageUnavailableFor: '10m',
    // How long nodes must get 429 from a registry whose probes do not before ImagePullNodesRateLimited fires; a container keeps its last pull error through the back-off, so this is the same wait as podsBlockedFor.
    nodesRateLimitedFor: '5m',
    // How long the pull failure rate must stay high before ImagePullFailureRateHigh fires.
    pullFailureRateHighFor: '15m',
    // How long a tag must drift before ImagePullTagDrift fires; rolling out a new image drifts briefly.
    tagDriftFor: '1h',
    // How long the risk must hold before ImagePullRescheduleRisk fires.
    rescheduleRiskFor: '15m',
    // How long the expiry must be near before ImagePullTLSCertExpiring fires.
    tlsCertExpiringFor: '1h',
    // How long the pull error rate must stay high before ImagePullKubeletPullErrorsHigh fires.
    kubeletPullErrorsHighFor: '15m',
    // How long the exporter must be unscraped before ImagePullExporterDown fires.
    exporterDownFor: '5m',
    // How long probes must be stale before ImagePullProbesStale fires.
    probesStaleFor: '5m',
    // How long a target's probes must fail for a local reason (the exporter's own files) before ImagePullExporterConfigBroken fires.
    exporterConfigBrokenFor: '10m',
    // How long a shard must be missing before ImagePullExporterShardMissing fires; a restarting StatefulSet pod is back within a minute or two.
    shardMissingFor: '5m',
    // How long shards must disagree on --total-shards before ImagePullExporterShardsMisconfigured fires; a rolling resize disagrees briefly.
    shardsMisconfiguredFor: '15m',
    // How long a mirror must fail before ImagePullMirrorDown fires.
    mirrorDownFor: '5m',
    // How long a mirror must serve another digest than upstream before ImagePullMirrorStale fires; a pull-through cache or sync job lags a push briefly.
    mirrorStaleFor: '30m',

    // Recording rules -----------------------------------------------------

    // Windows of the registry availability ratios (registry:imagepull_probe_availability:ratio_rate<window>).
    availabilityWindows: ['5m', '1h', '1d'],
    // Quantiles recorded from the manifest HEAD latency histogram.
    manifestLatencyQuantiles: ['0.5', '0.9', '0.99'],
    // Rate window of the latency quantiles; a few probes per target per window at the default 60s interval.
    manifestLatencyRateWindow: '5m',

    // Dashboards ----------------------------------------------------------

    // Tags on every dashboard, for Grafana's dashboard lists and links.
    dashboardTags: ['imagepull'],
    // Prefix of every dashboard title.
    dashboardNamePrefix: 'Image pulls / ',
    // Default refresh interval of the dashboards.
    dashboardRefresh: '1m',
    // Default time range of the dashboards.
    dashboardFrom: 'now-6h',
    // Time zone of the dashboards ('browser' or 'utc').
    dashboardTimezone: 'utc',
    // Stable dashboard uids: links between dashboards and bookmarks depend on them.
    dashboardUIDs: {
      'registries-overview': 'imagepull-registries-overview',
      'cluster-impact': 'imagepull-cluster-impact',
      'registry-detail': 'imagepull-registry-detail',
    },
  },
}

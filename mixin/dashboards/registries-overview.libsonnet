// Registries overview: is every registry the cluster pulls from healthy, how
// fast does it answer, and how much rate-limit headroom is left.
local g = import '../lib/grafana.libsonnet';
local utils = import '../lib/utils.libsonnet';

function(c)
  local common = (import 'common.libsonnet')(c);
  local s = common.sel + ', registry=~"$registry"';
  local r = common.recorded + ', registry=~"$registry"';
  local lookback = c.rateLimitForecastLookback;

  // The failing targets' reasons per registry, or "ok" when every target
  // succeeds: one target's reason is not the registry's (issue 11), which
  // the Up and Down reason columns say.
  local failingCauses =
    'count by (registry, cause) (max by (registry, target, cause) (label_replace(imagepull_probe_failure_reason{%s}, "cause", "$1", "reason", "(.*)") == 1))' % s;
  local cause =
    '%(f)s or (label_replace(max by (registry) (imagepull_probe_success{%(s)s}), "cause", "ok", "", "") unless on (registry) (%(f)s))' % { f: failingCauses, s: s };

  // The exporter's judgement of each registry as a whole
  // (imagepull_registry_up): up when any probe of any target got an answer,
  // down when every probe failed for a registry-level reason. Up when any
  // HA replica sees it up, as ImagePullRegistryUnreachable judges it.
  local registryUp = 'max by (registry) (imagepull_registry_up{%s})' % s;
  // The down reason of registries no replica sees up: what
  // ImagePullRegistryUnreachable (or RateLimited, AuthFailing) would say.
  local downReason =
    'max by (registry, reason) (imagepull_registry_failure_reason{%(s)s} == 1) unless on (registry) (%(up)s == 1)' % { s: s, up: registryUp };

  g.dashboard(
    c,
    c.dashboardUIDs['registries-overview'],
    'Registries overview',
    'Health, latency and rate-limit headroom of every registry imagepull_exporter probes.',
    [
      common.variables.datasource,
      common.variables.cluster,
      g.queryVariable('registry', 'Registry', 'label_values(imagepull_probe_success{%s}, registry)' % common.sel, multi=true, includeAll=true),
    ],
    [
      g.row('Health', [
        g.stat('Registries probed', 'Registries with at least one probe target.', [
          g.target('count(count by (registry) (imagepull_probe_success{%s}))' % s),
        ], w=3),
        g.stat('Registries down', 'Registries no probe of which gets an answer (imagepull_registry_up 0 on every replica). One failing target of a registry that answers others is not a registry down.', [
          g.target('count(%s == 0) or vector(0)' % registryUp),
        ], steps=['green', 1, 'red'], w=3),
        g.stat('Failing targets', 'Probe targets whose last probe failed, for any reason (no_credentials included: a registry that asks the anonymous probe for credentials).', [
          g.target('count(max by (registry, target) (imagepull_probe_success{%s}) == 0) or vector(0)' % s),
        ], steps=['green', 1, 'orange'], w=3),
        g.stat('Blocked containers', 'Containers waiting on images from these registries (the Kubernetes join).', [
          g.target('sum(max by (registry, cause) (imagepull_registry_blocked_containers{%s})) or vector(0)' % s),
        ], steps=['green', 1, 'red'], w=3),
        g.stat('At reschedule risk', 'Running containers whose image the registry cannot serve now and no other node holds.', [
          g.target('sum(max by (namespace, registry, cause) (imagepull_reschedule_risk_containers{%s})) or vector(0)' % s),
        ], steps=['green', 1, 'orange'], w=4),
        g.stat('Lowest rate-limit headroom', 'Smallest remaining/limit of any source.', [
          g.target('min(registry_source:imagepull_ratelimit_remaining_per_limit:ratio{%s})' % r),
        ], unit='percentunit', steps=['red', c.rateLimitLowRatio, 'orange', c.rateLimitForecastMaxHeadroom, 'green'], w=4),
        g.stat('Manifest GETs sent', 'The prober only HEADs manifests: a GET counts as a Docker Hub pull. Must stay 0.', [
          g.target('sum(imagepull_registry_requests_total{%s, kind="manifest_get"}) or vector(0)' % s),
        ], steps=['green', 1, 'red'], w=4),
        g.stateTimeline('Registry up', "Each registry as the exporter judges it as a whole: up while any probe of any of its targets gets an answer (a success, not_found, forbidden, no_credentials), down while every probe fails for a registry-level reason (the table's Down reason). Up when any HA replica sees it up.", [
          g.target(registryUp, '{{registry}}'),
        ], { '1': ['up', 'green'], '0': ['down', 'red'] }),
        g.table(
          'Registry health',
          "One row per registry: up or down and the down reason (the exporter's judgement of the registry as a whole), availability over three windows, the failing targets' reasons (one target's reason is not the registry's), targets, latency, blocked containers and certificate lifetime. Click a registry for its detail.",
          [
            g.instant('max by (registry) (registry:imagepull_probe_availability:ratio_rate5m{%s})' % r),
            g.instant('max by (registry) (registry:imagepull_probe_availability:ratio_rate1h{%s})' % r),
            g.instant('max by (registry) (registry:imagepull_probe_availability:ratio_rate1d{%s})' % r),
            g.instant(cause),
            g.instant('count by (registry) (max by (registry, target) (imagepull_probe_success{%s}))' % s),
            g.instant('count by (registry) (max by (registry, target) (imagepull_probe_success{%s}) == 0)' % s),
            g.instant('max by (registry) (registry_quantile:imagepull_manifest_head_duration_seconds:histogram_quantile{%s, quantile="%s"})' % [r, c.manifestLatencyQuantile]),
            g.instant('sum by (registry) (max by (registry, cause) (imagepull_registry_blocked_containers{%s}))' % s),
            g.instant('min by (registry) (imagepull_tls_cert_expiry_timestamp_seconds{%s} > 0) - time()' % s),
            g.instant(registryUp),
            g.instant(downReason),
          ],
          columns={
            registry: { name: 'Registry' },
            cause: { name: 'Target reasons' },
            reason: { name: 'Down reason' },
            'Value #J': { name: 'Up', steps: ['red', 1, 'green'] },
            'Value #A': { name: 'Availability 5m', unit: 'percentunit', steps: ['red', 0.9, 'orange', 0.99, 'green'] },
            'Value #B': { name: 'Availability 1h', unit: 'percentunit', steps: ['red', 0.9, 'orange', 0.99, 'green'] },
            'Value #C': { name: 'Availability 1d', unit: 'percentunit', steps: ['red', 0.9, 'orange', 0.99, 'green'] },
            'Value #E': { name: 'Targets' },
            'Value #F': { name: 'Failing targets', steps: ['green', 1, 'orange'] },
            'Value #G': { name: 'Manifest HEAD p' + std.strReplace(utils.percentile(c.manifestLatencyQuantile), 'th', ''), unit: 's' },
            'Value #H': { name: 'Blocked containers', steps: ['green', 1, 'red'] },
            'Value #I': { name: 'Certificate expires in', unit: 's', steps: ['red', c.tlsCertExpiryThresholdSeconds, 'green'] },
          },
          hidden=['Value #D', 'Value #K'],
          links={ registry: common.registryDetailLink },
          h=9,
        ),
      ]),
      g.row('Latency', [
        g.timeseries('Probe phases', "Last probe duration per phase, averaged over the registry's targets. resolve/connect/tls are 0 on kept-alive connections; ping and auth run on the periodic auth check.", [
          g.target('avg by (registry, phase) (imagepull_probe_duration_seconds{%s, phase!="total"})' % s, '{{registry}} {{phase}}'),
        ], unit='s', w=8),
        g.timeseries('Manifest HEAD latency', 'Quantiles of the manifest HEAD latency histogram (recording rule), %s rate window.' % c.manifestLatencyRateWindow, [
          g.target('registry_quantile:imagepull_manifest_head_duration_seconds:histogram_quantile{%s}' % r, '{{registry}} q{{quantile}}'),
        ], unit='s', w=8),
        g.timeseries('Availability (5m)', 'Share of probes that succeeded (recording rule).', [
          g.target('registry:imagepull_probe_availability:ratio_rate5m{%s}' % r, '{{registry}}'),
        ], unit='percentunit', min=0, max=1, w=8),
      ]),
      g.row('Rate limits', [
        g.timeseries('Headroom per source', 'Remaining pulls as a share of the limit, per registry and source (recording rule). ImagePullRateLimitLow fires below %s.' % c.rateLimitLowRatio, [
          g.target('registry_source:imagepull_ratelimit_remaining_per_limit:ratio{%s}' % r, '{{registry}} {{source}}'),
        ], unit='percentunit', min=0, max=1, w=8),
        g.timeseries('Remaining pulls and forecast', 'Remaining pulls, the limit, and where the remaining pulls will be in %s at the pace of the last %s (predict_linear).' % [lookback, lookback], [
          g.target('min by (registry, source) (imagepull_ratelimit_remaining{%s})' % s, '{{registry}} {{source}} remaining'),
          g.target('clamp_min(min by (registry, source) (predict_linear(imagepull_ratelimit_remaining{%s}[%s], %d)), 0)' % [s, lookback, utils.durationSeconds(lookback)], '{{registry}} {{source}} forecast in %s' % lookback),
          g.target('max by (registry, source) (imagepull_ratelimit_limit{%s})' % s, '{{registry}} {{source}} limit'),
        ], min=0, w=8),
        g.table(
          'Exhaustion forecast',
          "Per source: time until the remaining pulls reach 0 at the pace of the last %s (only while they fall), next to the limit's window. ImagePullRateLimitExhaustionForecast fires when it is shorter than the window." % lookback,
          [
            g.instant('min by (registry, source) (imagepull_ratelimit_remaining{%s}) / (-min by (registry, source) (deriv(imagepull_ratelimit_remaining{%s}[%s])) > 0)' % [s, s, lookback]),
            g.instant('max by (registry, source) (imagepull_ratelimit_window_seconds{%s})' % s),
            g.instant('min by (registry, source) (imagepull_ratelimit_remaining{%s})' % s),
            g.instant('max by (registry, source) (imagepull_ratelimit_limit{%s})' % s),
          ],
          columns={
            registry: { name: 'Registry' },
            source: { name: 'Source' },
            'Value #A': { name: 'Exhausted in', unit: 's' },
            'Value #B': { name: 'Window', unit: 's' },
            'Value #C': { name: 'Remaining' },
            'Value #D': { name: 'Limit' },
          },
          w=8,
        ),
        g.timeseries('429 answers', 'Probe targets answered 429 Too Many Requests, and the Retry-After the registry sent.', [
          g.target('count by (registry) (imagepull_probe_failure_reason{%s, reason="rate_limited"} == 1)' % s, '{{registry}} targets rate limited'),
          g.target('max by (registry) (imagepull_ratelimit_retry_after_seconds{%s})' % s, '{{registry}} retry after (s)'),
        ], w=12),
        g.timeseries('Probes skipped by the request budget', "Probes the scheduler skipped because the registry's request budget was spent.", [
          g.target('sum by (registry) (rate(imagepull_probe_budget_exhausted_total{%s}[$__rate_interval]))' % s, '{{registry}}'),
        ], unit='ops', w=12),
      ]),
      g.row('Mirrors', [
        g.table('Mirror health', "Registry mirrors from the exporter's config and from each node's containerd/CRI-O configuration (node-probe DaemonSet). Up: 1 when every vantage point (the central exporter, each node) reaches it. Down from: how many see it fail. Falls back: 0 when the runtime tries no other host after it, so its failure fails pulls.", [
          g.instant('min by (mirror, upstream) (imagepull_mirror_up{%s, upstream=~"$registry"})' % common.msel),
          g.instant('sum by (mirror, upstream) (1 - imagepull_mirror_up{%s, upstream=~"$registry"})' % common.msel),
          g.instant('min by (mirror, upstream) (imagepull_mirror_fallback{%s, upstream=~"$registry"})' % common.msel),
        ], columns={
          mirror: { name: 'Mirror' },
          upstream: { name: 'Upstream' },
          'Value #A': { name: 'Up', steps: ['red', 1, 'green'] },
          'Value #B': { name: 'Down from' },
          'Value #C': { name: 'Falls back', steps: ['orange', 1, 'green'] },
        }, w=12),
        g.table('Stale mirror tags', 'Tags a mirror serves with a different digest than its upstream serves now, and from how many vantage points.', [
          g.instant('count by (mirror, upstream, repository, tag) (imagepull_mirror_stale{%s, upstream=~"$registry"} == 1)' % common.msel),
        ], columns={ mirror: { name: 'Mirror' }, upstream: { name: 'Upstream' }, repository: { name: 'Repository' }, tag: { name: 'Tag' }, Value: { name: 'Seen from' } }, w=12),
      ]),
      g.row('Exporter', [
        g.stat('Targets', 'Probe targets by source: config file or discovered from the cluster.', [
          g.target('sum by (source) (imagepull_exporter_targets{%s})' % common.sel, '{{source}}'),
        ], w=6),
        g.stat('Config reload', 'Whether the last configuration reload succeeded on every exporter.', [
          g.target('min(imagepull_exporter_config_last_reload_successful{%s})' % common.sel),
        ], steps=['red', 1, 'green'], w=6),
        g.stat('Shards', 'Shards reporting (distinct --shard ordinals) and the shards there should be (--total-shards); equal unless a shard is missing. 1 and 1 when not sharded.', [
          g.target('count(count_values("ordinal", imagepull_exporter_shard_ordinal{%s}))' % common.sel, 'reporting'),
          g.target('max(imagepull_exporter_total_shards{%s})' % common.sel, 'of'),
        ], w=4),
        g.table('Exporters', 'Running exporters by version.', [
          g.instant('count by (version, revision, goversion) (imagepull_exporter_build_info{%s})' % common.sel),
        ], columns={ version: { name: 'Version' }, revision: { name: 'Revision' }, goversion: { name: 'Go' }, Value: { name: 'Exporters' } }, w=8, h=4),
      ]),
    ],
  )

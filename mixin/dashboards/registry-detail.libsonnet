// Registry detail: one registry's probe targets, auth checks, rate limits,
// request accounting and mirrors.
local g = import '../lib/grafana.libsonnet';

function(c)
  local common = (import 'common.libsonnet')(c);
  local s = common.sel + ', registry="$registry"';
  local r = common.recorded + ', registry="$registry"';

  g.dashboard(
    c,
    c.dashboardUIDs['registry-detail'],
    'Registry detail',
    'One registry as imagepull_exporter probes it: targets, auth checks, rate limits and every request the prober sent.',
    [
      common.variables.datasource,
      common.variables.cluster,
      g.queryVariable('registry', 'Registry', 'label_values(imagepull_probe_success{%s}, registry)' % common.sel),
    ],
    [
      g.row('Targets', [
        g.table(
          'Targets',
          'Every probe target of the registry: last result, failure reason, time since the last success, duration and the digest the registry serves.',
          [
            g.instant('max by (target, repository, reference) (imagepull_probe_success{%s})' % s),
            g.instant('max by (target, reason) (imagepull_probe_failure_reason{%s} == 1)' % s),
            g.instant('time() - max by (target) (imagepull_probe_last_success_timestamp_seconds{%s})' % s),
            g.instant('max by (target) (imagepull_probe_duration_seconds{%s, phase="total"})' % s),
            g.instant('max by (target, digest, media_type) (imagepull_manifest_info{%s})' % s),
          ],
          columns={
            target: { name: 'Target' },
            repository: { name: 'Repository' },
            reference: { name: 'Reference' },
            reason: { name: 'Reason' },
            digest: { name: 'Digest' },
            media_type: { name: 'Media type' },
            'Value #A': { name: 'Success', steps: ['red', 1, 'green'] },
            'Value #C': { name: 'Since last success', unit: 's' },
            'Value #D': { name: 'Duration', unit: 's' },
          },
          hidden=['Value #B', 'Value #E'],
          h=9,
        ),
        g.timeseries('Probe success by target', "1 when the target's last probe succeeded.", [
          g.target('max by (target) (imagepull_probe_success{%s})' % s, '{{target}}'),
        ], min=0, max=1),
        g.timeseries('Phase durations', 'Last probe duration per target and phase.', [
          g.target('max by (target, phase) (imagepull_probe_duration_seconds{%s, phase!="total"})' % s, '{{target}} {{phase}}'),
        ], unit='s'),
        g.timeseries('Manifest HEAD latency', 'Quantiles of the manifest HEAD latency histogram (recording rule).', [
          g.target('registry_quantile:imagepull_manifest_head_duration_seconds:histogram_quantile{%s}' % r, 'q{{quantile}}'),
        ], unit='s'),
        g.timeseries('Digest changes', 'How often the digest behind a probed tag changed: a tag that moves is one a reschedule can change under a running workload.', [
          g.target('sum by (target) (increase(imagepull_manifest_digest_changes_total{%s}[$__rate_interval]))' % s, '{{target}}'),
        ]),
      ]),
      g.row('Auth', [
        g.timeseries('Auth check by target', 'Result of the periodic auth check (ping + token exchange): 1 when it succeeded.', [
          g.target('max by (target) (imagepull_auth_success{%s})' % s, '{{target}}'),
        ], min=0, max=1),
        g.table('Pull secrets for this registry', 'Referenced pull secrets and whether they still log in (pull-secret mode).', [
          g.instant('max by (namespace, secret) (imagepull_pull_secret_auth_success{%s})' % s),
        ], columns={ namespace: { name: 'Namespace' }, secret: { name: 'Secret' }, Value: { name: 'Logs in', steps: ['red', 1, 'green'] } }, w=8),
        g.stat('TLS certificate expires in', "Time until the registry's leaf certificate expires (empty over plain HTTP).", [
          g.target('min(imagepull_tls_cert_expiry_timestamp_seconds{%s} > 0) - time()' % s),
        ], unit='s', steps=['red', c.tlsCertExpiryThresholdSeconds, 'green'], h=8),
      ]),
      g.row("Registry's own health", [
        g.table('Components', "What the registry's own health API (Harbor, Quay, Artifactory, Nexus) says of each component, named as the product names it; empty for registries whose product is neither recognised nor set by the module's health:. Auth backend: the components its logins depend on, down means every login fails whatever the credentials.", [
          g.instant('min by (product, component) (imagepull_registry_component_up{%s})' % s),
          g.instant('min by (product) (imagepull_registry_auth_backend_up{%s})' % s),
        ], columns={
          product: { name: 'Product' },
          component: { name: 'Component' },
          'Value #A': { name: 'Up', steps: ['red', 1, 'green'] },
          'Value #B': { name: 'Auth backend up', steps: ['red', 1, 'green'] },
        }, w=8),
        g.timeseries('Component health', "1 while the registry's health API reports the component up, 0 while down; the registry's own verdict as healthy.", [
          g.target('min by (component) (imagepull_registry_component_up{%s})' % s, '{{component}}'),
          g.target('min(imagepull_registry_health_up{%s})' % s, 'healthy'),
        ], min=0, max=1, w=8),
        g.timeseries('Health reads by result', 'Reads of the health API: healthy, unhealthy, error (no reply in time, or an error status) and malformed (not the documented format: ignored).', [
          g.target('sum by (result) (increase(imagepull_registry_health_checks_total{%s}[$__rate_interval]))' % s, '{{result}}'),
        ], min=0, w=8),
      ]),
      g.row('Rate limit', [
        g.timeseries('Headroom per source', 'Remaining pulls as a share of the limit (recording rule).', [
          g.target('registry_source:imagepull_ratelimit_remaining_per_limit:ratio{%s}' % r, '{{source}}'),
        ], unit='percentunit', min=0, max=1, w=8),
        g.timeseries('Remaining and limit', "Pulls left in the window, and the window's limit, per source.", [
          g.target('min by (source) (imagepull_ratelimit_remaining{%s})' % s, '{{source}} remaining'),
          g.target('max by (source) (imagepull_ratelimit_limit{%s})' % s, '{{source}} limit'),
        ], min=0, w=8),
        g.timeseries('Retry-After', 'Retry-After of the last 429, per target, while the registry answers 429.', [
          g.target('max by (target) (imagepull_ratelimit_retry_after_seconds{%s})' % s, '{{target}}'),
        ], unit='s', w=8),
      ]),
      g.row('Request accounting', [
        g.stat('Manifest GETs sent', 'The prober only HEADs manifests: a GET counts as a Docker Hub pull. Must stay 0.', [
          g.target('sum(imagepull_registry_requests_total{%s, kind="manifest_get"}) or vector(0)' % s),
        ], steps=['green', 1, 'red'], w=6),
        g.stat('Requests per probe (1h)', 'HTTP requests per probe; a warm probe is one manifest HEAD, auth checks add a ping and a token request.', [
          g.target('sum(rate(imagepull_registry_requests_total{%s}[1h])) / sum(rate(imagepull_probes_total{%s}[1h]))' % [s, s]),
        ], w=6),
        g.stat('Probes skipped by the budget (1h)', "Probes the scheduler skipped because the registry's request budget was spent.", [
          g.target('sum(increase(imagepull_probe_budget_exhausted_total{%s}[1h])) or vector(0)' % s),
        ], steps=['green', 1, 'orange'], w=6),
        g.stat('Malformed headers (1h)', 'Rate-limit and Retry-After headers that could not be parsed and were ignored.', [
          g.target('sum(increase(imagepull_malformed_headers_total{%s}[1h])) or vector(0)' % s),
        ], steps=['green', 1, 'orange'], w=6),
        g.timeseries('Requests by kind and code', 'Every HTTP request the prober sent to the registry, by kind (ping, token, manifest_head, manifest_get, other, health) and status code ("error" when no response arrived).', [
          g.target('sum by (kind, code) (rate(imagepull_registry_requests_total{%s}[$__rate_interval]))' % s, '{{kind}} {{code}}'),
        ], unit='reqps', stack=true, w=24),
      ]),
      g.row('Mirrors', [
        g.table('Mirrors of this registry', "Mirrors configured for the registry or read from the nodes' containerd/CRI-O configuration. Up: 1 when every vantage point reaches it; Down from: how many do not; Falls back: 0 when the runtime tries no other host after it.", [
          g.instant('min by (mirror) (imagepull_mirror_up{%s, upstream="$registry"})' % common.msel),
          g.instant('sum by (mirror) (1 - imagepull_mirror_up{%s, upstream="$registry"})' % common.msel),
          g.instant('min by (mirror) (imagepull_mirror_fallback{%s, upstream="$registry"})' % common.msel),
        ], columns={
          mirror: { name: 'Mirror' },
          'Value #A': { name: 'Up', steps: ['red', 1, 'green'] },
          'Value #B': { name: 'Down from' },
          'Value #C': { name: 'Falls back', steps: ['orange', 1, 'green'] },
        }, w=12),
        g.table('Stale mirror tags', 'Tags a mirror serves with a different digest than this registry serves now, and from how many vantage points.', [
          g.instant('count by (mirror, repository, tag) (imagepull_mirror_stale{%s, upstream="$registry"} == 1)' % common.msel),
        ], columns={ mirror: { name: 'Mirror' }, repository: { name: 'Repository' }, tag: { name: 'Tag' }, Value: { name: 'Seen from' } }, w=12),
        g.timeseries('Mirror requests by kind and code', "HTTP requests the prober sent to mirrors of this registry (counted apart from the registry's own); manifest_get stays 0.", [
          g.target('sum by (mirror, kind, code) (rate(imagepull_mirror_requests_total{%s, upstream="$registry"}[$__rate_interval]))' % common.msel, '{{mirror}} {{kind}} {{code}}'),
        ], unit='reqps', stack=true, w=24),
      ]),
    ],
  )

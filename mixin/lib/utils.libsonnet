// Small helpers shared by alerts, rules and dashboards.
{
  // by returns "cluster, a, b": every aggregation keeps the cluster label so the
  // same rules work in one Prometheus per cluster and in a global Thanos/Mimir.
  by(config, labels)::
    std.join(', ', [config.clusterLabel] + labels),

  // regex returns an anchored-by-PromQL alternation of the values.
  regex(values)::
    std.join('|', values),

  // causeFromReason turns the exporter's per-target `reason` label into the
  // `cause` label the join (imagepull_registry_blocked_containers) uses, so
  // alerts about the same problem carry the same label name.
  causeFromReason(expr)::
    'label_replace(%s, "cause", "$1", "reason", "(.*)")' % expr,

  // targetOnlyLabels are the labels a probe target's series carry and the
  // registry's series (imagepull_registry_up, imagepull_registry_failure_reason)
  // do not: collector/metrics.go's targetLabels without registry. Ignoring
  // them matches a target's series with its own exporter's judgement of the
  // registry (same job, instance, and node in node-local mode).
  targetOnlyLabels:: ['target', 'repository', 'reference'],

  // indent prefixes every line of text (its final newline dropped) with n
  // spaces, to nest one rendered expression in another.
  indent(text, n)::
    std.join('\n', [std.repeat(' ', n) + l for l in std.split(std.rstripChars(text, '\n'), '\n')]),

  // failingTargets counts the targets whose probes fail with one of
  // `reasons`, once per target (HA replicas probe the same targets), per
  // registry and cause: one alert per registry outage, not one per target.
  failingTargets(config, reasons)::
    |||
      count by (%(by)s) (
        max by (%(byTarget)s) (
          %(failing)s == 1
        )
      )
    ||| % {
      by: $.by(config, ['registry', 'cause']),
      byTarget: $.by(config, ['registry', 'target', 'cause']),
      failing: $.causeFromReason('imagepull_probe_failure_reason{%s, reason=~"%s"}' % [config.imagepullSelector, $.regex(reasons)]),
    },

  // percentile turns a quantile string into words: '0.9' -> '90th',
  // '0.99' -> '99th', '0.999' -> '99.9th'. Strings, not floats, so 0.9 * 100
  // cannot print as 90.00000000000001.
  percentile(q)::
    assert std.startsWith(q, '0.') : 'quantile must be written 0.x, got ' + q;
    local d = std.substr(q, 2, std.length(q) - 2);
    local whole = if std.length(d) == 1 then d + '0' else std.substr(d, 0, 2);
    local frac = if std.length(d) > 2 then '.' + std.substr(d, 2, std.length(d) - 2) else '';
    std.lstripChars(whole, '0') + frac + 'th',

  // durationSeconds turns a one-unit Prometheus duration ('90s', '5m', '1h',
  // '1d') into seconds, for functions that take a number (predict_linear).
  durationSeconds(d)::
    local units = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
    local unit = d[std.length(d) - 1];
    assert std.objectHas(units, unit) : 'duration must end in s, m, h, d or w, got ' + d;
    std.parseInt(std.substr(d, 0, std.length(d) - 1)) * units[unit],

  // Alert annotation templates -------------------------------------------
  // They run PromQL through the template `query` function, which Prometheus
  // 2.42 and promtool's rule tests support. Queries are Go raw strings
  // (backticks) so selectors with double quotes need no escaping; label
  // values go in through printf %q, which PromQL parses as a string literal.

  // clusterArg is the template expression for the alert's cluster label
  // ("" in single-cluster setups, which matches series without the label).
  clusterArg(config)::
    '(index $labels "%s")' % config.clusterLabel,

  // query returns a template pipeline that runs the printf format `format`
  // with the given template arguments.
  query(format, args)::
    'query (printf `%s` %s)' % [format, std.join(' ', args)],

  // listByLabel renders prefix + "a (3), b (1)" + suffix from a query
  // returning one series per value of `label`, sorted by that label; nothing
  // at all when the query returns no series.
  listByLabel(query, label, prefix, suffix)::
    '{{ with %s | sortByLabel "%s" }}%s{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s.Labels.%s }} ({{ $s.Value }}){{ end }}%s{{ end }}' % [query, label, prefix, label, suffix],

  // listLabel is listByLabel without the values: prefix + "a, b" + suffix.
  listLabel(query, label, prefix, suffix)::
    '{{ with %s | sortByLabel "%s" }}%s{{ range $i, $s := . }}{{ if $i }}, {{ end }}{{ $s.Labels.%s }}{{ end }}%s{{ end }}' % [query, label, prefix, label, suffix],

  // firstValue renders `prefix`, the first value of the query through `fn`
  // (a template function such as humanize), and `suffix`; nothing when the
  // query returns no series.
  firstValue(query, prefix, fn, suffix)::
    '{{ with %s }}%s{{ . | first | value%s }}%s{{ end }}' % [query, prefix, if fn == '' then '' else ' | ' + fn, suffix],
}

// Alerts about pull rate limits (Docker Hub's ratelimit-* headers and 429s).
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local cl = utils.clusterArg(c),
    local bySource = utils.by(c, ['registry', 'source']),

    // Template fragments that print the source's remaining pulls, limit and
    // window; each prints nothing when its series is missing.
    local sourceValue(metric, agg, prefix, fn, suffix) =
      utils.firstValue(
        utils.query('%s(%s{%s, %s=%%q, registry=%%q, source=%%q})' % [agg, metric, c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry', '$labels.source']),
        prefix,
        fn,
        suffix
      ),
    local remaining(prefix, suffix) = sourceValue('imagepull_ratelimit_remaining', 'min', prefix, 'printf "%.0f"', suffix),
    local limit(prefix, suffix) = sourceValue('imagepull_ratelimit_limit', 'max', prefix, '', suffix),
    local window(prefix, suffix) = sourceValue('imagepull_ratelimit_window_seconds', 'max', prefix, 'humanizeDuration', suffix),

    groups+: [
      {
        name: 'imagepull-ratelimit',
        rules: [
          {
            alert: 'ImagePullRateLimited',
            expr: utils.failingTargets(c, ['rate_limited']),
            'for': c.rateLimitedFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Registry {{ $labels.registry }} answers 429 Too Many Requests.',
              description: "The exporter's probes of {{ $labels.registry }} are answered 429" +
                           utils.firstValue(
                             utils.query('max(imagepull_ratelimit_retry_after_seconds{%s, %s=%%q, registry=%%q})' % [c.imagepullSelector, c.clusterLabel], [cl, '$labels.registry']),
                             ' (retry in ',
                             'humanizeDuration',
                             ')'
                           ) +
                           ": its source's pull limit is spent, and nodes that share the source (egress IP or account) cannot pull from it either. Pull through a mirror, or authenticate with an account with a higher limit.",
            },
          },
          {
            alert: 'ImagePullRateLimitLow',
            expr: |||
              registry_source:imagepull_ratelimit_remaining_per_limit:ratio < %s
            ||| % c.rateLimitLowRatio,
            'for': c.rateLimitLowFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Little of the pull rate limit of {{ $labels.registry }} is left for source {{ $labels.source }}.',
              description: 'Source {{ $labels.source }} has {{ $value | humanizePercentage }} of its pull limit at {{ $labels.registry }} left' +
                           remaining(' (', ' pulls' + limit(' of ', '') + window(' per ', '') + ')') +
                           '; at 0 its pulls fail with 429. Find what pulls so much, or pull through a mirror.',
            },
          },
          {
            alert: 'ImagePullRateLimitExhaustionForecast',
            // Seconds until remaining reaches 0 at the slope of the last
            // lookback, compared per series with that limit's own window:
            // predict_linear(remaining[lookback], window) < 0, with a window
            // that may differ per registry and source. Only while less than
            // rateLimitForecastMaxHeadroom is left, so a burst at the start of
            // a fresh window does not warn.
            expr: |||
              (
                min by (%(by)s) (imagepull_ratelimit_remaining{%(sel)s})
                /
                (-min by (%(by)s) (deriv(imagepull_ratelimit_remaining{%(sel)s}[%(lookback)s])) > 0)
              )
              < on (%(by)s)
              max by (%(by)s) (imagepull_ratelimit_window_seconds{%(sel)s})
              and on (%(by)s)
              registry_source:imagepull_ratelimit_remaining_per_limit:ratio < %(headroom)s
            ||| % { by: bySource, sel: c.imagepullSelector, lookback: c.rateLimitForecastLookback, headroom: c.rateLimitForecastMaxHeadroom },
            'for': c.rateLimitExhaustionForecastFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'The pull rate limit of {{ $labels.registry }} for source {{ $labels.source }} will run out.',
              description: "At the pace of the last %s, source {{ $labels.source }} uses up its pull limit at {{ $labels.registry }} in {{ $value | humanizeDuration }}, sooner than the limit's window" % c.rateLimitForecastLookback +
                           window(' of ', '') + remaining(' (', ' pulls left' + limit(' of ', '') + ')') +
                           '. Find what pulls so much before pulls fail with 429, or pull through a mirror.',
            },
          },
        ],
      },
    ],
  },
}

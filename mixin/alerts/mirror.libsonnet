// Alerts about registry mirrors: the hosts container runtimes pull from
// before (or instead of) the registry itself, from the exporter's config
// `mirrors:` and, in node-local mode, from each node's containerd/CRI-O
// configuration. A vantage point is one exporter: the central Deployment or
// one node of the node-probe DaemonSet.
local utils = import '../lib/utils.libsonnet';

{
  prometheusAlerts+:: {
    local c = $._config,
    local cl = utils.clusterArg(c),

    // withRegistry copies `upstream` into `registry`, the label every
    // ImagePull alert carries: a mirror's alerts group and route with the
    // rest of its registry's (the Alertmanager example groups by registry).
    local withRegistry(expr) =
      local indented = std.join('\n', ['  ' + l for l in std.split(std.rstripChars(expr, '\n'), '\n')]);
      'label_replace(\n%s,\n  "registry", "$1", "upstream", "(.*)"\n)\n' % indented,

    // Mirrors failing with their cause, per vantage point, kept where the
    // runtime would (fallback=1) or would not (fallback=0) try another host
    // after the mirror. Not an inconclusive reason (issue 11): a mirror that
    // asks the exporter's anonymous probe for credentials answers, and the
    // exporter cannot know whether the runtime holds credentials for it
    // (containerd's registry configs, CRI-O's auth files), so it is not
    // reported down; imagepull_mirror_failure_reason still shows it.
    local failing(fallback) = withRegistry(
      |||
        count by (%(by)s) (
          label_replace(imagepull_mirror_failure_reason{%(sel)s, reason!~"%(inconclusive)s"} == 1, "cause", "$1", "reason", "(.*)")
          and ignoring (reason, cause)
          imagepull_mirror_fallback{%(sel)s} == %(fb)d
        )
      ||| % { by: utils.by(c, ['mirror', 'upstream', 'cause']), sel: c.imagepullMirrorSelector, fb: fallback, inconclusive: utils.regex(c.inconclusiveReasons) }
    ),

    local nodesPhrase =
      utils.listLabel(
        utils.query('max by (node) (imagepull_mirror_up{%s, %s=%%q, mirror=%%q, upstream=%%q, node!=""} == 0)' % [c.imagepullMirrorSelector, c.clusterLabel], [cl, '$labels.mirror', '$labels.upstream']),
        'node',
        ' (nodes: ',
        ')'
      ),

    local downCommon =
      'Mirror {{ $labels.mirror }} of {{ $labels.upstream }} has failed with {{ $labels.cause }} for %s, seen from {{ $value }} exporter(s)' % c.mirrorDownFor + nodesPhrase,

    groups+: [
      {
        name: 'imagepull-mirror',
        rules: [
          {
            // Two rules, as for ImagePullRegistryUnreachable: the severity
            // is part of the alert's identity.
            alert: 'ImagePullMirrorDown',
            expr: failing(0),
            'for': c.mirrorDownFor,
            labels: { severity: c.severityCritical },
            annotations: {
              summary: 'Mirror {{ $labels.mirror }} of {{ $labels.upstream }} is down ({{ $labels.cause }}) and pulls do not fall back.',
              description: downCommon + ', and the runtime tries no host after it, so pulls of {{ $labels.upstream }} images fail. Fix the mirror, or let the runtime fall back to the registry (containerd: a server in hosts.toml; CRI-O: do not block the registry).',
            },
          },
          {
            alert: 'ImagePullMirrorDown',
            expr: failing(1),
            'for': c.mirrorDownFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Mirror {{ $labels.mirror }} of {{ $labels.upstream }} is down ({{ $labels.cause }}); pulls fall back.',
              description: downCommon + "; the runtime falls back to the next host, so pulls are slower and spend the registry's rate limit. Fix the mirror.",
            },
          },
          {
            alert: 'ImagePullMirrorStale',
            expr: withRegistry(|||
              count by (%(by)s) (
                max by (%(byTag)s) (imagepull_mirror_stale{%(sel)s}) == 1
              )
            ||| % { by: utils.by(c, ['mirror', 'upstream']), byTag: utils.by(c, ['mirror', 'upstream', 'repository', 'tag']), sel: c.imagepullMirrorSelector }),
            'for': c.mirrorStaleFor,
            labels: { severity: c.severityWarning },
            annotations: {
              summary: 'Mirror {{ $labels.mirror }} serves stale tags of {{ $labels.upstream }}.',
              description: 'Mirror {{ $labels.mirror }} has served {{ $value }} tag(s) with another digest than {{ $labels.upstream }} for %s' % c.mirrorStaleFor +
                           utils.listLabel(utils.query('label_join(max by (repository, tag) (imagepull_mirror_stale{%s, %s=%%q, mirror=%%q, upstream=%%q}) == 1, "image", ":", "repository", "tag")' % [c.imagepullMirrorSelector, c.clusterLabel], [cl, '$labels.mirror', '$labels.upstream']), 'image', ' (', ')') +
                           ', so nodes pulling through it start other images than the registry has. Check its sync job or cache expiry, or pin the images by digest.',
            },
          },
        ],
      },
    ],
  },
}

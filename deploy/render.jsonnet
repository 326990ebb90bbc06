// Renders the deploy/ files that come from the mixin, as a multi-file output:
//   jsonnet -J mixin -S -c -m OUTDIR deploy/render.jsonnet
// (scripts/deploy.sh generate). The PrometheusRule's groups are the mixin's
// alerts and recording rules, exactly as alerts/*.yaml hold them, so the
// cluster evaluates what `promtool test rules` tested; never edit the
// outputs by hand.
local mixin = import 'mixin.libsonnet';

local groups = mixin.prometheusAlerts.groups + mixin.prometheusRules.groups;

// The same manifestation as mixin/lib/render.libsonnet.
local yaml(o) = std.manifestYamlDoc(o, indent_array_in_object=false, quote_keys=false);
local header = '# Generated from mixin/ by scripts/deploy.sh generate (deploy/render.jsonnet): do not edit.\n';

{
  'deploy/base/prometheusrule.yaml': header + yaml({
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'imagepull-exporter',
      namespace: 'imagepull-exporter',
    },
    spec: { groups: groups },
  }),
  // The Helm chart indents this under `spec:` (templates/prometheusrule.yaml);
  // a chart can only read files inside its own directory.
  'deploy/helm/imagepull-exporter/files/prometheus-rule-groups.yaml': header + yaml({ groups: groups }),
}

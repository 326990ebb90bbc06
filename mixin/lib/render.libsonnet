// render maps a mixin to the repository's generated files, keyed by path
// from the repository root. YAML and JSON are manifested here, once, so the
// CLI and the Go renderer produce identical bytes.
function(mixin) {
  'alerts/imagepull-alerts.yaml': std.manifestYamlDoc(mixin.prometheusAlerts, indent_array_in_object=false, quote_keys=false),
  'alerts/imagepull-rules.yaml': std.manifestYamlDoc(mixin.prometheusRules, indent_array_in_object=false, quote_keys=false),
} + {
  ['dashboards/%s' % name]: std.manifestJsonEx(mixin.grafanaDashboards[name], '  ')
  for name in std.objectFields(mixin.grafanaDashboards)
}

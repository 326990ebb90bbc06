// The one place runbook_url is added: every alert links to its section of
// mixin/runbook.md, whose GitHub anchor is the alert name in lower case.
// A runbook_url the alert already has is kept, as kubernetes-mixin does: a
// user's own link, or another mixin's alerts when mixins are composed with
// `+` (this file sees every group to its left), must not be replaced by a
// link into this runbook.
{
  prometheusAlerts+:: {
    groups: [
      group {
        rules: [
          rule + (
            if std.objectHas(rule, 'alert') && !std.objectHas(std.get(rule, 'annotations', {}), 'runbook_url') then {
              annotations+: { runbook_url: $._config.runbookURLPattern % std.asciiLower(rule.alert) },
            } else {}
          )
          for rule in group.rules
        ],
      }
      for group in super.groups
    ],
  },
}

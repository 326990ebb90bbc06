// The one place runbook_url is added: every alert links to its section of
// mixin/runbook.md, whose GitHub anchor is the alert name in lower case.
{
  prometheusAlerts+:: {
    groups: [
      group {
        rules: [
          rule + (
            if std.objectHas(rule, 'alert') then {
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

// A small Grafana dashboard library: grafonnet cannot be vendored here
// (jsonnet-bundler has no GitHub access), and the dashboards need only a few
// panel types. It emits the JSON model of Grafana 10/11 (schemaVersion 39).
//
// Panels carry their size in gridPos {w, h}; layout() places them left to
// right under their row, wraps at 24 columns, and numbers them, so adding a
// panel never means recomputing coordinates by hand.
{
  // The datasource of every panel and query variable: the dashboard's
  // `datasource` variable, so one dashboard serves any Prometheus.
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  // Targets -----------------------------------------------------------------

  // target is a range query drawn over time.
  target(expr, legend=''):: {
    datasource: $.datasource,
    expr: expr,
    legendFormat: legend,
    range: true,
    instant: false,
    format: 'time_series',
  },

  // instant is an instant query shown as a table (one row per series).
  instant(expr):: {
    datasource: $.datasource,
    expr: expr,
    range: false,
    instant: true,
    format: 'table',
  },

  // withRefIDs names targets A, B, C... so table transformations can refer to
  // their value columns as "Value #A".
  local withRefIDs(targets) = [
    targets[i] { refId: std.char(std.codepoint('A') + i) }
    for i in std.range(0, std.length(targets) - 1)
  ],

  // Panels ------------------------------------------------------------------

  local panel(type, title, description, targets, w, h) = {
    type: type,
    title: title,
    description: description,
    datasource: $.datasource,
    targets: withRefIDs(targets),
    gridPos: { w: w, h: h },
  },

  local thresholdSteps(steps) = {
    mode: 'absolute',
    steps: [{ color: steps[0], value: null }] + [
      { color: steps[i + 1], value: steps[i] }
      for i in std.range(1, std.length(steps) - 1)
      if i % 2 == 1
    ],
  },

  // timeseries draws range queries. unit is a Grafana unit id (s, percentunit,
  // reqps, short); stack stacks the series (counts that add up).
  timeseries(title, description, targets, unit='short', stack=false, min=null, max=null, w=12, h=8)::
    panel('timeseries', title, description, targets, w, h) {
      fieldConfig: {
        defaults: {
          unit: unit,
          [if min != null then 'min']: min,
          [if max != null then 'max']: max,
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: if stack then 30 else 10,
            showPoints: 'never',
            spanNulls: false,
            stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
          },
        },
        overrides: [],
      },
      options: {
        legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['lastNotNull', 'max'] },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    },

  // stat shows one number. steps alternate colour and threshold:
  // ['green', 1, 'red'] is green below 1 and red from 1.
  stat(title, description, targets, unit='short', steps=['green'], w=4, h=4)::
    panel('stat', title, description, targets, w, h) {
      fieldConfig: {
        defaults: {
          unit: unit,
          thresholds: thresholdSteps(steps),
          color: { mode: 'thresholds' },
        },
        overrides: [],
      },
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'background',
        graphMode: 'none',
        textMode: 'auto',
        justifyMode: 'auto',
        orientation: 'auto',
      },
    },

  // stateTimeline draws each series of range queries as a band of states
  // over time, e.g. a registry's up and down. mappings maps a value to
  // [text, colour]: { '1': ['up', 'green'], '0': ['down', 'red'] }.
  stateTimeline(title, description, targets, mappings, w=24, h=6)::
    panel('state-timeline', title, description, targets, w, h) {
      fieldConfig: {
        defaults: {
          color: { mode: 'fixed', fixedColor: 'text' },
          mappings: [{
            type: 'value',
            options: {
              [std.objectFields(mappings)[i]]: {
                text: mappings[std.objectFields(mappings)[i]][0],
                color: mappings[std.objectFields(mappings)[i]][1],
                index: i,
              }
              for i in std.range(0, std.length(std.objectFields(mappings)) - 1)
            },
          }],
          custom: { fillOpacity: 80, lineWidth: 0 },
        },
        overrides: [],
      },
      options: {
        showValue: 'never',
        mergeValues: true,
        alignValue: 'left',
        rowHeight: 0.9,
        legend: { displayMode: 'list', placement: 'bottom', showLegend: false },
        tooltip: { mode: 'single', sort: 'none' },
      },
    },

  // table joins instant queries on their common labels (Grafana's merge
  // transformation). columns maps a column ("Value #A" or a label) to
  // {name, unit}; hidden lists columns to drop. links maps a column to a
  // data link URL.
  table(title, description, targets, columns={}, hidden=[], links={}, w=24, h=8)::
    panel('table', title, description, std.map(function(t) t + (if t.instant then {} else { instant: true, range: false, format: 'table' }), targets), w, h) {
      fieldConfig: {
        defaults: { custom: { align: 'auto', filterable: true } },
        overrides: [
          {
            matcher: { id: 'byName', options: col },
            properties:
              (if std.objectHas(columns[col], 'unit') then [{ id: 'unit', value: columns[col].unit }] else []) +
              (if std.objectHas(columns[col], 'steps') then [
                 { id: 'thresholds', value: thresholdSteps(columns[col].steps) },
                 { id: 'custom.cellOptions', value: { type: 'color-background' } },
               ] else []),
          }
          for col in std.objectFields(columns)
          if std.objectHas(columns[col], 'unit') || std.objectHas(columns[col], 'steps')
        ] + [
          {
            matcher: { id: 'byName', options: col },
            properties: [{ id: 'links', value: [{ title: links[col].title, url: links[col].url }] }],
          }
          for col in std.objectFields(links)
        ],
      },
      options: { showHeader: true, cellHeight: 'sm', footer: { show: false } },
      transformations: [
        { id: 'merge', options: {} },
        {
          id: 'organize',
          options: {
            excludeByName: { Time: true } + { [col]: true for col in hidden },
            renameByName: { [col]: columns[col].name for col in std.objectFields(columns) if std.objectHas(columns[col], 'name') },
            indexByName: {},
          },
        },
      ],
    },

  // text is a Markdown note, e.g. for a row whose data comes from a feature
  // that may be off.
  text(title, content, w=24, h=3):: {
    type: 'text',
    title: title,
    gridPos: { w: w, h: h },
    options: { mode: 'markdown', content: content },
  },

  // row starts a new row of panels.
  row(title, panels):: { title: title, panels: panels },

  // Layout ------------------------------------------------------------------

  // layout turns rows of sized panels into Grafana's flat panel list with
  // row panels, ids and positions.
  layout(rows)::
    local place(state, item) =
      if std.objectHas(item, 'isRow') then
        local y = state.y + state.lineH;
        state {
          x: 0,
          y: y + 1,
          lineH: 0,
          id: state.id + 1,
          out+: [{
            type: 'row',
            title: item.title,
            collapsed: false,
            id: state.id,
            gridPos: { x: 0, y: y, w: 24, h: 1 },
            panels: [],
          }],
        }
      else
        local w = item.gridPos.w;
        local h = item.gridPos.h;
        local wrap = state.x + w > 24;
        local x = if wrap then 0 else state.x;
        local y = if wrap then state.y + state.lineH else state.y;
        state {
          x: x + w,
          y: y,
          lineH: if wrap then h else std.max(state.lineH, h),
          id: state.id + 1,
          out+: [item { id: state.id, gridPos: { x: x, y: y, w: w, h: h } }],
        };
    local items = std.flattenArrays([[{ isRow: true, title: r.title }] + r.panels for r in rows]);
    std.foldl(place, items, { x: 0, y: 0, lineH: 0, id: 1, out: [] }).out,

  // Variables ---------------------------------------------------------------

  datasourceVariable:: {
    name: 'datasource',
    label: 'Data source',
    type: 'datasource',
    query: 'prometheus',
    regex: '',
    hide: 0,
    refresh: 1,
    current: {},
    options: [],
  },

  // queryVariable lists label values. allValue '.*' with includeAll: the
  // queries match it with =~, and series always carry the label.
  queryVariable(name, label, query, multi=false, includeAll=false, hide=0):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    query: query,
    definition: query,
    regex: '',
    hide: hide,
    refresh: 2,
    sort: 1,
    multi: multi,
    includeAll: includeAll,
    [if includeAll then 'allValue']: '.*',
    current: {},
    options: [],
  },

  // Dashboard ---------------------------------------------------------------

  dashboard(config, uid, title, description, variables, rows):: {
    uid: uid,
    title: config.dashboardNamePrefix + title,
    description: description,
    tags: config.dashboardTags,
    timezone: config.dashboardTimezone,
    refresh: config.dashboardRefresh,
    time: { from: config.dashboardFrom, to: 'now' },
    schemaVersion: 39,
    editable: false,
    graphTooltip: 1,
    links: [
      {
        title: 'Image pull dashboards',
        type: 'dashboards',
        tags: config.dashboardTags,
        asDropdown: true,
        includeVars: true,
        keepTime: true,
      },
    ],
    templating: { list: variables },
    annotations: { list: [] },
    panels: $.layout(rows),
  },
}

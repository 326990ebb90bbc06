// Renders the mixin into the files under alerts/ and dashboards/, as a
// multi-file output: jsonnet -S -m OUTDIR mixin/render.jsonnet. The Go test in
// this directory renders the same way, so both produce the same bytes.
(import 'lib/render.libsonnet')(import 'mixin.libsonnet')

// Package docstest holds the tests that keep the documentation true to the
// code: README.md's metrics reference against the metrics the exporter's
// collectors describe, and its JSON shapes of `probe -o json` and
// `diagnose -o json` against the types that encode them. It has no code of its own; it lives apart from
// collector so that it can import every package that declares metrics
// (collector, collector/config, collector/kube, collector/mirror) without
// an import cycle.
package docstest

// Package web serves the exporter's pages other than /metrics: /probe
// (blackbox-style, one cold probe per request, sent through the
// scheduler's collector.Sender so it shares the registry's budget and
// counters; &debug=true adds the redacted request log), /logs?target=NAME
// (a target's latest scheduled probe and latest failure, with their
// request logs) and the status page at /. It only reads the scheduler's
// Snapshot and the running configuration; cmd/imagepull_exporter wires it.
package web

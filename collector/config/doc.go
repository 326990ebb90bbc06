// Package config parses and validates the exporter's configuration file,
// and nothing else: modules (probe.Module), targets, the discovery: and
// mirrors: sections, and the embedded default.yml used without
// --config.file. Parsing is strict (yaml.v3 KnownFields: an unknown key is
// an error) and every error names the file, the line and the fix; the
// schema is a contract, extended and never renamed.
//
// SafeConfig holds the running configuration behind a lock and reloads it
// (SIGHUP, POST /-/reload): a bad file keeps the old configuration and
// sets imagepull_exporter_config_last_reload_successful to 0.
package config

package web

import (
	"net/http"

	"github.com/imagepull/imagepull_exporter/collector/config"
)

// configHeader opens /config's answer.
const configHeader = `# The running configuration of imagepull_exporter, after defaults and
# merging (as the probes use it). Every secret is shown as <secret>; the files
# that password_file, docker_config and tls.ca_file name are not read here.
`

// NewConfigPage serves /config: the running configuration as YAML with
// every secret shown as <secret> (config.Config.Redacted), as
// blackbox_exporter's /config does, so that what the exporter really runs
// with can be read without access to its files or its pod.
func NewConfigPage(cfg func() *config.Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := cfg()
		if c == nil {
			http.Error(w, "no configuration loaded yet", http.StatusServiceUnavailable)
			return
		}
		b, err := c.Redacted()
		if err != nil {
			http.Error(w, "rendering the configuration: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(configHeader))
		_, _ = w.Write(b)
	})
}

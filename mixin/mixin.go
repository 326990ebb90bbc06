// Package mixin renders the imagepull monitoring mixin, the jsonnet in this
// directory, into the files under alerts/ and dashboards/. It exists for
// tests: the staleness check renders with it, and the end-to-end tests load
// the rules into a real Prometheus with shortened `for:` durations (Render
// with _config overrides), point the example Alertmanager configuration at
// their webhook (AlertmanagerExample), and run every dashboard query
// (DashboardQueries). scripts/mixin.sh renders the same files with the
// jsonnet CLI; both evaluate lib/render.libsonnet, so the bytes are the same.
package mixin

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-jsonnet"
)

// Sources holds the mixin's jsonnet sources and the Alertmanager example, as
// they are in the repository.
//
//go:embed mixin.libsonnet config.libsonnet render.jsonnet alerts/*.libsonnet rules/*.libsonnet dashboards/*.libsonnet lib/*.libsonnet alertmanager.example.yml
var Sources embed.FS

// Generated files, relative to the repository root.
const (
	AlertsFile = "alerts/imagepull-alerts.yaml"
	RulesFile  = "alerts/imagepull-rules.yaml"
)

// Render evaluates the mixin and returns the generated files keyed by their
// path from the repository root (AlertsFile, RulesFile, dashboards/*.json).
// configOverrides is a jsonnet object merged into _config, e.g.
// `{ registryUnreachableFor: '1m', podsBlockedFor: '1m' }`; empty renders
// the defaults, which is what the repository holds.
func Render(configOverrides string) (map[string]string, error) {
	if strings.TrimSpace(configOverrides) == "" {
		configOverrides = "{}"
	}
	vm := jsonnet.MakeVM()
	vm.Importer(&embedImporter{fs: Sources})
	vm.StringOutput = true
	// The same expression as render.jsonnet, with the overrides mixed in.
	snippet := fmt.Sprintf("(import 'lib/render.libsonnet')((import 'mixin.libsonnet') + { _config+:: %s })", configOverrides)
	files, err := vm.EvaluateAnonymousSnippetMulti("render-go.jsonnet", snippet)
	if err != nil {
		return nil, fmt.Errorf("render mixin: %w", err)
	}
	return files, nil
}

// embedImporter resolves imports relative to the importing file inside the
// embedded sources, as the jsonnet CLI does on disk.
type embedImporter struct {
	fs    embed.FS
	mu    sync.Mutex
	cache map[string]jsonnet.Contents
}

// Import implements jsonnet.Importer.
func (i *embedImporter) Import(importedFrom, importedPath string) (jsonnet.Contents, string, error) {
	p := path.Clean(path.Join(path.Dir(importedFrom), importedPath))
	i.mu.Lock()
	defer i.mu.Unlock()
	// go-jsonnet wants the same Contents for the same path.
	if c, ok := i.cache[p]; ok {
		return c, p, nil
	}
	b, err := i.fs.ReadFile(p)
	if err != nil {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q from %q: %w", importedPath, importedFrom, err)
	}
	if i.cache == nil {
		i.cache = map[string]jsonnet.Contents{}
	}
	c := jsonnet.MakeContentsRaw(b)
	i.cache[p] = c
	return c, p, nil
}

// NewImporter returns an importer over the embedded sources, for tools that
// evaluate or lint the mixin's files with their own VM.
func NewImporter() jsonnet.Importer { return &embedImporter{fs: Sources} }

// placeholderURL is the prefix of every receiver URL in the example.
const placeholderURL = "http://alerts.example.invalid/"

var (
	receiverURL   = regexp.MustCompile(regexp.QuoteMeta(placeholderURL) + `[A-Za-z0-9_-]*`)
	groupWait     = regexp.MustCompile(`(?m)^(\s*group_wait:\s*)\S+`)
	groupInterval = regexp.MustCompile(`(?m)^(\s*group_interval:\s*)\S+`)
)

// AlertmanagerExample returns mixin/alertmanager.example.yml with every
// receiver's URL replaced by webhookURL (receivers still differ by name, which
// the webhook payload carries) and, when wait > 0, every group_wait and
// group_interval set to wait, so a test need not wait 30s for a first
// notification. Routes and inhibit rules are the example's, unchanged: they
// are what the test proves.
func AlertmanagerExample(webhookURL string, wait time.Duration) (string, error) {
	b, err := Sources.ReadFile("alertmanager.example.yml")
	if err != nil {
		return "", fmt.Errorf("read alertmanager example: %w", err)
	}
	s := receiverURL.ReplaceAllLiteralString(string(b), webhookURL)
	if strings.Contains(s, placeholderURL) {
		return "", fmt.Errorf("alertmanager example: a receiver URL under %s was not replaced", placeholderURL)
	}
	if wait > 0 {
		d := wait.String()
		s = groupWait.ReplaceAllString(s, "${1}"+d)
		s = groupInterval.ReplaceAllString(s, "${1}"+d)
	}
	return s, nil
}

// DashboardQuery is one query of one dashboard panel.
type DashboardQuery struct {
	Dashboard string // file name under dashboards/
	UID       string // dashboard uid
	Panel     string // panel title
	RefID     string // the target's refId (A, B, ...)
	Expr      string // PromQL with Grafana variables ($cluster, $__rate_interval...)
	Instant   bool   // an instant query (tables) rather than a range query
}

// dashboardModel is the part of Grafana's JSON model the queries live in.
type dashboardModel struct {
	UID    string `json:"uid"`
	Panels []struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			RefID   string `json:"refId"`
			Expr    string `json:"expr"`
			Instant bool   `json:"instant"`
		} `json:"targets"`
	} `json:"panels"`
}

// DashboardQueries returns every panel query of the rendered dashboards in
// files (as Render returns them), in file and panel order.
func DashboardQueries(files map[string]string) ([]DashboardQuery, error) {
	var names []string
	for name := range files {
		if strings.HasPrefix(name, "dashboards/") && strings.HasSuffix(name, ".json") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var out []DashboardQuery
	for _, name := range names {
		var d dashboardModel
		if err := json.Unmarshal([]byte(files[name]), &d); err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", name, err)
		}
		for _, p := range d.Panels {
			for _, t := range p.Targets {
				out = append(out, DashboardQuery{
					Dashboard: strings.TrimPrefix(name, "dashboards/"),
					UID:       d.UID,
					Panel:     p.Title,
					RefID:     t.RefID,
					Expr:      t.Expr,
					Instant:   t.Instant,
				})
			}
		}
	}
	return out, nil
}

// grafanaVariable matches $name and ${name} (with an optional :format).
// Names start with a letter or underscore, so label_replace's "$1" is not one.
var grafanaVariable = regexp.MustCompile(`\$\{([A-Za-z_]\w*)(?::\w+)?\}|\$([A-Za-z_]\w*)`)

// ExpandVariables replaces Grafana variables in a panel query with values, as
// Grafana would before sending it: vars maps a variable name (cluster,
// registry, namespace, __rate_interval) to its value. A variable without a
// value is an error, so a test cannot run a query Grafana would not.
func ExpandVariables(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := grafanaVariable.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVariable.FindStringSubmatch(m)
		name := sub[1]
		if name == "" {
			name = sub[2]
		}
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("query %q uses variables without a value: %s", expr, strings.Join(missing, ", "))
	}
	return out, nil
}

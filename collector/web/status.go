package web

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/collector/config"
	"github.com/imagepull/imagepull_exporter/probe"
)

//go:embed status.html
var statusHTML string

//go:embed status.js
var statusJS []byte

var statusTemplate = template.Must(template.New("status").Parse(statusHTML))

// statusCSP is the status page's Content-Security-Policy: its own script
// and status.json only, the one inline <style> by its hash, nothing else.
// With every text escaped by html/template (and set through textContent
// by the script), it is a second line against markup from a target name,
// an image reference or a registry's error text.
var statusCSP = func() string {
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(statusHTML)
	if m == nil {
		panic("status.html has no <style>")
	}
	sum := sha256.Sum256([]byte(m[1]))
	return "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; style-src 'sha256-" +
		base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// DefaultStatusRefresh is how often the status page refreshes itself.
const DefaultStatusRefresh = 10 * time.Second

// topNamespaces is how many namespaces the Kubernetes section lists.
const topNamespaces = 10

// StatusSchema is the version of /status.json's shape ("schema").
const StatusSchema = 1

// JoinView is what the status page reads of the Kubernetes join
// (kube.Cluster implements it). JoinSummary evaluates the join once per
// call, as a scrape does.
type JoinView interface {
	JoinSummary(top int) collector.JoinSummary
}

// StatusPageOptions configures NewStatusPage.
type StatusPageOptions struct {
	// Snapshot returns the scheduler's state (Scheduler.Snapshot).
	Snapshot func() collector.Snapshot
	// Version is printed in the page footer (version.Info()).
	Version string
	// Now is the clock for ages; nil means time.Now.
	Now func() time.Time
	// Config returns the running configuration: its modules decide whether
	// a row can link to a debug probe. Nil: no debug links.
	Config func() *config.Config
	// Redactor returns the redactor that knows every secret of the
	// running configuration (the log's, collector.RedactingHandler); nil
	// means one made per view from Config's modules.
	Redactor func() *probe.Redactor
	// ProbeEndpoint says /probe is served, so rows link to a debug probe.
	ProbeEndpoint bool
	// Join is the Kubernetes join; nil when it is off (no section).
	Join JoinView
	// Refresh is how often the page refreshes itself (?refresh=SECONDS
	// overrides it per view); 0 means DefaultStatusRefresh.
	Refresh time.Duration
}

// NewStatusPage serves the landing page "/", its data "/status.json" and
// its script "/status.js". The page is rendered on the server, so it reads
// without JavaScript (and with curl), and then refreshes itself: the script
// polls status.json and replaces the tables' rows, without a reload;
// without JavaScript, a <noscript> meta refresh reloads it. It shows
// nothing of module credentials, and every error text passes the
// redactor of the running configuration's secrets.
func NewStatusPage(opts StatusPageOptions) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultStatusRefresh
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", statusCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		switch r.URL.Path {
		case "/":
			data := statusData(opts, opts.Now())
			data.RefreshSeconds = refreshSeconds(r.URL.Query().Get("refresh"), opts.Refresh)
			var b bytes.Buffer
			if err := statusTemplate.Execute(&b, data); err != nil {
				http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-store")
			_, _ = w.Write(b.Bytes())
		case "/status.json":
			b, err := json.Marshal(statusData(opts, opts.Now()))
			if err != nil {
				http.Error(w, "encoding the status: "+err.Error(), http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			_, _ = w.Write(b)
		case "/status.js":
			h.Set("Content-Type", "text/javascript; charset=utf-8")
			_, _ = w.Write(statusJS)
		default:
			http.NotFound(w, r)
		}
	})
}

// refreshSeconds is ?refresh=N when it is a whole number of seconds from 1
// to an hour, else the default.
func refreshSeconds(q string, def time.Duration) int {
	if n, err := strconv.Atoi(q); err == nil && n >= 1 && n <= 3600 {
		return n
	}
	return max(1, int(def/time.Second))
}

// Result values of a row, in the order rows are listed: what needs a look
// first.
const (
	resultFailed        = "failed"
	resultNoCredentials = "no_credentials"
	resultPending       = "pending"
	resultOK            = "ok"
)

var resultRank = map[string]int{resultFailed: 0, resultNoCredentials: 1, resultPending: 2, resultOK: 3}

// statusRow is one target: a row of the page and an entry of status.json.
type statusRow struct {
	Name   string `json:"name"`
	Image  string `json:"image"`
	Source string `json:"source"`
	Module string `json:"module"`
	// Result is failed, no_credentials, pending or ok; ResultText says it
	// for humans.
	Result     string `json:"result"`
	ResultText string `json:"result_text"`
	Reason     string `json:"reason"`
	// Error is the latest failure's text, redacted; Note says what to do
	// when the error does not already.
	Error string `json:"error"`
	Note  string `json:"note"`
	// Latency is the latest probe's total time ("" before the first).
	Latency        string  `json:"latency"`
	LatencySeconds float64 `json:"latency_seconds"`
	Headroom       string  `json:"headroom"`
	// LastSuccess is RFC 3339, "" before the first success; LastSuccessAgo
	// says it for humans ("never" before).
	LastSuccess    string `json:"last_success"`
	LastSuccessAgo string `json:"last_success_ago"`
	Digest         string `json:"digest"`
	DigestShort    string `json:"digest_short"`
	Interval       string `json:"interval"`
	// LogsURL links the target's latest probe and latest failure with
	// their requests (/logs); LogsLabel names what it shows.
	LogsURL   string `json:"logs_url"`
	LogsLabel string `json:"logs_label"`
	// DebugURL is an on-demand probe (/probe?debug=true) with the
	// target's module, DebugLabel its link text; "" when it cannot run,
	// DebugNote then says why ("" too when /probe is off).
	DebugURL   string `json:"debug_url"`
	DebugLabel string `json:"debug_label"`
	DebugNote  string `json:"debug_note"`
}

// registryRow is one registry's health (imagepull_registry_up).
type registryRow struct {
	Registry string `json:"registry"`
	State    string `json:"state"` // up or down
	Reason   string `json:"reason"`
}

type statusSummary struct {
	Targets       int `json:"targets"`
	Configured    int `json:"configured"`
	Discovered    int `json:"discovered"`
	Failed        int `json:"failed"`
	NoCredentials int `json:"no_credentials"`
	Pending       int `json:"pending"`
	OK            int `json:"ok"`
}

type kubeSection struct {
	Synced         bool           `json:"synced"`
	Containers     int            `json:"containers"`
	Blocked        []blockedRow   `json:"blocked"`
	Namespaces     []namespaceRow `json:"namespaces"`
	MoreNamespaces int            `json:"more_namespaces"`
	Folded         int            `json:"folded_registries"`
}

type blockedRow struct {
	Registry   string `json:"registry"`
	Cause      string `json:"cause"`
	Containers int    `json:"containers"`
}

type namespaceRow struct {
	Namespace  string `json:"namespace"`
	Containers int    `json:"containers"`
}

// statusPage is the page's data and /status.json's document.
type statusPage struct {
	Schema     int           `json:"schema"`
	Generated  string        `json:"generated"`
	Version    string        `json:"version"`
	Summary    statusSummary `json:"summary"`
	Targets    []statusRow   `json:"targets"`
	Registries []registryRow `json:"registries"`
	// Kubernetes is null when the join is off.
	Kubernetes    *kubeSection `json:"kubernetes"`
	ProbeEndpoint bool         `json:"probe_endpoint"`

	RefreshSeconds int `json:"-"` // the page's, from ?refresh
}

func statusData(opts StatusPageOptions, now time.Time) statusPage {
	snap := opts.Snapshot()
	var cfg *config.Config
	if opts.Config != nil {
		cfg = opts.Config()
	}
	var red *probe.Redactor
	if opts.Redactor != nil {
		red = opts.Redactor()
	}
	if red == nil {
		red = probe.NewRedactor()
		if cfg != nil {
			for _, m := range cfg.Modules {
				red.AddModule(m)
			}
		}
	}
	page := statusPage{Schema: StatusSchema, Version: opts.Version, Generated: now.UTC().Format(time.RFC3339),
		Summary: statusSummary{Targets: len(snap.Targets), Configured: snap.Sources[collector.SourceConfig],
			Discovered: snap.Sources[collector.SourceDiscovered]},
		Targets: []statusRow{}, Registries: []registryRow{}, ProbeEndpoint: opts.ProbeEndpoint}
	headroom := map[string][]string{}
	for _, rl := range snap.RateLimits {
		s := fmt.Sprintf("%g/%g", rl.Remaining, rl.Limit)
		if rl.Source != "" {
			s += " (" + rl.Source + ")"
		}
		headroom[rl.Registry] = append(headroom[rl.Registry], s)
	}
	for _, t := range snap.Targets {
		row := statusRow{Name: t.Name, Image: t.Ref.String(), Source: t.Source, Module: t.Module,
			Interval: t.Interval.String(), Result: resultPending, LastSuccessAgo: "never", Headroom: "—",
			LogsURL: "logs?target=" + url.QueryEscape(t.Name), LogsLabel: "requests"}
		if h := headroom[t.Ref.Registry]; len(h) > 0 {
			row.Headroom = strings.Join(h, ", ")
		}
		if t.LastFailure != nil {
			row.LogsLabel = "last failure's requests"
		}
		if res := t.Last; res != nil {
			total := res.Phases[probe.PhaseTotal]
			row.Latency, row.LatencySeconds = total.Round(time.Millisecond).String(), total.Seconds()
			switch {
			case res.Success:
				row.Result = resultOK
			case res.Reason.Inconclusive():
				// Not a failure of the registry or the image: the
				// registry asked for credentials the exporter does not
				// have for it (issue 11).
				row.Result, row.Reason, row.Error = resultNoCredentials, string(res.Reason), red.Redact(res.Error)
				if !strings.Contains(row.Error, probe.NoCredentialsHint) {
					row.Note = probe.NoCredentialsHint
				}
			default:
				row.Result, row.Reason, row.Error = resultFailed, string(res.Reason), red.Redact(res.Error)
			}
		}
		switch row.Result {
		case resultOK:
			page.Summary.OK++
		case resultNoCredentials:
			page.Summary.NoCredentials++
		case resultFailed:
			page.Summary.Failed++
		default:
			page.Summary.Pending++
		}
		row.ResultText = strings.ReplaceAll(row.Result, "_", " ")
		if !t.LastSuccess.IsZero() {
			row.LastSuccess = t.LastSuccess.UTC().Format(time.RFC3339)
			row.LastSuccessAgo = humanAge(now.Sub(t.LastSuccess)) + " ago"
		}
		if t.Digest != "" {
			row.Digest = t.Digest
			_, hex, _ := strings.Cut(t.Digest, ":")
			row.DigestShort = hex[:min(12, len(hex))]
		}
		if opts.ProbeEndpoint {
			row.DebugURL, row.DebugNote = debugLink(cfg, t)
			if row.DebugURL != "" {
				row.DebugLabel = "debug probe"
				if t.PullSecrets {
					// /probe knows modules, not pods: it probes with
					// the module's credentials.
					row.DebugLabel = "debug probe (the module's credentials, not the pods' pull secrets)"
				}
			}
		}
		page.Targets = append(page.Targets, row)
	}
	// Failures first, then targets without credentials, pending, ok; by
	// name within each (the snapshot's order), so rows do not jump around.
	slices.SortStableFunc(page.Targets, func(a, b statusRow) int { return resultRank[a.Result] - resultRank[b.Result] })
	for _, r := range snap.Registries {
		row := registryRow{Registry: r.Registry, State: "up"}
		if !r.Up {
			row.State, row.Reason = "down", string(r.Reason)
		}
		page.Registries = append(page.Registries, row)
	}
	if opts.Join != nil {
		page.Kubernetes = kubeData(opts.Join.JoinSummary(topNamespaces))
	}
	return page
}

// debugLink is the /probe?debug=true link of a target, or why there is
// none: /probe refuses (403) a module's credentials on a registry they are
// not bound to, and knows only the running configuration's modules.
func debugLink(cfg *config.Config, t collector.TargetStatus) (link, note string) {
	m := probe.DefaultModule
	if cfg != nil {
		mm, ok := cfg.Modules[t.Module]
		switch {
		case ok:
			m = mm
		case t.Module != config.DefaultModuleName:
			return "", fmt.Sprintf("no debug probe: module %q is not in the running configuration", t.Module)
		}
	}
	if err := m.CheckBinding(t.Ref.Registry); err != nil {
		return "", fmt.Sprintf("no debug probe: module %q's credentials are not bound to %s, so /probe refuses it (the scheduled probe runs anonymously)", t.Module, t.Ref.Registry)
	}
	return "probe?target=" + url.QueryEscape(t.Ref.String()) + "&module=" + url.QueryEscape(t.Module) + "&debug=true", ""
}

func kubeData(s collector.JoinSummary) *kubeSection {
	k := &kubeSection{Synced: s.Synced, Containers: s.Containers, MoreNamespaces: s.MoreNamespaces, Folded: s.Folded,
		Blocked: []blockedRow{}, Namespaces: []namespaceRow{}}
	for _, b := range s.Blocked {
		k.Blocked = append(k.Blocked, blockedRow{Registry: b.Registry, Cause: b.Cause, Containers: b.Containers})
	}
	for _, n := range s.Namespaces {
		k.Namespaces = append(k.Namespaces, namespaceRow{Namespace: n.Namespace, Containers: n.Containers})
	}
	return k
}

func humanAge(d time.Duration) string {
	switch {
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		d = d.Round(time.Hour)
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	}
}

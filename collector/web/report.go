package web

import (
	"encoding/json"
	"io"
	"net/url"
	"time"

	"github.com/imagepull/imagepull_exporter/probe"
)

// ProbeReportSchema is the version of ProbeReport's shape, its "schema"
// field. Fields are only ever added within a version; a field that changes
// meaning or goes away bumps it.
const ProbeReportSchema = 1

// ProbeReport is one probe for scripts: what `imagepull_exporter probe -o
// json` prints. The README documents every field.
type ProbeReport struct {
	Schema int `json:"schema"`
	// Image is the normalised reference probed; Registry, Repository and
	// Reference (the tag, or the digest) are its parts, as in the
	// metrics' labels.
	Image      string `json:"image"`
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Reference  string `json:"reference"`
	// Module is the module probed with; Overrides names the command's
	// flags that adjusted it (plain-http, insecure, ca-file, username).
	Module    string   `json:"module"`
	Overrides []string `json:"overrides"`
	// Scheme is http or https: how the registry was spoken to.
	Scheme  string `json:"scheme"`
	Success bool   `json:"success"`
	// Reason is the failure reason ("" on success), Error its text.
	Reason string `json:"reason"`
	Error  string `json:"error"`
	// Digest and MediaType are the manifest HEAD's answer.
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	// Phases holds the measured phases in seconds (resolve, connect, tls
	// are absent on a reused connection); total is always there.
	Phases            map[string]float64 `json:"phases_seconds"`
	RateLimit         *RateLimitReport   `json:"rate_limit"`
	RetryAfterSeconds float64            `json:"retry_after_seconds"`
	// TLSCertExpiry is the registry certificate's NotAfter from a verified
	// chain; null over plain HTTP or with --insecure.
	TLSCertExpiry *time.Time      `json:"tls_cert_expiry"`
	Auth          AuthReport      `json:"auth"`
	Requests      []RequestReport `json:"requests"`
}

// RateLimitReport is what the registry said of its pull rate limit.
type RateLimitReport struct {
	Limit         float64 `json:"limit"`
	Remaining     float64 `json:"remaining"`
	WindowSeconds float64 `json:"window_seconds"`
	Source        string  `json:"source"`
}

// AuthReport says whether the probe authenticated (ping and token
// exchange) and whether that succeeded.
type AuthReport struct {
	Checked bool `json:"checked"`
	OK      bool `json:"ok"`
}

// RequestReport is one request of the probe; Headers only with -v.
type RequestReport struct {
	Kind            string              `json:"kind"`
	Method          string              `json:"method"`
	URL             string              `json:"url"`
	Status          int                 `json:"status"`
	DurationSeconds float64             `json:"duration_seconds"`
	Error           string              `json:"error"`
	Headers         map[string][]string `json:"headers,omitempty"`
}

// NewProbeReport turns a result of a probe made with module m into a
// ProbeReport, with every text passed through m's redactor (the prober has
// redacted them already: this is the second line, as for the text output).
// Module and Overrides are the caller's to fill.
func NewProbeReport(res probe.Result, m probe.Module, withHeaders bool) ProbeReport {
	red := probe.ModuleRedactor(m, res.Ref)
	r := ProbeReport{
		Schema: ProbeReportSchema, Image: res.Ref.String(), Registry: res.Ref.Registry,
		Repository: res.Ref.Repository, Reference: res.Ref.Identifier(), Overrides: []string{},
		Scheme: "https", Success: res.Success, Reason: string(res.Reason), Error: red.Redact(res.Error),
		Digest: res.Digest, MediaType: red.Redact(res.MediaType), Phases: map[string]float64{},
		RetryAfterSeconds: res.RetryAfter.Seconds(),
		Auth:              AuthReport{Checked: res.AuthChecked, OK: res.AuthOK},
		Requests:          []RequestReport{},
	}
	if m.PlainHTTP {
		r.Scheme = "http"
	}
	for ph, d := range res.Phases {
		r.Phases[string(ph)] = d.Seconds()
	}
	if rl := res.RateLimit; rl != nil {
		r.RateLimit = &RateLimitReport{Limit: rl.Limit, Remaining: rl.Remaining, WindowSeconds: rl.Window.Seconds(), Source: red.Redact(rl.Source)}
	}
	if !res.TLSCertExpiry.IsZero() {
		t := res.TLSCertExpiry.UTC()
		r.TLSCertExpiry = &t
	}
	for _, rq := range res.Requests {
		out := RequestReport{Kind: string(rq.Kind), Method: rq.Method, URL: red.Redact(rq.URL), Status: rq.Status,
			DurationSeconds: rq.Duration.Seconds(), Error: red.Redact(rq.Err)}
		if u, err := url.Parse(rq.URL); err == nil && u.Scheme != "" && len(r.Requests) == 0 {
			r.Scheme = u.Scheme // what was really spoken, from the first request
		}
		if withHeaders {
			out.Headers = map[string][]string{}
			for k, vs := range rq.Header {
				for _, v := range vs {
					out.Headers[k] = append(out.Headers[k], red.Redact(v))
				}
			}
		}
		r.Requests = append(r.Requests, out)
	}
	return r
}

// WriteJSON writes v as one indented JSON document. HTML characters are
// not escaped: the output is for terminals and scripts, where "<redacted>"
// reads better than "\u003credacted\u003e".
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

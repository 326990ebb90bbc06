package web

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/imagepull/imagepull_exporter/collector"
	"github.com/imagepull/imagepull_exporter/probe"
)

// writeResult prints a probe result for humans: what /probe?debug=true and
// the `probe` command show.
func writeResult(w io.Writer, res probe.Result) {
	p := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-12s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	p("image", "%s", res.Ref)
	if res.Success {
		p("result", "success")
	} else {
		p("result", "FAILED, reason %s", res.Reason)
		if res.Error != "" {
			p("error", "%s", res.Error)
		}
	}
	if res.Digest != "" {
		p("digest", "%s", res.Digest)
		p("media type", "%s", res.MediaType)
	}
	if rl := res.RateLimit; rl != nil {
		src := ""
		if rl.Source != "" {
			src = ", source " + rl.Source
		}
		win := ""
		if rl.Window > 0 {
			win = " per " + rl.Window.String()
		}
		p("rate limit", "%g of %g pulls left%s%s", rl.Remaining, rl.Limit, win, src)
	} else {
		p("rate limit", "none reported (no ratelimit-* headers: unlimited, or a paid account)")
	}
	if res.RetryAfter > 0 {
		p("retry after", "%s", res.RetryAfter)
	}
	if res.MalformedHeaders > 0 {
		p("malformed", "%d header value(s) ignored: %s", res.MalformedHeaders, strings.Join(res.MalformedHeaderNames, ", "))
	}
	if !res.TLSCertExpiry.IsZero() {
		p("tls expiry", "%s (in %s)", res.TLSCertExpiry.UTC().Format(time.RFC3339), time.Until(res.TLSCertExpiry).Round(time.Hour))
	}
	switch {
	case !res.AuthChecked:
		p("auth", "not checked by this probe (cached token)")
	case res.AuthOK:
		p("auth", "ok")
	default:
		p("auth", "failed")
	}
	fmt.Fprintln(w, "phases:")
	for _, ph := range probe.Phases {
		if d, ok := res.Phases[ph]; ok {
			fmt.Fprintf(w, "  %-9s %s\n", ph, d.Round(10*time.Microsecond))
		}
	}
	var kinds []string
	for _, rq := range res.Requests {
		kinds = append(kinds, fmt.Sprintf("%s %s", rq.Kind, collector.StatusLabel(rq.Status)))
	}
	p("requests", "%d (%s)", len(res.Requests), strings.Join(kinds, ", "))
}

// writeRequestLog prints every request of a probe with its (already
// redacted) headers.
func writeRequestLog(w io.Writer, res probe.Result) {
	for i, rq := range res.Requests {
		status := collector.StatusLabel(rq.Status)
		fmt.Fprintf(w, "%d. %s %s %s -> %s in %s\n", i+1, rq.Kind, rq.Method, rq.URL, status, rq.Duration.Round(10*time.Microsecond))
		if rq.Err != "" {
			fmt.Fprintf(w, "     error: %s\n", rq.Err)
		}
		keys := make([]string, 0, len(rq.Header))
		for k := range rq.Header {
			keys = append(keys, k)
		}
		// Sent headers ("> ") before received ones ("< ").
		sort.Slice(keys, func(i, j int) bool {
			if keys[i][0] != keys[j][0] {
				return keys[i][0] == '>'
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			for _, v := range rq.Header[k] {
				fmt.Fprintf(w, "     %s: %s\n", k, v)
			}
		}
	}
}

// WriteRedacted writes the result (and, when withRequests, the request log)
// of a probe made with module m, with m's credentials redacted by the
// prober's one redactor (probe.Redactor): what the `probe` command prints.
func WriteRedacted(w io.Writer, res probe.Result, m probe.Module, withRequests bool) {
	var b strings.Builder
	writeResult(&b, res)
	if withRequests {
		b.WriteString("\nrequests:\n")
		writeRequestLog(&b, res)
	}
	_, _ = io.WriteString(w, probe.ModuleRedactor(m, res.Ref).Redact(b.String()))
}

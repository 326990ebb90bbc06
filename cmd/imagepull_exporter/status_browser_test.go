package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// rowSig is what a status page row shows, read from the rendered DOM,
// without what changes from one probe to the next (latency, ages).
type rowSig struct {
	Target, Result string
	Classes        []string // of the cells
	Hrefs          []string // of the links, as written
	Error, Note    string   // the visible texts (innerText)
	DebugNote      string
	ErrorVisible   bool
}

// jsRows reads the targets table as rendered.
const jsRows = `Array.from(document.querySelectorAll("#targets tbody tr[data-target]")).map(function (tr) {
  var err = tr.querySelector("td.reason .error"), note = tr.querySelector("td.reason .small"), dn = tr.querySelector("td.links .small");
  return {
    Target: tr.getAttribute("data-target"), Result: tr.getAttribute("data-result"),
    Classes: Array.from(tr.children).map(function (td) { return td.className; }),
    Hrefs: Array.from(tr.querySelectorAll("a")).map(function (a) { return a.getAttribute("href"); }),
    Error: err ? err.innerText : "", Note: note ? note.innerText : "", DebugNote: dn ? dn.innerText : "",
    ErrorVisible: !!err && err.getBoundingClientRect().height > 0 && getComputedStyle(err).visibility === "visible"
  };
})`

// TestStatusPageInBrowser loads the status page of the real exporter, with
// real registries behind its targets, in headless Chromium and checks the
// DOM a person sees: rows ordered failures first, the error text shown (not
// a tooltip), the links to the request log and to a debug probe (and why a
// row has none), and that a new probe's result replaces a row without a
// reload. Then the same page without JavaScript: complete, with a meta
// refresh.
func TestStatusPageInBrowser(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	reg.Push(t, "demo/app", "v1")
	authReg := testenv.StartRegistry(t, testenv.RegistryOptions{Auth: testenv.RegistryAuthBasic})
	authReg.Push(t, "team/app", "v1")
	// Nothing listens here: connection refused.
	refused := testenv.FreeAddr(t)
	// A registry that accepts connections and never answers: its target
	// stays pending (its probe in flight, or not yet due) for the test.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()

	cfg := filepath.Join(t.TempDir(), "config.yml")
	writeFile(t, cfg, fmt.Sprintf(`
modules:
  local: {plain_http: true, timeout: 900ms, interval: 1s}
  hang: {plain_http: true, timeout: 5m, interval: 10m}
  bound-elsewhere:
    plain_http: true
    timeout: 900ms
    interval: 1s
    auth: {username: alice, password: bound-pw-7c1d, registries: [registry.example.com]}
targets:
  - {name: ok-app, image: %[1]s/demo/app:v1, module: local}
  - {name: missing-tag, image: %[1]s/demo/app:v2, module: local}
  - {name: refused, image: %[2]s/demo/app:v1, module: local}
  - {name: private, image: %[3]s/team/app:v1, module: local}
  - {name: hung, image: %[4]s/demo/app:v1, module: hang}
  - {name: unbound, image: %[1]s/demo/app:v1, module: bound-elsewhere}
`, reg.Addr, refused, authReg.Addr, hang.Addr()))
	e := startExporter(t, "--config.file", cfg)
	e.waitFor("every target but the hung one probed", func() bool {
		s := e.scrape()
		for _, tgt := range []string{"ok-app", "missing-tag", "refused", "private", "unbound"} {
			if _, ok := lookup(s, "imagepull_probe_success", `target="`+tgt+`"`); !ok {
				return false
			}
		}
		return true
	})

	b := testenv.StartBrowser(t)
	b.Navigate(e.URL + "/?refresh=2")
	var served []rowSig
	var renders *string
	b.MustEval(`document.body.getAttribute("data-renders")`, &renders)
	b.MustEval(jsRows, &served)
	if renders != nil {
		t.Fatalf("the script re-rendered the page (%s) before the server's rows were read", *renders)
	}

	var order []string
	for _, r := range served {
		order = append(order, r.Target+"="+r.Result)
	}
	if want := []string{"missing-tag=failed", "refused=failed", "private=no_credentials", "hung=pending", "ok-app=ok", "unbound=ok"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("rows as rendered: %q, want %q", order, want)
	}
	row := func(rows []rowSig, name string) rowSig {
		for _, r := range rows {
			if r.Target == name {
				return r
			}
		}
		t.Fatalf("no row %s", name)
		return rowSig{}
	}
	debugHref := func(image, module string) string {
		return "probe?target=" + url.QueryEscape(image) + "&module=" + module + "&debug=true"
	}
	for _, c := range []struct {
		name      string
		errorHas  string
		hrefs     []string
		debugNote string
	}{
		{"missing-tag", "manifest HEAD http://" + reg.Addr + "/v2/demo/app/manifests/v2: 404",
			[]string{"logs?target=missing-tag", "logs?target=missing-tag", debugHref(reg.Addr+"/demo/app:v2", "local")}, ""},
		{"refused", "connection refused",
			[]string{"logs?target=refused", "logs?target=refused", debugHref(refused+"/demo/app:v1", "local")}, ""},
		{"private", "401",
			[]string{"logs?target=private", "logs?target=private", debugHref(authReg.Addr+"/team/app:v1", "local")}, ""},
		{"unbound", "",
			[]string{"logs?target=unbound", "logs?target=unbound"},
			`no debug probe: module "bound-elsewhere"'s credentials are not bound to ` + reg.Addr + `, so /probe refuses it (the scheduled probe runs anonymously)`},
	} {
		r := row(served, c.name)
		if c.errorHas != "" && (!strings.Contains(r.Error, c.errorHas) || !r.ErrorVisible) {
			t.Errorf("%s: error %q (visible %v), want it shown with %q", c.name, r.Error, r.ErrorVisible, c.errorHas)
		}
		if !reflect.DeepEqual(r.Hrefs, c.hrefs) {
			t.Errorf("%s: links %q, want %q", c.name, r.Hrefs, c.hrefs)
		}
		if r.DebugNote != c.debugNote {
			t.Errorf("%s: debug note %q, want %q", c.name, r.DebugNote, c.debugNote)
		}
	}
	if r := row(served, "private"); !strings.Contains(r.Error, "no credentials for this registry") {
		t.Errorf("private: %q does not say what to do", r.Error)
	}
	// The links work, from the page: the request log of the failure, and
	// an on-demand debug probe.
	var fetched struct {
		Logs, Debug string
		LogsCode    int
		DebugCode   int
	}
	b.MustEval(`(async function () {
  var tr = document.querySelector('#targets tr[data-target="missing-tag"]');
  var logs = await fetch(tr.querySelector("a.logs").href), debug = await fetch(tr.querySelector("a.debug").href);
  return {Logs: await logs.text(), LogsCode: logs.status, Debug: await debug.text(), DebugCode: debug.status};
})()`, &fetched)
	if fetched.LogsCode != 200 || !strings.Contains(fetched.Logs, "Latest probe (failed)") || !strings.Contains(fetched.Logs, "-> 404") {
		t.Errorf("the row's request log link: %d\n%s", fetched.LogsCode, fetched.Logs)
	}
	if fetched.DebugCode != 200 || !strings.Contains(fetched.Debug, "Probe of "+reg.Addr+`/demo/app:v2 with module "local"`) {
		t.Errorf("the row's debug probe link: %d\n%s", fetched.DebugCode, fetched.Debug)
	}

	// The script's rows are the server's rows.
	b.WaitFor("the first refresh", `document.body.getAttribute("data-renders") !== null`)
	var refreshed []rowSig
	b.MustEval(jsRows, &refreshed)
	if !reflect.DeepEqual(refreshed, served) {
		t.Errorf("the refreshed rows differ from the served ones:\n got %+v\nwant %+v", refreshed, served)
	}

	// A new probe's result replaces the row, without a reload.
	b.MustEval(`window.__sameDocument = "yes"`, nil)
	reg.Push(t, "demo/app", "v2")
	b.WaitFor("missing-tag to turn ok on the page", `document.querySelector('#targets tr[data-target="missing-tag"]').getAttribute("data-result") === "ok"`)
	var after struct {
		Same    string
		Summary string
		Row     string
		Order   []string
	}
	b.MustEval(`({Same: window.__sameDocument, Summary: document.getElementById("summary-failed").innerText,
  Row: document.querySelector('#targets tr[data-target="missing-tag"]').innerText,
  Order: Array.from(document.querySelectorAll("#targets tr[data-target]")).map(function (tr) { return tr.getAttribute("data-target"); })})`, &after)
	if after.Same != "yes" {
		t.Error("the page was reloaded, not refreshed in place")
	}
	if after.Summary != "1 failed" || strings.Contains(after.Row, "404") {
		t.Errorf("after the refresh: summary %q, row %q", after.Summary, after.Row)
	}
	if want := []string{"refused", "private", "hung", "missing-tag", "ok-app", "unbound"}; !reflect.DeepEqual(after.Order, want) {
		t.Errorf("rows after the refresh: %q, want %q", after.Order, want)
	}
	if ex := b.Exceptions(); len(ex) > 0 {
		t.Errorf("the page's script threw: %q", ex)
	}

	// Without JavaScript the served page is complete and reloads itself.
	nojs := testenv.StartBrowser(t)
	nojs.DisableScripts()
	nojs.Navigate(e.URL + "/?refresh=30")
	var plain struct {
		Rows    int
		Refresh string
		Renders *string
	}
	nojs.MustEval(`({Rows: document.querySelectorAll("#targets tr[data-target]").length,
  Refresh: (document.querySelector('meta[http-equiv="refresh"]') || {}).content || "",
  Renders: document.body.getAttribute("data-renders")})`, &plain)
	if plain.Rows != 6 || plain.Refresh != "30" || plain.Renders != nil {
		t.Errorf("without JavaScript: %d rows, meta refresh %q, script renders %v; want 6 rows, a meta refresh of 30, no script", plain.Rows, plain.Refresh, plain.Renders)
	}
}

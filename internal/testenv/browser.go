package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Browser is a real headless Chromium (Debian's chromium package) that a
// test drives over the Chrome DevTools Protocol, to check what a page does
// once a browser has run its scripts: the rendered DOM, not the HTML the
// server sent.
//
// It speaks the protocol over --remote-debugging-pipe (JSON messages ended
// by a NUL byte, commands on the browser's fd 3 and answers on its fd 4),
// as Puppeteer does: no debugging port to find or guard, and no websocket
// client, so the tests need no module beyond the standard library.
type Browser struct {
	t       testing.TB
	cmd     *exec.Cmd
	toChrom *os.File
	session string
	readErr chan error // the reader's end

	mu         sync.Mutex
	nextID     int64
	pending    map[int64]chan cdpMessage
	exceptions []string // uncaught exceptions of the page's scripts
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// browserTimeout bounds one protocol command.
const browserTimeout = 30 * time.Second

// StartBrowser starts headless Chromium with an empty profile and one page,
// stopped by t.Cleanup.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	bin := Bin(t, "chromium")
	dir := t.TempDir()
	// fd 3: the browser reads commands; fd 4: it writes answers.
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ansR, ansW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-dev-shm-usage", "--disable-extensions", "--disable-sync", "--no-first-run",
		"--no-default-browser-check", "--mute-audio", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, ansW}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start chromium: %v", err)
	}
	cmdR.Close()
	ansW.Close()
	b := &Browser{t: t, cmd: cmd, toChrom: cmdW, readErr: make(chan error, 1), pending: map[int64]chan cdpMessage{}}
	go b.read(ansR)
	t.Cleanup(func() {
		b.stop()
		stderr.Close()
		if t.Failed() {
			out, _ := os.ReadFile(stderr.Name())
			t.Logf("--- chromium's output ---\n%s", tail(string(out), 40))
		}
	})

	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.call(b.session, "Page.enable", nil, nil)
	b.call(b.session, "Runtime.enable", nil, nil)
	return b
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// read dispatches the browser's messages until its pipe closes.
func (b *Browser) read(r io.ReadCloser) {
	defer r.Close()
	br := bufio.NewReader(r)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			b.readErr <- err
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(raw[:len(raw)-1], &m); err != nil {
			continue
		}
		b.mu.Lock()
		switch {
		case m.ID != 0:
			if ch, ok := b.pending[m.ID]; ok {
				ch <- m
				delete(b.pending, m.ID)
			}
		case m.Method == "Runtime.exceptionThrown":
			var p struct {
				ExceptionDetails struct {
					Text      string `json:"text"`
					Exception struct {
						Description string `json:"description"`
					} `json:"exception"`
				} `json:"exceptionDetails"`
			}
			_ = json.Unmarshal(m.Params, &p)
			b.exceptions = append(b.exceptions, strings.TrimSpace(p.ExceptionDetails.Text+" "+p.ExceptionDetails.Exception.Description))
		}
		b.mu.Unlock()
	}
}

// call sends one command and decodes its result into out (when not nil);
// a protocol error fails the test.
func (b *Browser) call(session, method string, params any, out any) {
	b.t.Helper()
	if err := b.callErr(session, method, params, out); err != nil {
		b.t.Fatalf("testenv: chromium %s: %v", method, err)
	}
}

func (b *Browser) callErr(session, method string, params any, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.toChrom.Write(append(data, 0)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	select {
	case m, ok := <-ch:
		switch {
		case !ok:
			return errors.New("the browser closed the pipe")
		case m.Error != nil:
			return fmt.Errorf("%s (code %d)", m.Error.Message, m.Error.Code)
		case out != nil:
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-time.After(browserTimeout):
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("no answer in %s", browserTimeout)
	}
}

// Navigate loads url in the page and waits until it has loaded.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	b.call(b.session, "Page.navigate", map[string]any{"url": url}, &nav)
	if nav.ErrorText != "" {
		b.t.Fatalf("testenv: chromium: navigate to %s: %s", url, nav.ErrorText)
	}
	b.WaitFor("the page at "+url+" to load", fmt.Sprintf(`document.readyState === "complete" && location.href === %q`, url))
}

// Eval evaluates a JavaScript expression in the page (a promise is
// awaited) and decodes its value, which must be JSON, into out.
func (b *Browser) Eval(expr string, out any) error {
	var res struct {
		Result struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.callErr(b.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if e := res.ExceptionDetails; e != nil {
		return fmt.Errorf("%s %s", e.Text, e.Exception.Description)
	}
	if out == nil {
		return nil
	}
	if len(res.Result.Value) == 0 {
		return fmt.Errorf("the expression gave %s, not a JSON value", res.Result.Type)
	}
	return json.Unmarshal(res.Result.Value, out)
}

// MustEval is Eval that fails the test on an error.
func (b *Browser) MustEval(expr string, out any) {
	b.t.Helper()
	if err := b.Eval(expr, out); err != nil {
		b.t.Fatalf("testenv: chromium: %s: %v", expr, err)
	}
}

// WaitFor polls a JavaScript expression until it is true; the deadline
// (45 s) only bounds a hung test.
func (b *Browser) WaitFor(what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		var ok bool
		err := b.Eval("Boolean("+expr+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("testenv: chromium: gave up waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// DisableScripts turns the page's JavaScript off, to see what a browser
// without it gets.
func (b *Browser) DisableScripts() {
	b.t.Helper()
	b.call(b.session, "Emulation.setScriptExecutionDisabled", map[string]any{"value": true}, nil)
}

// Exceptions returns the uncaught exceptions the page's scripts threw.
func (b *Browser) Exceptions() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.exceptions...)
}

// stop closes the browser and waits for it and the reader.
func (b *Browser) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	_ = b.callErr("", "Browser.close", nil, nil)
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Its process group, whatever is left of it (renderers, the zygote):
	// none may keep the answer pipe open.
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-done
	b.toChrom.Close()
	<-b.readErr
}

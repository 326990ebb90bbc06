package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a real server binary the test started. Stop and Start may be
// called repeatedly (to simulate an outage); the process is killed by
// t.Cleanup. Its combined output goes to a log file in the test's temp dir,
// printed when the test fails.
type Process struct {
	t    testing.TB
	name string
	path string
	args []string
	env  []string
	dir  string
	Log  string // path of the combined stdout/stderr log

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess starts bin with args in dir (a temp dir when empty) and
// registers its cleanup. It does not wait for readiness: use WaitHTTP.
func StartProcess(t testing.TB, name, bin string, args []string, env []string, dir string) *Process {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	p := &Process{t: t, name: name, path: bin, args: args, env: env, dir: dir,
		Log: filepath.Join(dir, name+".log")}
	p.Start()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(p.Log); err == nil {
				if len(b) > 8192 {
					b = b[len(b)-8192:]
				}
				t.Logf("--- last output of %s (%s) ---\n%s", name, p.Log, b)
			}
		}
	})
	return p
}

// Start (re)starts the process with the same arguments.
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatalf("testenv: %s log: %v", p.name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("testenv: start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
}

// Stop terminates the process (SIGTERM, then SIGKILL after 10s) and waits.
func (p *Process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// Signal sends sig to the running process (e.g. SIGHUP to reload).
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		p.t.Fatalf("testenv: signal %v to %s: not running", sig, p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("testenv: signal %v to %s: %v", sig, p.name, err)
	}
}

// Exited reports whether the process has exited on its own.
func (p *Process) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the running process's id, 0 when it is not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Output returns what the process has written so far.
func (p *Process) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(bytes.TrimSpace(b))
}

// WaitHTTP polls url until it answers with a status below 500 (or with want,
// when want is non-zero), failing the test after timeout or when the process
// exits.
func (p *Process) WaitHTTP(url string, want int, timeout time.Duration, client *http.Client) {
	p.t.Helper()
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p.Exited() {
			p.t.Fatalf("testenv: %s exited while waiting for %s:\n%s", p.name, url, p.Output())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			cancel()
			if (want == 0 && resp.StatusCode < 500) || resp.StatusCode == want {
				return
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else {
			cancel()
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("testenv: %s not ready at %s after %s (last: %s):\n%s", p.name, url, timeout, last, p.Output())
}

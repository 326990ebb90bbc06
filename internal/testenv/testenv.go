// Package testenv starts the real components the tests run against: a
// distribution registry, etcd + kube-apiserver, Prometheus and Alertmanager, each
// on loopback in a temporary directory, stopped by t.Cleanup. Binaries come from
// the project's bin/ directory (built by scripts/install-deps.sh) or from PATH
// (Debian packages); a missing binary fails the test with the command that
// installs it, it never skips: a suite that quietly skipped would pass on a
// machine that tests nothing.
//
// The one exception is -short, the fast tier (`go test -short ./...`): every
// lookup of an external binary goes through Bin or AlertmanagerBin, which
// then skip the test, so the unit tests run in seconds with Go alone and
// the full suite (`make test`) runs everything.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot returns the repository's top directory (the one holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Bin returns the path of a tool the tests need: the project's bin/NAME if it
// exists, else NAME on PATH. When neither exists the test fails and says how to
// install it. Under -short it skips the test instead (SkipShort).
func Bin(t testing.TB, name string) string {
	t.Helper()
	SkipShort(t, name)
	if p, ok := findBin(t, name); ok {
		return p
	}
	t.Fatalf("testenv: %s not found in bin/ or PATH; run `make deps` (scripts/install-deps.sh) to install it", name)
	return ""
}

// SkipShort skips t under -short, naming what it needs: an external binary,
// or the exporter binary built with go build. It is the one place the fast
// tier is decided, so "runs in the full suite" stays true of every test it
// skips.
func SkipShort(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s; runs in the full suite (make test)", needs)
	}
}

// findBin looks name up in bin/, then on PATH.
func findBin(t testing.TB, name string) (string, bool) {
	local := filepath.Join(RepoRoot(t), "bin", name)
	if _, err := os.Stat(local); err == nil {
		return local, true
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	return "", false
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddrsWhere returns n distinct loopback addresses that were free a
// moment ago (so nothing listens on them), the i-th one accepted by
// keep(i, addr): e.g. one closed "registry" per shard, hashed to that shard.
func FreeAddrsWhere(t testing.TB, n int, keep func(i int, addr string) bool) []string {
	t.Helper()
	seen := map[string]bool{}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		found := false
		for try := 0; try < 1000 && !found; try++ {
			addr := FreeAddr(t)
			if !seen[addr] && keep(i, addr) {
				seen[addr], found = true, true
				out = append(out, addr)
			}
		}
		if !found {
			t.Fatalf("testenv: no free loopback port accepted for #%d", i)
		}
	}
	return out
}

// FreeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// Package e2e_test runs the whole monitoring path on loopback, nothing
// mocked: a real distribution registry, a real kube-apiserver and etcd with
// pods the test marks ImagePullBackOff as a kubelet would, the exporter
// binary, a real Prometheus loading the mixin's rules and a real
// Alertmanager loading the mixin's example configuration, which notifies a
// webhook the test serves. See alerting_test.go.
package e2e_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// exporterBin is the exporter binary, built once by TestMain from this
// checkout: the test runs the real program with its real flags.
var exporterBin string

func TestMain(m *testing.M) {
	// The exporter's own goroutines (scheduler, informers, reload) run
	// under the race detector when the tests do. Under -short nothing is
	// built: every test here needs the whole stack (startStack skips).
	var remove func()
	exporterBin, remove = testenv.MainBuildExporter(raceEnabled)
	code := m.Run()
	remove()
	if code == 0 {
		if err := goleak.Find(testenv.KubeLeakOptions()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

package testenv_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The harness starts goroutines (process waiters, HTTP servers, clients):
// each must be gone once its test's cleanup ran. Goroutines that package
// initialisation started (klog's flush daemon) are not the harness's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

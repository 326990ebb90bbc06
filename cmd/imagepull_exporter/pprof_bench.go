//go:build imagepull_pprof

package main

// Built only with -tags imagepull_pprof (make bench-process profiles
// with it): net/http/pprof on IMAGEPULL_PPROF_ADDR, a listener of its own,
// never the exporter's. Release builds do not contain it.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("IMAGEPULL_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}

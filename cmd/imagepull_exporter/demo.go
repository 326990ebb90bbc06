package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagepull/imagepull_exporter/collector/config"
)

// demoRegistry is the in-process registry of --demo.
type demoRegistry struct {
	srv     *http.Server
	Host    string
	Overlay *config.Config
}

// demoLayer is the one layer of the image --demo pushes: one small file,
// built the same way every time so that the digest is stable across runs.
func demoLayer() ([]byte, error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	content := []byte("hello from imagepull_exporter --demo\n")
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(content)),
		ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz) // no name, zero mtime: deterministic
	if _, err := zw.Write(tarBuf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return gz.Bytes(), nil
}

// startDemo serves go-containerregistry's in-memory registry on a loopback
// port, pushes demo/hello:v1 to it, and returns the module and target that
// probe it.
func startDemo(logger *slog.Logger) (*demoRegistry, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo registry: listen: %w", err)
	}
	d := &demoRegistry{
		srv: &http.Server{
			Handler:           ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))),
			ReadHeaderTimeout: 5 * time.Second,
		},
		Host: l.Addr().String(),
	}
	go func() { _ = d.srv.Serve(l) }()

	if err := d.push(); err != nil {
		d.Close()
		return nil, err
	}
	overlay := fmt.Sprintf(`
modules:
  demo:
    plain_http: true
    timeout: 5s
    interval: 15s
targets:
  - name: demo
    image: %s/demo/hello:v1
    module: demo
`, d.Host)
	d.Overlay, err = config.Parse("--demo", []byte(overlay))
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("demo registry: %w", err)
	}
	logger.Info("--demo: serving an in-process registry", "image", d.Host+"/demo/hello:v1")
	return d, nil
}

func (d *demoRegistry) push() error {
	gz, err := demoLayer()
	if err != nil {
		return fmt.Errorf("demo image: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(gz, types.DockerLayer))
	if err != nil {
		return fmt.Errorf("demo image: %w", err)
	}
	ref, err := name.ParseReference(d.Host+"/demo/hello:v1", name.Insecure)
	if err != nil {
		return fmt.Errorf("demo image: %w", err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithTransport(tr), remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("demo image: push %s: %w", ref, err)
	}
	return nil
}

// Close stops the demo registry.
func (d *demoRegistry) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
}

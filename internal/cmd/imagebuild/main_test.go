package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/goleak"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// TestMakeImage does what `make image IMAGE=...` does: it cross-builds the
// exporter, assembles the image, and pushes it to a real distribution
// registry (plus the OCI layout and tarball outputs). Then it reads the image
// back from the registry like a kubelet would resolve it, checks the config
// (entrypoint, user, port, labels), extracts the binary from the layers and
// runs it.
func TestMakeImage(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	root := testenv.RepoRoot(t)
	dir := t.TempDir()
	ref := reg.Addr + "/imagepull/imagepull_exporter:v9.9.9-test"
	ociDir := filepath.Join(dir, "oci")
	tarPath := filepath.Join(dir, "image.tar")
	const version, revision = "v9.9.9-test", "feedfacefeedfacefeedfacefeedfacefeedface"
	ld := "-X github.com/prometheus/common/version.Version=" + version +
		" -X github.com/prometheus/common/version.Revision=" + revision

	var stdout, stderr bytes.Buffer
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	code := run([]string{
		"--module-root", root, "--ldflags", ld, "--version", version, "--revision", revision,
		"--push", ref, "--oci-layout", ociDir, "--tarball", tarPath, "--tag", "imagepull_exporter:test",
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("imagebuild exited %d:\n%s", code, stderr.String())
	}

	// Read it back from the registry, over a transport closed afterwards.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithTransport(tr))
	if err != nil {
		t.Fatalf("pull %s back: %v", ref, err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if want := r.Context().String() + "@" + digest.String(); !strings.Contains(stdout.String(), want) {
		t.Errorf("imagebuild printed %q, want it to name the pushed digest %s", stdout.String(), want)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/bin/imagepull_exporter"}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if _, ok := cf.Config.ExposedPorts["9739/tcp"]; !ok {
		t.Errorf("exposed ports %v, want 9739/tcp", cf.Config.ExposedPorts)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.title":    "imagepull_exporter",
		"org.opencontainers.image.source":   "https://github.com/imagepull/imagepull_exporter",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	} {
		if got := cf.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if cf.OS != "linux" {
		t.Errorf("os %q, want linux", cf.OS)
	}

	// The other two outputs hold the same image.
	idx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatalf("OCI layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digest {
		t.Errorf("OCI layout holds %v, want the pushed %s", im.Manifests, digest)
	}
	tag, err := name.NewTag("imagepull_exporter:test")
	if err != nil {
		t.Fatal(err)
	}
	timg, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatalf("tarball: %v", err)
	}
	// A docker-save tarball re-encodes the manifest, so compare the config.
	tcf, err := timg.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if pcf, _ := img.ConfigName(); tcf != pcf {
		t.Errorf("tarball config %s, pushed image config %s", tcf, pcf)
	}

	// Extract the binary as a container runtime would unpack the layers,
	// and run it. (It is a linux/GOARCH binary of this host.)
	bin := extract(t, img, "bin/imagepull_exporter", filepath.Join(dir, "imagepull_exporter"))
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), "version "+version) || !strings.Contains(string(out), "revision: "+revision) {
		t.Errorf("--version printed %q, want version %s and revision %s", out, version, revision)
	}
	out, err = exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s serve --help: %v\n%s", bin, err, out)
	}
	for _, want := range []string{"--web.listen-address", "--config.file", "serve"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serve --help does not mention %s:\n%s", want, out)
		}
	}
	// Static: no dynamic loader needed in a distroless/scratch image.
	if b, err := os.ReadFile(bin); err != nil || bytes.Contains(b, []byte("/lib64/ld-linux")) || bytes.Contains(b, []byte("/lib/ld-linux")) {
		t.Errorf("the binary asks for a dynamic loader (or cannot be read: %v): CGO must be off", err)
	}
}

// extract writes the file at path of the image's flattened filesystem to
// dst, executable.
func extract(t *testing.T, img v1.Image, path, dst string) string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s is not in the image", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") != path {
			continue
		}
		if h.Mode&0o111 == 0 {
			t.Errorf("%s has mode %o: not executable", path, h.Mode)
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return dst
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "give --push, --tarball or --oci-layout") {
		t.Errorf("no output: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"--tarball", "x.tar", "--platform", "linux/amd64,linux/arm64"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "single --platform") {
		t.Errorf("tarball of two platforms: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if code := run([]string{"--oci-layout", t.TempDir()}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: exit %d, %q", code, stderr.String())
	}
}

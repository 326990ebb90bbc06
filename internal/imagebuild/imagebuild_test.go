package imagebuild_test

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imagepull/imagepull_exporter/internal/imagebuild"
	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

// fakeBinary stands in for the exporter where only the image's assembly is
// under test; internal/cmd/imagebuild's test ships and runs the real one.
func fakeBinary(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "imagepull_exporter")
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testOptions(t *testing.T) imagebuild.Options {
	return imagebuild.Options{
		Binary: fakeBinary(t, "#!/bin/false\n"), OS: "linux", Architecture: "arm64", Variant: "v8",
		Version: "v1.2.3", Revision: "0123456789abcdef", Created: time.Unix(1700000000, 0),
	}
}

type entry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	mtime    time.Time
	data     string
}

// files returns every entry of every layer, in order.
func files(t *testing.T, img v1.Image) []entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []entry
	for _, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		if mt != types.OCILayer {
			t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime, string(b)})
		}
		rc.Close()
	}
	return out
}

func TestImageConfig(t *testing.T) {
	opts := testOptions(t)
	img, err := imagebuild.Image(opts)
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	if mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || cf.Variant != "v8" {
		t.Errorf("platform %s/%s/%s, want linux/arm64/v8", cf.OS, cf.Architecture, cf.Variant)
	}
	if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/bin/imagepull_exporter"}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	if _, ok := cf.Config.ExposedPorts["9739/tcp"]; !ok || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want only 9739/tcp", cf.Config.ExposedPorts)
	}
	want := map[string]string{
		"org.opencontainers.image.title":       "imagepull_exporter",
		"org.opencontainers.image.description": "Probes container registries the way the kubelet pulls and exposes the results to Prometheus.",
		"org.opencontainers.image.source":      "https://github.com/imagepull/imagepull_exporter",
		"org.opencontainers.image.version":     "v1.2.3",
		"org.opencontainers.image.revision":    "0123456789abcdef",
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.created":     "2023-11-14T22:13:20Z",
	}
	if !reflect.DeepEqual(cf.Config.Labels, want) {
		t.Errorf("labels\n got %v\nwant %v", cf.Config.Labels, want)
	}
	if !cf.Created.Time.Equal(opts.Created) {
		t.Errorf("created %v, want %v", cf.Created.Time, opts.Created)
	}
	if len(cf.History) != 2 || len(cf.RootFS.DiffIDs) != 2 {
		t.Errorf("%d history entries and %d layers, want 2 and 2", len(cf.History), len(cf.RootFS.DiffIDs))
	}
}

func TestImageFiles(t *testing.T) {
	opts := testOptions(t)
	img, err := imagebuild.Image(opts)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(imagebuild.DefaultCACertificates)
	if err != nil {
		t.Fatalf("%v: the image ships the build host's CA bundle; run `make deps` (apt ca-certificates)", err)
	}
	got := map[string]entry{}
	var names []string
	for _, e := range files(t, img) {
		if !e.mtime.Equal(opts.Created) {
			t.Errorf("%s: mtime %v, want %v (reproducible layers)", e.name, e.mtime, opts.Created)
		}
		got[e.name] = e
		names = append(names, e.name)
	}
	wantNames := []string{"etc/", "etc/group", "etc/nsswitch.conf", "etc/passwd", "etc/ssl/", "etc/ssl/certs/",
		"etc/ssl/certs/ca-certificates.crt", "home/", "home/nonroot/", "root/", "tmp/", "bin/", "bin/imagepull_exporter"}
	if !reflect.DeepEqual(names, wantNames) {
		t.Errorf("files\n got %q\nwant %q", names, wantNames)
	}
	for _, c := range []struct {
		name     string
		mode     int64
		uid, gid int
		data     string
	}{
		{"bin/imagepull_exporter", 0o755, 0, 0, "#!/bin/false\n"},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, 0, 0, string(ca)},
		{"home/nonroot/", 0o700, 65532, 65532, ""},
		{"tmp/", 0o1777, 0, 0, ""},
		{"etc/nsswitch.conf", 0o644, 0, 0, "hosts: files dns\n"},
	} {
		e := got[c.name]
		if e.mode != c.mode || e.uid != c.uid || e.gid != c.gid || e.data != c.data {
			t.Errorf("%s: mode %o uid %d gid %d (%d bytes), want mode %o uid %d gid %d (%d bytes)",
				c.name, e.mode, e.uid, e.gid, len(e.data), c.mode, c.uid, c.gid, len(c.data))
		}
	}
	// The numeric user of the config must exist with a home, or tools
	// that resolve it (and Go's os/user) see a nameless user.
	if !strings.Contains(got["etc/passwd"].data, "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n") {
		t.Errorf("/etc/passwd has no nonroot user 65532:\n%s", got["etc/passwd"].data)
	}
	if !strings.Contains(got["etc/group"].data, "nonroot:x:65532:\n") {
		t.Errorf("/etc/group has no nonroot group 65532:\n%s", got["etc/group"].data)
	}
}

// The same inputs give the same digest: a rebuild of a release can be
// verified, and a registry dedupes unchanged layers.
func TestImageReproducible(t *testing.T) {
	opts := testOptions(t)
	digest := func(o imagebuild.Options) v1.Hash {
		img, err := imagebuild.Image(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := digest(opts), digest(opts)
	if a != b {
		t.Errorf("two builds of the same inputs: %s and %s", a, b)
	}
	opts.Revision = "fedcba9876543210"
	if c := digest(opts); c == a {
		t.Errorf("a different revision label kept digest %s", c)
	}
}

func TestImageErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		opts imagebuild.Options
		want string
	}{
		{"no binary", imagebuild.Options{OS: "linux", Architecture: "amd64"}, "Binary, OS and Architecture are required"},
		{"missing binary", imagebuild.Options{Binary: "/nonexistent/bin", OS: "linux", Architecture: "amd64"}, "read the exporter binary"},
		{"missing CA", imagebuild.Options{Binary: fakeBinary(t, "x"), OS: "linux", Architecture: "amd64", CACertificates: "/nonexistent/ca.crt"}, "read CA certificates"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := imagebuild.Image(c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestParsePlatform(t *testing.T) {
	for _, c := range []struct {
		in, os, arch, variant string
		err                   bool
	}{
		{"linux/amd64", "linux", "amd64", "", false},
		{"linux/arm64/v8", "linux", "arm64", "v8", false},
		{"linux", "", "", "", true},
		{"linux/", "", "", "", true},
		{"/amd64", "", "", "", true},
		{"linux/arm/v7/x", "", "", "", true},
	} {
		o, a, v, err := imagebuild.ParsePlatform(c.in)
		if (err != nil) != c.err || o != c.os || a != c.arch || v != c.variant {
			t.Errorf("ParsePlatform(%q) = %q, %q, %q, %v", c.in, o, a, v, err)
		}
	}
}

// The Dockerfile builds the same image for users with Docker: same binary
// path, entrypoint, user, port and label keys (values are build arguments).
func TestDockerfileAgrees(t *testing.T) {
	f, err := os.Open(filepath.Join(testenv.RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Join continuation lines into instructions.
	var instrs []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// Only the final stage makes the image.
	last := 0
	for i, in := range instrs {
		if strings.HasPrefix(in, "FROM ") {
			last = i
		}
	}
	final := instrs[last:]
	if !strings.HasPrefix(final[0], "FROM gcr.io/distroless/static") || !strings.HasSuffix(final[0], ":nonroot") {
		t.Errorf("final stage %q: want a distroless static nonroot base", final[0])
	}
	get := func(kw string) []string {
		var out []string
		for _, in := range final {
			if strings.HasPrefix(in, kw+" ") {
				out = append(out, strings.TrimSpace(strings.TrimPrefix(in, kw+" ")))
			}
		}
		return out
	}
	if got := get("USER"); len(got) != 1 || got[0] != imagebuild.User {
		t.Errorf("USER %q, want %q", got, imagebuild.User)
	}
	if got := get("EXPOSE"); len(got) != 1 || got[0] != imagebuild.Port {
		t.Errorf("EXPOSE %q, want %q", got, imagebuild.Port)
	}
	ep := get("ENTRYPOINT")
	var entry []string
	if len(ep) != 1 || json.Unmarshal([]byte(ep[0]), &entry) != nil || !reflect.DeepEqual(entry, imagebuild.Entrypoint) {
		t.Errorf("ENTRYPOINT %q, want %q", ep, imagebuild.Entrypoint)
	}
	if got := get("COPY"); len(got) != 1 || !strings.HasSuffix(got[0], " "+imagebuild.BinaryPath) {
		t.Errorf("COPY %q, want the binary copied to %s", got, imagebuild.BinaryPath)
	}
	keyRE := regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)="([^"]*)"`)
	dockerLabels := map[string]string{}
	for _, l := range get("LABEL") {
		for _, m := range keyRE.FindAllStringSubmatch(l, -1) {
			dockerLabels[m[1]] = m[2]
		}
	}
	built := imagebuild.Labels(imagebuild.Options{})
	var want, got []string
	for k := range built {
		// created is the build time; Docker records it in the config's
		// created field itself.
		if k != imagebuild.LabelCreated {
			want = append(want, k)
		}
	}
	for k := range dockerLabels {
		got = append(got, k)
	}
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Dockerfile label keys %q, want %q", got, want)
	}
	for _, k := range []string{imagebuild.LabelTitle, imagebuild.LabelDescription, imagebuild.LabelSource, imagebuild.LabelLicenses} {
		if dockerLabels[k] != built[k] {
			t.Errorf("label %s: Dockerfile %q, make image %q", k, dockerLabels[k], built[k])
		}
	}
}

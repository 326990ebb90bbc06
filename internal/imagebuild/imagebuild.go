// Package imagebuild assembles imagepull_exporter's OCI image without a
// Docker engine: a static binary, the files a distroless "static:nonroot"
// base would have provided (a nonroot user 65532, CA certificates, an
// nsswitch.conf, a writable /tmp), and a config with the entrypoint, user,
// port and OCI labels. The Dockerfile builds the same image for users with
// Docker; `make image` (internal/cmd/imagebuild) builds it here and pushes it
// or writes it to a file. Layers are reproducible: fixed owners, modes and
// timestamps (SOURCE_DATE_EPOCH), so the same binary gives the same digest.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image looks like; the Dockerfile must agree (a test compares).
const (
	// BinaryPath is where the exporter lives in the image.
	BinaryPath = "/bin/imagepull_exporter"
	// User is distroless' "nonroot" user and group.
	User = "65532:65532"
	// Port is the exporter's default listen port, exposed.
	Port = "9739/tcp"
	// Title is the org.opencontainers.image.title label.
	Title = "imagepull_exporter"
	// DefaultSource is the org.opencontainers.image.source label.
	DefaultSource = "https://github.com/imagepull/imagepull_exporter"
	// DefaultLicenses is the org.opencontainers.image.licenses label.
	DefaultLicenses = "Apache-2.0"
	// DefaultCACertificates is the bundle copied from the build host, so
	// probes of HTTPS registries verify as on any distribution.
	DefaultCACertificates = "/etc/ssl/certs/ca-certificates.crt"
)

// Label keys of the OCI image annotations spec set on the image config.
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelSource      = "org.opencontainers.image.source"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelLicenses    = "org.opencontainers.image.licenses"
	LabelCreated     = "org.opencontainers.image.created"
)

// Entrypoint is the image's entrypoint: the exporter, with its default
// command `serve`, so arguments in a pod spec are only flags.
var Entrypoint = []string{BinaryPath}

// Options describes one image.
type Options struct {
	// Binary is the path of the static linux exporter binary to ship.
	Binary string
	// OS and Architecture of the binary, e.g. "linux", "amd64".
	OS, Architecture string
	// Variant is the CPU variant, e.g. "v8" for arm64; may be empty.
	Variant string
	// Version and Revision go into the labels (git describe, commit).
	Version, Revision string
	// Source and Licenses override DefaultSource and DefaultLicenses.
	Source, Licenses string
	// CACertificates is the CA bundle to ship; empty means
	// DefaultCACertificates.
	CACertificates string
	// Created stamps the config, the history and every file's mtime. The
	// zero value means the Unix epoch, so builds are reproducible; `make
	// image` passes SOURCE_DATE_EPOCH (the commit time) when set.
	Created time.Time
}

// Labels returns the OCI labels of an image built with opts.
func Labels(opts Options) map[string]string {
	src, lic := opts.Source, opts.Licenses
	if src == "" {
		src = DefaultSource
	}
	if lic == "" {
		lic = DefaultLicenses
	}
	return map[string]string{
		LabelTitle:       Title,
		LabelDescription: "Probes container registries the way the kubelet pulls and exposes the results to Prometheus.",
		LabelSource:      src,
		LabelVersion:     opts.Version,
		LabelRevision:    opts.Revision,
		LabelLicenses:    lic,
		LabelCreated:     created(opts).Format(time.RFC3339),
	}
}

func created(opts Options) time.Time {
	if opts.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return opts.Created.UTC()
}

// Image assembles the image from scratch.
func Image(opts Options) (v1.Image, error) {
	if opts.Binary == "" || opts.OS == "" || opts.Architecture == "" {
		return nil, errors.New("imagebuild: Binary, OS and Architecture are required")
	}
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("read the exporter binary: %w", err)
	}
	caPath := opts.CACertificates
	if caPath == "" {
		caPath = DefaultCACertificates
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("read CA certificates (install Debian's ca-certificates, or pass another bundle): %w", err)
	}
	t := created(opts)

	base, err := layer(t, baseFiles(ca))
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	binLayer, err := layer(t, []file{
		{name: "bin/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: bin},
	})
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: t}, CreatedBy: "imagebuild: nonroot user, CA certificates, nsswitch.conf, /tmp",
			Comment: "the files of a distroless static:nonroot base"}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{
			Created: v1.Time{Time: t}, CreatedBy: "imagebuild: COPY imagepull_exporter " + BinaryPath}},
	)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = opts.OS, opts.Architecture, opts.Variant
	cf.Created = v1.Time{Time: t}
	cf.Author = ""
	cf.Config = v1.Config{
		Entrypoint:   Entrypoint,
		User:         User,
		ExposedPorts: map[string]struct{}{Port: {}},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		WorkingDir:   "/",
		Labels:       Labels(opts),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set image config: %w", err)
	}
	return img, nil
}

type file struct {
	name     string // relative, "dir/" for directories
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

// baseFiles are what gcr.io/distroless/static:nonroot provides and the
// exporter uses: a passwd/group so the numeric user has a name and home,
// the CA bundle for HTTPS registries, nsswitch.conf so Go resolves
// /etc/hosts before DNS as glibc would, and /tmp.
func baseFiles(ca []byte) []file {
	return []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/group", mode: 0o644, data: []byte(
			"root:x:0:\n" +
				"nobody:x:65534:\n" +
				"nonroot:x:65532:\n")},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, dir: true, uid: 65532, gid: 65532},
		{name: "root/", mode: 0o700, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
}

// layer writes files into an uncompressed tar with fixed metadata and wraps
// it as a layer (gzip, computed once by tarball).
func layer(mtime time.Time, files []file) (v1.Layer, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", f.name, err)
		}
		if !f.dir {
			if _, err := tw.Write(f.data); err != nil {
				return nil, fmt.Errorf("tar %s: %w", f.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// BuildOptions describe one cross-build of the exporter.
type BuildOptions struct {
	// ModuleRoot is the directory of the exporter's go.mod.
	ModuleRoot string
	// OS and Architecture are GOOS and GOARCH.
	OS, Architecture string
	// LDFlags are passed to go build (the Makefile's version stamping).
	LDFlags string
	// Output is the path of the binary to write.
	Output string
	// Go is the go command; empty means "go" from PATH.
	Go string
}

// BuildBinary cross-compiles a static exporter binary: CGO off (no libc in
// the image), -trimpath (no build paths in it), symbols stripped.
func BuildBinary(ctx context.Context, opts BuildOptions) error {
	goCmd := opts.Go
	if goCmd == "" {
		goCmd = "go"
	}
	ld := strings.TrimSpace(opts.LDFlags + " -s -w")
	cmd := exec.CommandContext(ctx, goCmd, "build", "-trimpath", "-ldflags", ld,
		"-o", opts.Output, "./cmd/imagepull_exporter")
	cmd.Dir = opts.ModuleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+opts.OS, "GOARCH="+opts.Architecture)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s/%s: %w\n%s", opts.OS, opts.Architecture, err, out)
	}
	return nil
}

// ParsePlatform splits "linux/arm64/v8" into OS, architecture and variant.
func ParsePlatform(s string) (osName, arch, variant string, err error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return "", "", "", fmt.Errorf("platform %q: want os/arch or os/arch/variant, e.g. linux/amd64", s)
	}
	if len(parts) == 3 {
		variant = parts[2]
	}
	return parts[0], parts[1], variant, nil
}

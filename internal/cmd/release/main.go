// Command release builds everything a release ships into one directory
// (`make release`), without a Docker engine or the network:
//
//	dist/imagepull_exporter-VERSION.OS-ARCH.tar.gz  the binary, LICENSE and README.md, per platform
//	dist/imagepull_exporter-VERSION.oci.tar         the multi-platform image, an OCI image layout archive
//	                                                (skopeo copy oci-archive:..., podman load, crane)
//	dist/imagepull-exporter-CHART_VERSION.tgz       the Helm chart (helm package), appVersion VERSION
//	dist/imagepull_exporter-VERSION.spdx.json       the SBOM of the binaries (SPDX 2.3, see sbom.go)
//	dist/SHA256SUMS                                 sha256sum -c checks every file above
//
// With --push it also pushes the image index to a registry. The binaries
// are built once and shipped both in the tarballs and in the image, so the
// SBOM and the checksums describe what runs. VERSION in file names has no
// leading "v", as promu names Prometheus releases.
//
//	go run ./internal/cmd/release --dist dist --version v1.2.3 --revision $(git rev-parse HEAD) \
//	    --ldflags "$(LDFLAGS)" [--push registry.example.com/imagepull_exporter:v1.2.3]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/imagepull/imagepull_exporter/internal/imagebuild"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// DefaultPlatforms are the platforms of a release.
const DefaultPlatforms = "linux/amd64,linux/arm64"

// ChecksumsFile lists the SHA-256 of every other file in the directory.
const ChecksumsFile = "SHA256SUMS"

type options struct {
	dist, platforms, ldflags, version, revision string
	push                                        string
	insecure                                    bool
	chart, helm, root                           string
	created                                     time.Time
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.dist, "dist", "", "directory to write the release into; it must not exist or be empty")
	fs.StringVar(&o.platforms, "platform", DefaultPlatforms, "comma-separated os/arch[/variant] list")
	fs.StringVar(&o.ldflags, "ldflags", "", "go build -ldflags (the Makefile's version stamping)")
	fs.StringVar(&o.version, "version", "", "the release's version, e.g. v1.2.3 (git describe)")
	fs.StringVar(&o.revision, "revision", "unknown", "the commit, for the image's labels")
	fs.StringVar(&o.push, "push", "", "also push the image index to this reference, host/repo:tag")
	fs.BoolVar(&o.insecure, "insecure", false, "allow plain HTTP to a registry that is not on loopback")
	fs.StringVar(&o.chart, "chart", "deploy/helm/imagepull-exporter", "the Helm chart to package, relative to --module-root")
	fs.StringVar(&o.helm, "helm", "helm", "the helm command")
	fs.StringVar(&o.root, "module-root", ".", "the exporter's module directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.dist == "" || o.version == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "release: give --dist and --version (and no arguments)")
		return 2
	}
	var err error
	if o.created, err = sourceDateEpoch(); err != nil {
		fmt.Fprintln(stderr, "release:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := release(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "release:", err)
		return 1
	}
	return 0
}

// fileVersion is the version as file names carry it.
func fileVersion(v string) string { return strings.TrimPrefix(v, "v") }

func release(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if entries, err := os.ReadDir(o.dist); err == nil && len(entries) > 0 {
		return fmt.Errorf("--dist %s is not empty: remove it first (make release does), so that no stale file is checksummed", o.dist)
	}
	if err := os.MkdirAll(o.dist, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fv := fileVersion(o.version)

	var images []v1.Image
	var plats []v1.Platform
	var bins []binary
	for _, p := range strings.Split(o.platforms, ",") {
		osName, arch, variant, err := imagebuild.ParsePlatform(strings.TrimSpace(p))
		if err != nil {
			return err
		}
		platform := osName + "-" + arch + variant
		bin := filepath.Join(tmp, "imagepull_exporter-"+platform)
		fmt.Fprintf(stderr, "release: building %s/%s\n", osName, arch)
		if err := imagebuild.BuildBinary(ctx, imagebuild.BuildOptions{
			ModuleRoot: o.root, OS: osName, Architecture: arch, LDFlags: o.ldflags, Output: bin,
		}); err != nil {
			return err
		}
		bins = append(bins, binary{path: bin, platform: osName + "/" + arch})
		name := fmt.Sprintf("imagepull_exporter-%s.%s", fv, platform)
		if err := binaryTarball(filepath.Join(o.dist, name+".tar.gz"), name, bin, o.root, o.created); err != nil {
			return fmt.Errorf("tarball %s: %w", name, err)
		}
		img, err := imagebuild.Image(imagebuild.Options{Binary: bin, OS: osName, Architecture: arch, Variant: variant,
			Version: o.version, Revision: o.revision, Created: o.created})
		if err != nil {
			return err
		}
		images = append(images, img)
		plats = append(plats, v1.Platform{OS: osName, Architecture: arch, Variant: variant})
	}

	index := imagebuild.Index(images, plats)
	ociDir := filepath.Join(tmp, "oci")
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	if err := lp.AppendIndex(index); err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	if err := dirTarball(filepath.Join(o.dist, "imagepull_exporter-"+fv+".oci.tar"), ociDir, o.created); err != nil {
		return fmt.Errorf("OCI archive: %w", err)
	}
	if o.push != "" {
		pushed, err := imagebuild.Push(ctx, o.push, o.insecure, nil, index)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, pushed)
	}

	if err := helmPackage(ctx, o, tmp); err != nil {
		return err
	}
	sbom, err := spdxSBOM(o.version, o.created, bins)
	if err != nil {
		return fmt.Errorf("SBOM: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.dist, "imagepull_exporter-"+fv+".spdx.json"), sbom, 0o644); err != nil {
		return err
	}
	sums, err := checksums(o.dist)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.dist, ChecksumsFile), sums, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s:\n%s", o.dist, sums)
	return nil
}

// helmPackage packages the chart into dist with appVersion = the version
// without "v" (the chart's image tag is "v" + appVersion). The chart's own
// version stays Chart.yaml's.
func helmPackage(ctx context.Context, o options, tmp string) error {
	cmd := exec.CommandContext(ctx, o.helm, "package", filepath.Join(o.root, o.chart),
		"--app-version", fileVersion(o.version), "--destination", o.dist)
	// helm's own state, kept out of the user's home.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(tmp, "helm", "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(tmp, "helm", "config"), "HELM_DATA_HOME="+filepath.Join(tmp, "helm", "data"))
	if out, err := cmd.CombinedOutput(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("helm package: %w (make deps builds bin/helm)", err)
		}
		return fmt.Errorf("helm package: %w\n%s", err, out)
	}
	return nil
}

// checksums is sha256sum's output for every regular file of dir, by name.
func checksums(dir string) ([]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, e := range entries { // sorted by name
		if !e.Type().IsRegular() || e.Name() == ChecksumsFile {
			continue
		}
		sum, err := fileSHA256(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, e.Name())
	}
	return b.Bytes(), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// tarEntry is one file of a reproducible tarball.
type tarEntry struct {
	name string
	mode int64
	dir  bool
	path string // the file's content; "" for a directory
}

// writeTar writes entries with fixed owners and mtime, so that the same
// inputs give the same bytes.
func writeTar(w io.Writer, entries []tarEntry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		var data []byte
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			var err error
			if data, err = os.ReadFile(e.path); err != nil {
				return err
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// binaryTarball writes dst, a .tar.gz holding name/ with the binary, the
// license and the README, as Prometheus' release tarballs do.
func binaryTarball(dst, name, bin, root string, mtime time.Time) error {
	entries := []tarEntry{
		{name: name + "/", mode: 0o755, dir: true},
		{name: name + "/LICENSE", mode: 0o644, path: filepath.Join(root, "LICENSE")},
		{name: name + "/README.md", mode: 0o644, path: filepath.Join(root, "README.md")},
		{name: name + "/imagepull_exporter", mode: 0o755, path: bin},
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.ModTime = mtime
	if err := writeTar(zw, entries, mtime); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// dirTarball writes dst, an uncompressed tar of dir's tree (an OCI image
// layout: its blobs are compressed already), entries sorted.
func dirTarball(dst, dir string, mtime time.Time) error {
	var entries []tarEntry
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			entries = append(entries, tarEntry{name: rel + "/", mode: 0o755, dir: true})
		case d.Type().IsRegular():
			entries = append(entries, tarEntry{name: rel, mode: 0o644, path: path})
		default:
			return fmt.Errorf("%s: not a file or directory", rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := writeTar(f, entries, mtime); err != nil {
		return err
	}
	return f.Close()
}

// sourceDateEpoch is the reproducible-builds convention for "when":
// SOURCE_DATE_EPOCH seconds, or the Unix epoch when unset.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, errors.New("SOURCE_DATE_EPOCH must be Unix seconds, got " + strconv.Quote(s))
	}
	return time.Unix(n, 0).UTC(), nil
}

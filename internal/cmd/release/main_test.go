package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/goleak"

	"github.com/imagepull/imagepull_exporter/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// TestMakeRelease runs `make release` as a release manager would, with
// IMAGE pointing at a real distribution registry on loopback, and checks
// every output: the image index in the registry has linux/amd64 and
// linux/arm64 and is the one in the OCI archive; SHA256SUMS lists every
// file with its true hash; the tarballs hold the binary (the amd64 one runs
// and reports the version), which is byte for byte the image's and the one
// the SBOM describes; the chart carries the version; the SBOM is SPDX 2.3
// with the modules go.mod requires.
func TestMakeRelease(t *testing.T) {
	testenv.Bin(t, "helm")
	makeBin := testenv.Bin(t, "make")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	root := testenv.RepoRoot(t)
	dist := filepath.Join(t.TempDir(), "dist")
	const version, revision = "v9.9.9-release", "feedfacefeedfacefeedfacefeedfacefeedface"
	const fv = "9.9.9-release"
	image := reg.Addr + "/imagepull/imagepull_exporter:" + version

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, makeBin, "--no-print-directory", "release", "DIST="+dist, "VERSION="+version,
		"REVISION="+revision, "IMAGE="+image, "SOURCE_DATE_EPOCH=1700000000")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("make release: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("make release took %s", time.Since(start).Round(time.Second))

	// The files, and their checksums.
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"SHA256SUMS", "imagepull-exporter-0.1.0.tgz", "imagepull_exporter-" + fv + ".linux-amd64.tar.gz",
		"imagepull_exporter-" + fv + ".linux-arm64.tar.gz", "imagepull_exporter-" + fv + ".oci.tar", "imagepull_exporter-" + fv + ".spdx.json"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("dist holds %q, want %q", names, want)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(read(t, filepath.Join(dist, "SHA256SUMS")), "\n"), "\n") {
		sum, file, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not sha256sum's format", line)
		}
		sums[file] = sum
	}
	for _, n := range want[1:] {
		if got := sha256Hex([]byte(read(t, filepath.Join(dist, n)))); sums[n] != got {
			t.Errorf("SHA256SUMS says %s is %s; it is %s", n, sums[n], got)
		}
	}
	if len(sums) != len(want)-1 {
		t.Errorf("SHA256SUMS lists %d files, want %d", len(sums), len(want)-1)
	}

	// The image index in the registry.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ref, err := name.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, remote.WithContext(ctx), remote.WithTransport(tr))
	if err != nil {
		t.Fatalf("pull the index back: %v", err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if pushed := ref.Context().String() + "@" + idxDigest.String(); !strings.Contains(stdout.String(), pushed+"\n") {
		t.Errorf("make release printed %q, want the pushed %s", stdout.String(), pushed)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	var amd64 v1.Image
	for _, d := range im.Manifests {
		plats = append(plats, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != d.Platform.OS || cf.Architecture != d.Platform.Architecture ||
			cf.Config.Labels["org.opencontainers.image.version"] != version || cf.Config.Labels["org.opencontainers.image.revision"] != revision {
			t.Errorf("image %s: %s/%s, labels %v", d.Platform, cf.OS, cf.Architecture, cf.Config.Labels)
		}
		if d.Platform.Architecture == "amd64" {
			amd64 = img
		}
	}
	sort.Strings(plats)
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("the index holds %q, want linux/amd64 and linux/arm64", plats)
	}

	// The OCI archive holds the same index.
	ociDir := t.TempDir()
	untar(t, filepath.Join(dist, "imagepull_exporter-"+fv+".oci.tar"), false, func(h *tar.Header, r io.Reader) {
		dst := filepath.Join(ociDir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			_ = os.MkdirAll(dst, 0o755)
			return
		}
		b, _ := io.ReadAll(r)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	lidx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatalf("the OCI archive is not an OCI layout: %v", err)
	}
	lim, err := lidx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(lim.Manifests) != 1 || lim.Manifests[0].Digest != idxDigest {
		t.Errorf("the OCI archive holds %v, want the pushed index %s", lim.Manifests, idxDigest)
	}

	// The tarballs, their binaries, the image's and the SBOM's.
	bins := map[string][]byte{}
	for _, arch := range []string{"amd64", "arm64"} {
		dir := "imagepull_exporter-" + fv + ".linux-" + arch + "/"
		var files []string
		untar(t, filepath.Join(dist, "imagepull_exporter-"+fv+".linux-"+arch+".tar.gz"), true, func(h *tar.Header, r io.Reader) {
			files = append(files, h.Name)
			if h.Name == dir+"imagepull_exporter" {
				if h.Mode != 0o755 {
					t.Errorf("%s has mode %o", h.Name, h.Mode)
				}
				bins[arch], _ = io.ReadAll(r)
			}
		})
		if got := strings.Join(files, " "); got != dir+" "+dir+"LICENSE "+dir+"README.md "+dir+"imagepull_exporter" {
			t.Errorf("the %s tarball holds %s", arch, got)
		}
	}
	binPath := filepath.Join(t.TempDir(), "imagepull_exporter")
	if err := os.WriteFile(binPath, bins["amd64"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binPath, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "version "+version+" ") || !strings.Contains(string(out), "revision: "+revision) {
		t.Errorf("the amd64 binary's --version: %v\n%s", err, out)
	}
	if got := imageFile(t, amd64, "bin/imagepull_exporter"); !bytes.Equal(got, bins["amd64"]) {
		t.Error("the amd64 image ships another binary than the amd64 tarball")
	}

	var sbom struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			SPDXID      string `json:"SPDXID"`
			Name        string `json:"name"`
			VersionInfo string `json:"versionInfo"`
			Checksums   []struct {
				Algorithm string `json:"algorithm"`
				Value     string `json:"checksumValue"`
			} `json:"checksums"`
			ExternalRefs []struct {
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
		Relationships []struct {
			Element string `json:"spdxElementId"`
			Type    string `json:"relationshipType"`
			Related string `json:"relatedSpdxElement"`
		} `json:"relationships"`
	}
	if err := json.Unmarshal([]byte(read(t, filepath.Join(dist, "imagepull_exporter-"+fv+".spdx.json"))), &sbom); err != nil {
		t.Fatal(err)
	}
	if sbom.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion %q", sbom.SPDXVersion)
	}
	ids, byName := map[string]bool{}, map[string]string{}
	binSums := map[string]bool{}
	for _, p := range sbom.Packages {
		ids[p.SPDXID] = true
		byName[p.Name] = p.VersionInfo
		if p.Name == "imagepull_exporter" && len(p.Checksums) == 1 && p.Checksums[0].Algorithm == "SHA256" && p.VersionInfo == version {
			binSums[p.Checksums[0].Value] = true
		}
	}
	for arch, b := range bins {
		if !binSums[sha256Hex(b)] {
			t.Errorf("the SBOM does not describe the %s binary shipped (sha256 %s)", arch, sha256Hex(b))
		}
	}
	// Every module go.mod requires directly is in it, at go.mod's version
	// (go-jsonnet and go-cmp are for tests and the mixin, not linked).
	goMod := read(t, filepath.Join(root, "go.mod"))
	direct := regexp.MustCompile(`(?m)^\t(\S+) (v\S+)$`).FindAllStringSubmatch(goMod[:strings.Index(goMod, "\n)\n")], -1)
	for _, m := range direct {
		if m[1] == "github.com/google/go-jsonnet" || m[1] == "github.com/google/go-cmp" || m[1] == "go.uber.org/goleak" {
			continue
		}
		if byName[m[1]] != m[2] {
			t.Errorf("the SBOM has %s at %q, go.mod requires %s", m[1], byName[m[1]], m[2])
		}
	}
	if !strings.HasPrefix(byName["stdlib"], "go1.") {
		t.Errorf("the SBOM lacks the Go standard library: %q", byName["stdlib"])
	}
	describes := 0
	for _, r := range sbom.Relationships {
		if r.Type == "DESCRIBES" {
			describes++
		}
		if !ids[r.Related] || (r.Element != "SPDXRef-DOCUMENT" && !ids[r.Element]) {
			t.Errorf("relationship %+v names a package the SBOM lacks", r)
		}
	}
	if describes != 2 {
		t.Errorf("the SBOM describes %d binaries, want 2", describes)
	}

	// The chart, with the release's version as its appVersion.
	var chartYAML string
	untar(t, filepath.Join(dist, "imagepull-exporter-0.1.0.tgz"), true, func(h *tar.Header, r io.Reader) {
		if h.Name == "imagepull-exporter/Chart.yaml" {
			b, _ := io.ReadAll(r)
			chartYAML = string(b)
		}
	})
	if !strings.Contains(chartYAML, "\nappVersion: "+fv+"\n") || !strings.Contains(chartYAML, "\nname: imagepull-exporter\n") {
		t.Errorf("the packaged Chart.yaml:\n%s", chartYAML)
	}
}

// TestReleaseUsage: what a mistake is told.
func TestReleaseUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "release: give --dist and --version"},
		{[]string{"--dist", dir}, 2, "release: give --dist and --version"},
		{[]string{"--dist", dir, "--version", "v1.0.0"}, 1, "is not empty: remove it first"},
		{[]string{"--dist", filepath.Join(dir, "new"), "--version", "v1.0.0", "--platform", "linux"}, 1, `platform "linux": want os/arch`},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(c.args, &stdout, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want %d with %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// untar calls fn for every entry of the (gzipped) tar at path.
func untar(t *testing.T, path string, gzipped bool, fn func(*tar.Header, io.Reader)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if gzipped {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fn(h, tr)
	}
}

// imageFile returns the file at path of the image's flattened filesystem.
func imageFile(t *testing.T, img v1.Image, path string) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s is not in the image: %v", path, err)
		}
		if strings.TrimPrefix(h.Name, "/") == path {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The SBOM is SPDX 2.3 JSON (ISO/IEC 5962), the format Kubernetes publishes
// for its own releases and that GitHub's dependency graph, Trivy and Grype
// read. It is made from the binaries themselves: debug/buildinfo reads what
// `go version -m` prints (the Go toolchain, the main module and every
// module linked in, with its version and go.sum hash), which is what was
// built, with no network and no guess from go.mod. CycloneDX would carry
// the same; SPDX was chosen for the Kubernetes precedent.

// spdxDocument is the part of SPDX 2.3 the SBOM uses.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	SPDXID           string            `json:"SPDXID"`
	Name             string            `json:"name"`
	VersionInfo      string            `json:"versionInfo"`
	DownloadLocation string            `json:"downloadLocation"`
	FilesAnalyzed    bool              `json:"filesAnalyzed"`
	LicenseConcluded string            `json:"licenseConcluded"`
	LicenseDeclared  string            `json:"licenseDeclared"`
	CopyrightText    string            `json:"copyrightText"`
	Checksums        []spdxChecksum    `json:"checksums,omitempty"`
	ExternalRefs     []spdxExternalRef `json:"externalRefs,omitempty"`
	PrimaryPurpose   string            `json:"primaryPackagePurpose,omitempty"`
	Comment          string            `json:"comment,omitempty"`
}

type spdxChecksum struct {
	Algorithm string `json:"algorithm"`
	Value     string `json:"checksumValue"`
}

type spdxExternalRef struct {
	Category string `json:"referenceCategory"`
	Type     string `json:"referenceType"`
	Locator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

// binary is one built binary of the release.
type binary struct {
	path     string
	platform string // os/arch
}

var spdxIDUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func spdxID(kind, name string) string {
	return "SPDXRef-" + kind + "-" + strings.Trim(spdxIDUnsafe.ReplaceAllString(name, "-"), "-")
}

// escapeModulePath is the module proxy's case encoding ("!" + lower case
// for an upper-case letter), for download URLs.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// spdxSBOM describes the binaries: one package per binary (with its
// SHA-256), one per Go module linked into any of them, and the Go standard
// library, each with its purl; each binary DEPENDS_ON what it links.
func spdxSBOM(version string, created time.Time, bins []binary) ([]byte, error) {
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name: "imagepull_exporter-" + fileVersion(version),
		CreationInfo: spdxCreationInfo{Created: created.UTC().Format(time.RFC3339),
			Creators: []string{"Tool: imagepull_exporter internal/cmd/release", "Organization: imagepull_exporter"}},
	}
	deps := map[string]spdxPackage{}
	var binSums []string
	for _, b := range bins {
		bi, err := buildinfo.ReadFile(b.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.path, err)
		}
		sum, err := fileSHA256(b.path)
		if err != nil {
			return nil, err
		}
		binSums = append(binSums, sum)
		id := spdxID("Binary", "imagepull_exporter-"+b.platform)
		doc.Packages = append(doc.Packages, spdxPackage{
			SPDXID: id, Name: "imagepull_exporter", VersionInfo: version, DownloadLocation: "NOASSERTION",
			LicenseConcluded: "Apache-2.0", LicenseDeclared: "Apache-2.0", CopyrightText: "NOASSERTION",
			Checksums:      []spdxChecksum{{Algorithm: "SHA256", Value: sum}},
			ExternalRefs:   []spdxExternalRef{purl(bi.Main.Path, version)},
			PrimaryPurpose: "APPLICATION",
			Comment:        fmt.Sprintf("the %s binary, built by %s", b.platform, bi.GoVersion),
		})
		doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", id})

		std := spdxPackage{SPDXID: spdxID("Go", "stdlib-"+bi.GoVersion), Name: "stdlib", VersionInfo: bi.GoVersion,
			DownloadLocation: "https://go.dev/dl/", LicenseConcluded: "NOASSERTION", LicenseDeclared: "BSD-3-Clause",
			CopyrightText: "NOASSERTION", ExternalRefs: []spdxExternalRef{purl("stdlib", bi.GoVersion)},
			Comment: "the Go standard library and runtime linked into the binaries"}
		deps[std.SPDXID] = std
		doc.Relationships = append(doc.Relationships, spdxRelationship{id, "DEPENDS_ON", std.SPDXID})
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			p := spdxPackage{SPDXID: spdxID("GoModule", m.Path+"-"+m.Version), Name: m.Path, VersionInfo: m.Version,
				DownloadLocation: "https://proxy.golang.org/" + escapeModulePath(m.Path) + "/@v/" + escapeModulePath(m.Version) + ".zip",
				LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
				ExternalRefs: []spdxExternalRef{purl(m.Path, m.Version)}}
			if m.Sum != "" {
				p.Comment = "go.sum " + m.Sum
			}
			deps[p.SPDXID] = p
			doc.Relationships = append(doc.Relationships, spdxRelationship{id, "DEPENDS_ON", p.SPDXID})
		}
	}
	ids := make([]string, 0, len(deps))
	for id := range deps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		doc.Packages = append(doc.Packages, deps[id])
	}
	// Unique per content, as SPDX asks of a namespace, and reproducible.
	h := sha256.Sum256([]byte(strings.Join(binSums, ",")))
	doc.DocumentNamespace = "https://github.com/imagepull/imagepull_exporter/releases/" + version + "/sbom-" + hex.EncodeToString(h[:8])
	return json.MarshalIndent(doc, "", "  ")
}

func purl(path, version string) spdxExternalRef {
	return spdxExternalRef{Category: "PACKAGE-MANAGER", Type: "purl", Locator: "pkg:golang/" + path + "@" + version}
}

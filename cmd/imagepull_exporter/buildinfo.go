package main

import (
	"regexp"
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// The Makefile stamps the version and revision with -ldflags, as promu
// does. A binary built without it (`go install …@v1.2.3`, `go build`)
// still carries what the go command knows: the module's version (a tag
// from the module proxy, or, since Go 1.24, one derived from the checkout's
// tag and commit) and the VCS revision. Without this, such a binary reports
// imagepull_exporter_build_info{version=""}.
func init() {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	version.Version, version.Revision = versionFromBuildInfo(version.Version, version.Revision, bi)
}

// pseudoRevision matches the commit at the end of a pseudo-version
// (v0.0.0-20240102150405-abcdef123456, v1.2.4-0.20240102150405-abcdef123456),
// with Go's +dirty suffix for a modified checkout.
var pseudoRevision = regexp.MustCompile(`[-.]\d{14}-([0-9a-f]{12})(\+dirty)?$`)

// versionFromBuildInfo returns the version and revision to report: the
// ones stamped by -ldflags when set, else the build information's. The
// version is the main module's ("devel" for a build that has none, as
// `go run` or -buildvcs=false). The revision is vcs.revision, with
// "-modified" for a modified checkout as prometheus/common reports it, else
// the commit a pseudo-version names (a `go install …@<commit>` carries no
// VCS settings); empty when neither says, so that
// prometheus/common/version keeps its own fallback.
func versionFromBuildInfo(stampedVersion, stampedRevision string, bi *debug.BuildInfo) (ver, rev string) {
	ver, rev = stampedVersion, stampedRevision
	mainVersion := bi.Main.Version
	if ver == "" {
		ver = mainVersion
		if ver == "" || ver == "(devel)" {
			ver = "devel"
		}
	}
	if rev != "" {
		return ver, rev
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if r := settings["vcs.revision"]; r != "" {
		if settings["vcs.modified"] == "true" {
			r += "-modified"
		}
		return ver, r
	}
	if m := pseudoRevision.FindStringSubmatch(mainVersion); m != nil {
		r := m[1]
		if m[2] != "" {
			r += "-modified"
		}
		return ver, r
	}
	return ver, ""
}

// userAgent is what registries and the apiserver see.
func userAgent() string {
	return programName + "/" + version.Version
}

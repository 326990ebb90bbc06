#!/usr/bin/env bash
# install-deps.sh installs everything the test suite runs against, on a fresh
# Debian 12 machine that has Go, the Go module proxy and apt, but no Docker
# engine and no GitHub downloads:
#
#   apt:  docker-registry, htpasswd, prometheus + promtool,
#         alertmanager + amtool, chromium, openssl, make, git, gcc
#   bin/: crane, jsonnet, jsonnetfmt, jsonnet-lint, staticcheck  (tools/go.mod)
#         helm                                                  (tools/helm/go.mod)
#         etcd                                                  (tools/etcd/go.mod)
#         kube-apiserver, kubectl                               (tools/kube/go.mod)
#         crds/prometheus-operator/*.yaml  (from the Go module, version below)
#
# It is idempotent and a fast no-op when everything is present: apt runs only
# when a package is missing (and apt-get update only then; the daemons Debian
# starts for what it installs are stopped again, see quiet_services), and a Go
# tool is rebuilt only when bin/<tool> is missing or its stamp in
# bin/.versions (a hash of the tool module's go.mod/go.sum and build flags)
# changed. Versions are pinned in the tools modules' go.mod files, nowhere
# else.
#
# Usage: scripts/install-deps.sh [--no-apt]
#   --no-apt   skip the apt step (machines where the packages come another way)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"
stamps="$bin/.versions"

no_apt=0
for arg in "$@"; do
	case "$arg" in
	--no-apt) no_apt=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install-deps: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

log() { printf 'install-deps: %s\n' "$*" >&2; }

# --- apt -------------------------------------------------------------------

apt_packages=(
	docker-registry        # /usr/bin/docker-registry (distribution 2.8.2), the registry probed
	apache2-utils          # htpasswd, for the registry's basic auth
	# No etcd-server: Debian 12's etcd is 3.4.23, which cannot back the
	# apiserver's streaming lists (no progress notifications on request,
	# which need 3.4.31 / 3.5.13 or later), so the streaming first list
	# (issue 13) would go untested. bin/etcd, built below from
	# tools/etcd/go.mod, is what the tests run (internal/testenv looks in
	# bin/ before PATH), and nothing else uses /usr/bin/etcd or etcdctl.
	# A machine that still has the package keeps it; it is just unused.
	prometheus             # prometheus + promtool (rule tests, check metrics)
	prometheus-alertmanager # /usr/bin/prometheus-alertmanager + amtool
	chromium               # headless, driven over the DevTools protocol: the status page's test (testenv.StartBrowser)
	openssl                # keys and certificates in shell recipes
	make                   # .ci/run runs `make test`
	git                    # go build stamps a checkout's VCS state into the exporter the tests build, and fails without git; the Makefile's version
	gcc                    # go test -race needs cgo, and Go turns cgo off without a C compiler
	libc6-dev              # the C headers and crt files cgo links with
	ca-certificates        # the Go module proxy over HTTPS
)

# Debian starts a daemon for some of these packages as it installs them
# (docker-registry on :5000, prometheus on :9090, alertmanager on :9093),
# and on every boot after. The tests need none of them: they start
# their own on free loopback ports (internal/testenv), so these would only
# take memory and CPU from the machine the tests run on.
declare -A package_services=(
	[docker-registry]=docker-registry.service
	[prometheus]=prometheus.service
	[prometheus-alertmanager]=prometheus-alertmanager.service
)

apt_install() {
	local missing=() p
	for p in "${apt_packages[@]}"; do
		# dpkg-query is a local database read: this loop is the fast path.
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' ok installed$'; then
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -eq 0 ]; then
		return 0
	fi
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null; then
			log "apt: ${missing[*]} missing; run this script as root, or install sudo"
			exit 1
		fi
		sudo=(sudo)
	fi
	log "apt: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q
	# No recommends: prometheus would otherwise pull in node-exporter and more.
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	quiet_services "${sudo[@]}" -- "${missing[@]}"
}

# quiet_services [sudo] -- PACKAGE...: stop and disable the daemons of the
# packages this run just installed. A daemon of a package that was already
# there is someone's, and left alone. Without systemd (a container) nothing
# was started.
quiet_services() {
	local sudo=() units=() p
	while [ "$1" != "--" ]; do
		sudo+=("$1")
		shift
	done
	shift
	[ -d /run/systemd/system ] || return 0
	for p in "$@"; do
		if [ -n "${package_services[$p]:-}" ]; then
			units+=("${package_services[$p]}")
		fi
	done
	[ ${#units[@]} -gt 0 ] || return 0
	log "stopping and disabling ${units[*]}: the tests start their own"
	"${sudo[@]}" systemctl disable --now "${units[@]}" ||
		log "could not stop ${units[*]}; the tests do not depend on it"
}

# --- Go tools --------------------------------------------------------------

# Stamp of a tools module: any change to its pins or to the build flags
# rebuilds its tools. Go's build cache makes a rebuild with unchanged inputs
# take seconds, so the stamp only has to be conservative, not exact.
module_stamp() { # dir extra...
	local dir="$1"
	shift
	{
		cat "$dir/go.mod" "$dir/go.sum"
		printf '%s\n' "$@"
	} | sha256sum | cut -c1-16
}

stamp_of() { # tool
	[ -f "$stamps" ] || return 0
	awk -v t="$1" '$1 == t { print $2 }' "$stamps"
}

set_stamp() { # tool stamp
	local tmp
	tmp="$(mktemp "$bin/.versions.XXXXXX")"
	if [ -f "$stamps" ]; then
		awk -v t="$1" '$1 != t' "$stamps" >"$tmp"
	fi
	printf '%s %s\n' "$1" "$2" >>"$tmp"
	sort -o "$tmp" "$tmp"
	chmod 644 "$tmp"
	mv "$tmp" "$stamps"
}

# build_tool NAME MODULE_DIR PACKAGE STAMP [go build flags...]
build_tool() {
	local name="$1" dir="$2" pkg="$3" stamp="$4"
	shift 4
	if [ -x "$bin/$name" ] && [ "$(stamp_of "$name")" = "$stamp" ]; then
		return 0
	fi
	log "building $name ($pkg)"
	local start=$SECONDS
	# Build to a temporary name so an interrupted build never leaves a
	# binary that looks current.
	(cd "$dir" && go build -trimpath "$@" -o "$bin/.$name.tmp" "$pkg")
	mv "$bin/.$name.tmp" "$bin/$name"
	set_stamp "$name" "$stamp"
	log "built $name in $((SECONDS - start))s"
}

go_tools() {
	mkdir -p "$bin"
	command -v go >/dev/null || {
		log "go is not on PATH; install Go 1.26 first"
		exit 1
	}
	local s go_version
	go_version="$(go env GOVERSION)"

	s="$(module_stamp "$root/tools")"
	build_tool crane "$root/tools" github.com/google/go-containerregistry/cmd/crane "$s"
	build_tool jsonnet "$root/tools" github.com/google/go-jsonnet/cmd/jsonnet "$s"
	build_tool jsonnetfmt "$root/tools" github.com/google/go-jsonnet/cmd/jsonnetfmt "$s"
	build_tool jsonnet-lint "$root/tools" github.com/google/go-jsonnet/cmd/jsonnet-lint "$s"
	# staticcheck must understand the Go version of the code it checks, so
	# a new Go toolchain rebuilds it.
	build_tool staticcheck "$root/tools" honnef.co/go/tools/cmd/staticcheck "$(module_stamp "$root/tools" "$go_version")"

	# Stamp helm as its Makefile does: its own version, and the Kubernetes
	# minor of its client-go, which `helm template` reports as
	# .Capabilities.KubeVersion (v1.20 otherwise).
	local hv cv hld p
	hv="$(awk '$1 == "helm.sh/helm/v3" { print $2 }' "$root/tools/helm/go.mod")"
	cv="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$root/tools/helm/go.mod")" # v0.MINOR.PATCH
	cv="${cv#v0.}"
	cv="${cv%%.*}"
	hld="-X helm.sh/helm/v3/internal/version.version=$hv"
	for p in pkg/chartutil pkg/lint/rules; do
		hld+=" -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$cv"
	done
	s="$(module_stamp "$root/tools/helm" "$hld")"
	build_tool helm "$root/tools/helm" helm.sh/helm/v3/cmd/helm "$s" -ldflags "$hld"

	# etcd for kube-apiserver: 3.6, whose progress notifications the
	# apiserver's streaming lists (WatchList) need. etcd's server module
	# has replace directives, so it is built from a module of its own
	# rather than with go install; its root package is the etcd command.
	# Its version is compiled in (go.etcd.io/etcd/api/v3/version), so no
	# ldflags. Cold (empty GOCACHE, modules downloaded) 62 s on 2 cores
	# under load from other jobs; rebuild with a warm cache 2 s.
	s="$(module_stamp "$root/tools/etcd")"
	build_tool etcd "$root/tools/etcd" go.etcd.io/etcd/server/v3 "$s"

	# Without the version stamped in, kube-apiserver reports v0.0.0-master
	# and kubectl refuses to talk to it ("version skew"). Both the server
	# (component-base) and client (client-go) version packages are set.
	local kv=v1.34.4 ld
	ld="-X k8s.io/component-base/version.gitVersion=$kv"
	ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
	ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$kv"
	ld+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=34"
	s="$(module_stamp "$root/tools/kube" "$ld")"
	# kube-apiserver is the long one: about 6 minutes cold on 2 cores.
	build_tool kube-apiserver "$root/tools/kube" k8s.io/kubernetes/cmd/kube-apiserver "$s" -ldflags "$ld"
	build_tool kubectl "$root/tools/kube" k8s.io/kubernetes/cmd/kubectl "$s" -ldflags "$ld"
}

# Test data from Go modules: the prometheus-operator CRDs (ServiceMonitor,
# PrometheusRule...) the deploy/ manifests use, installed into the test
# apiserver before `kubectl apply --dry-run=server`. The module proxy serves
# the repository's files, so no GitHub download is needed.
prometheus_operator_version=v0.85.0
crds() {
	local name=prometheus-operator-crds mod=github.com/prometheus-operator/prometheus-operator
	local dest="$bin/crds/prometheus-operator" stamp="$mod@$prometheus_operator_version"
	if [ -d "$dest" ] && [ "$(stamp_of "$name")" = "$stamp" ]; then
		return 0
	fi
	log "fetching $stamp CRDs"
	local dir
	dir="$(cd "$root/tools" && go mod download -json "$stamp" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	if [ -z "$dir" ] || [ ! -d "$dir/example/prometheus-operator-crd" ]; then
		log "go mod download $stamp gave no example/prometheus-operator-crd"
		exit 1
	fi
	rm -rf "$dest"
	mkdir -p "$dest"
	cp "$dir"/example/prometheus-operator-crd/*.yaml "$dest/"
	chmod -R u+w "$dest"
	set_stamp "$name" "$stamp"
}

start=$SECONDS
if [ "$no_apt" -eq 0 ]; then
	apt_install
fi
go_tools
crds
if [ $((SECONDS - start)) -gt 1 ]; then
	log "done in $((SECONDS - start))s"
fi

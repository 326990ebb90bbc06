#!/usr/bin/env bash
# deploy.sh renders the deploy/ files that are derived from other sources, so
# nothing in deploy/ is ever a hand-made copy. The Makefile's generate and
# check-generated targets call it next to scripts/mixin.sh.
#
#   generate         write the derived files:
#                      deploy/base/prometheusrule.yaml             mixin -> PrometheusRule
#                      deploy/helm/imagepull-exporter/files/prometheus-rule-groups.yaml
#                      deploy/helm/imagepull-exporter/files/dashboards/*.json    mixin -> dashboards
#                      deploy/components/dashboards/{kustomization.yaml,*.json}  the same, for kustomize
#                      deploy/helm/imagepull-exporter/files/config.yml  copy of deploy/base/config.yml
#                      deploy/helm/imagepull-exporter/README.md   from values.yaml's comments and
#                                                                 values.schema.json (internal/cmd/chartdoc)
#                    and remove files from the dashboards directories that
#                    the mixin no longer renders
#   check-generated  fail when any of them differs from a fresh render, or
#                    when a dashboards directory holds a file it does not
#
# The rule groups and dashboards come from deploy/render.jsonnet, which
# imports mixin/mixin.libsonnet: the same alerts and recording rules as
# alerts/*.yaml, the same dashboards as dashboards/*.json.
# go test ./internal/deploytest/ checks the same with go-jsonnet.
#
# Tools: jsonnet in bin/ (scripts/install-deps.sh), go.
#
# Usage: scripts/deploy.sh generate|check-generated
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/bin:$PATH"

cmd="${1:-}"
case "$cmd" in
generate | check-generated) ;;
*)
	echo "usage: scripts/deploy.sh generate|check-generated" >&2
	exit 2
	;;
esac

if ! command -v jsonnet >/dev/null 2>&1; then
	echo "deploy.sh: jsonnet not found in bin/ or PATH; run \`make deps\` (scripts/install-deps.sh)" >&2
	exit 1
fi

chart=deploy/helm/imagepull-exporter
# Directories that hold only generated files.
generated_dirs=(
	"$chart/files/dashboards"
	deploy/components/dashboards
)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# render OUTDIR: every generated file under OUTDIR, at its repository path.
render() {
	jsonnet -J mixin -S -c -m "$1" deploy/render.jsonnet >/dev/null
	# A chart can read only files inside its directory, and kustomize only
	# files inside its root: the config lives in the base, the chart
	# carries a copy.
	mkdir -p "$1/$chart/files"
	cp deploy/base/config.yml "$1/$chart/files/config.yml"
	# The chart's README documents every value from values.yaml's comments
	# and the schema's types; it fails when the two disagree.
	go run ./internal/cmd/chartdoc -chart "$chart" -o "$1/$chart/README.md"
}

render "$tmp"
# Every generated file, at its repository path (what render wrote).
mapfile -t generated < <(cd "$tmp" && find . -type f | sed 's|^\./||' | sort)

# stale_files: files in the generated-only directories that the render no
# longer produces (a dashboard the mixin dropped or renamed).
stale_files() {
	local d f
	shopt -s nullglob
	for d in "${generated_dirs[@]}"; do
		[ -d "$d" ] || continue
		for f in "$d"/*; do
			[ -e "$tmp/$f" ] || echo "$f"
		done
	done
}

case "$cmd" in
generate)
	stale_files | while read -r f; do rm -f "$f"; done
	for f in "${generated[@]}"; do
		mkdir -p "$(dirname "$f")"
		cp "$tmp/$f" "$f"
	done
	echo "rendered: ${generated[*]}"
	;;
check-generated)
	stale=0
	for f in "${generated[@]}"; do
		if ! diff -u "$tmp/$f" "$f" >"$tmp/diff" 2>&1; then
			head -n 50 "$tmp/diff"
			stale=1
		fi
	done
	for f in $(stale_files); do
		echo "$f: not rendered any more; \`make generate\` removes it"
		stale=1
	done
	if [ "$stale" -ne 0 ]; then
		echo "deploy.sh: generated deploy/ files are stale: run \`make generate\` and commit the result" >&2
		exit 1
	fi
	echo "generated deploy/ files are current"
	;;
esac

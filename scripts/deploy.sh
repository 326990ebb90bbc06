#!/usr/bin/env bash
# deploy.sh renders the deploy/ files that are derived from other sources, so
# nothing in deploy/ is ever a hand-made copy. The Makefile's generate and
# check-generated targets call it next to scripts/mixin.sh.
#
#   generate         write the derived files:
#                      deploy/base/prometheusrule.yaml             mixin -> PrometheusRule
#                      deploy/helm/imagepull-exporter/files/prometheus-rule-groups.yaml
#                      deploy/helm/imagepull-exporter/files/config.yml  copy of deploy/base/config.yml
#   check-generated  fail when any of them differs from a fresh render
#
# The rule groups come from deploy/render.jsonnet, which imports
# mixin/mixin.libsonnet: the same alerts and recording rules as alerts/*.yaml.
# go test ./internal/deploytest/ checks the same with go-jsonnet.
#
# Tools: jsonnet in bin/ (scripts/install-deps.sh).
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
generated=(
	deploy/base/prometheusrule.yaml
	"$chart/files/prometheus-rule-groups.yaml"
	"$chart/files/config.yml"
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
}

render "$tmp"
case "$cmd" in
generate)
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
	if [ "$stale" -ne 0 ]; then
		echo "deploy.sh: generated deploy/ files are stale: run \`make generate\` and commit the result" >&2
		exit 1
	fi
	echo "generated deploy/ files are current"
	;;
esac

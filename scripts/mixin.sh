#!/usr/bin/env bash
# mixin.sh renders, lints and tests the monitoring mixin (mixin/ -> alerts/,
# dashboards/). The Makefile's generate, check-generated, mixin-lint and
# mixin-test targets call it with the subcommand of the same purpose.
#
#   generate         render mixin/render.jsonnet into alerts/ and dashboards/,
#                    removing generated files the mixin no longer renders
#   check-generated  fail when alerts/ or dashboards/ differ from a fresh render
#   lint             jsonnetfmt --test, jsonnet-lint, promtool check rules,
#                    amtool check-config on the Alertmanager example
#   test             promtool test rules mixin/tests/*.yaml (the alert unit tests)
#
# The Go tests in mixin/ (go test ./mixin/) check the same things with
# go-jsonnet as a library, plus the example's inhibitions against a real
# Alertmanager; both render lib/render.libsonnet, so their bytes agree.
#
# Tools: jsonnet, jsonnetfmt, jsonnet-lint in bin/ (scripts/install-deps.sh),
# promtool and amtool from Debian's packages.
#
# Usage: scripts/mixin.sh generate|check-generated|lint|test
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$root/bin:$PATH"

cmd="${1:-}"
case "$cmd" in
generate | check-generated | lint | test) ;;
*)
	echo "usage: scripts/mixin.sh generate|check-generated|lint|test" >&2
	exit 2
	;;
esac

need() {
	for tool in "$@"; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			echo "mixin.sh: $tool not found in bin/ or PATH; run \`make deps\` (scripts/install-deps.sh)" >&2
			exit 1
		fi
	done
}

# Directories that hold only generated files.
generated_dirs=(alerts dashboards)

# render OUTDIR: every generated file under OUTDIR, at its repository path.
render() {
	need jsonnet
	jsonnet -J mixin -S -c -m "$1" mixin/render.jsonnet >/dev/null
}

jsonnet_files() {
	find mixin -name '*.jsonnet' -o -name '*.libsonnet' | sort
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

case "$cmd" in
generate)
	render "$tmp"
	for dir in "${generated_dirs[@]}"; do
		mkdir -p "$dir"
		# Remove what the mixin no longer renders (a renamed dashboard).
		find "$dir" -type f | while read -r f; do
			[ -e "$tmp/$f" ] || { echo "removing $f (no longer rendered)"; rm -f "$f"; }
		done
		cp "$tmp/$dir"/* "$dir"/
	done
	echo "rendered: $(cd "$tmp" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')"
	;;

check-generated)
	render "$tmp"
	stale=0
	for dir in "${generated_dirs[@]}"; do
		if ! diff -r -u "$tmp/$dir" "$dir" >"$tmp/diff" 2>&1; then
			head -n 50 "$tmp/diff"
			stale=1
		fi
	done
	if [ "$stale" -ne 0 ]; then
		echo "mixin.sh: alerts/ or dashboards/ are stale: run \`make generate\` and commit the result" >&2
		exit 1
	fi
	echo "generated files are current"
	;;

lint)
	need jsonnetfmt jsonnet-lint promtool amtool
	mapfile -t files < <(jsonnet_files)
	if ! unformatted="$(jsonnetfmt --test "${files[@]}" 2>&1)"; then
		echo "mixin.sh: jsonnet files need formatting (run \`make fmt\`):" >&2
		echo "$unformatted" >&2
		exit 1
	fi
	for f in "${files[@]}"; do
		jsonnet-lint -J mixin "$f"
	done
	promtool check rules alerts/*.yaml
	amtool check-config mixin/alertmanager.example.yml
	;;

test)
	need promtool
	# Relative rule_files in the tests resolve from mixin/tests.
	(cd mixin/tests && promtool test rules *.yaml)
	;;
esac

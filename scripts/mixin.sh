#!/usr/bin/env bash
# mixin.sh renders, lints and tests the monitoring mixin (mixin/ -> alerts/,
# dashboards/). The Makefile's generate, check-generated, mixin-lint and
# mixin-test targets call it with the subcommand of the same purpose.
#
# Ownership: the infra engineer created this entry point so the Makefile has
# a stable interface; the mixin engineer owns its content and fills in each
# subcommand. Tools (jsonnet, jsonnetfmt, jsonnet-lint in bin/, promtool from
# apt) are installed by scripts/install-deps.sh and are on PATH under make.
#
# Usage: scripts/mixin.sh generate|check-generated|lint|test
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cmd="${1:-}"
case "$cmd" in
generate | check-generated | lint | test) ;;
*)
	echo "usage: scripts/mixin.sh generate|check-generated|lint|test" >&2
	exit 2
	;;
esac

if [ ! -d mixin ]; then
	# Nothing to render or check before the mixin exists.
	echo "mixin.sh: no mixin/ directory yet; $cmd has nothing to do"
	exit 0
fi

# The mixin exists but this subcommand has not been written: fail rather
# than pass without checking anything.
echo "mixin.sh: '$cmd' is not implemented yet (the mixin engineer owns scripts/mixin.sh)" >&2
exit 1

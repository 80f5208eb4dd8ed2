#!/usr/bin/env bash
# Mutation testing of the core packages with gremlins v0.6.0: each mutant is a small
# change to the code (a flipped condition, a boundary, an arithmetic operator); a mutant
# the package's tests do not fail on "lived" and shows a promise no test pins.
#
# Not part of CI (too slow for 2 cores). Run it after changing a core package's logic or
# tests, before asking for a merge, and record the efficacy in RELIABILITY.md.
#
#   scripts/mutation.sh                  # every core package
#   scripts/mutation.sh diff delivery    # some of them
#
# Settings (environment):
#   MUTATION_TIMEOUT   bound per package (default 45m; a package past it is reported
#                      "timed out" and the next one runs). On 2 shared cores, 2026-12-02:
#                      diff 1-2 min, poller 12-16, webhook and slack about 15, store 30,
#                      delivery 20 with MUTATION_WORKERS=2 (past 25 with 1).
#   MUTATION_WORKERS   gremlins workers (default 1: the machine is shared)
#   MUTATION_OUT       where the per-package logs and JSON results go (default a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."

GREMLINS_VERSION=v0.6.0
default_pkgs=(diff store poller delivery sinks/webhook sinks/slack plugchoice)
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
  pkgs=("${default_pkgs[@]}")
fi
bound=${MUTATION_TIMEOUT:-45m}
workers=${MUTATION_WORKERS:-1}
out=${MUTATION_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/mutation.XXXXXX")}
mkdir -p "$out"

bin=$(mktemp -d "${TMPDIR:-/tmp}/gremlins-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
echo "== installing gremlins $GREMLINS_VERSION"
GOBIN="$bin" go install "github.com/go-gremlins/gremlins/cmd/gremlins@$GREMLINS_VERSION"

summary=()
for pkg in "${pkgs[@]}"; do
  if [ ! -d "$pkg" ]; then
    echo "mutation.sh: no package directory $pkg (expected one of: ${default_pkgs[*]})" >&2
    exit 2
  fi
  name=${pkg//\//_}
  echo "== gremlins unleash ./$pkg (bound $bound, $workers worker(s))"
  start=$(date +%s)
  rc=0
  timeout -k 30s "$bound" "$bin/gremlins" unleash --workers "$workers" \
    --output "$out/$name.json" "./$pkg" 2>&1 | tee "$out/$name.log" || rc=$?
  took=$(( $(date +%s) - start ))
  case $rc in
    0) efficacy=$(grep -o 'Test efficacy: [0-9.]*%' "$out/$name.log" | tail -1 || true)
       summary+=("$pkg: ${efficacy:-no efficacy line (interrupted, or no covered mutant: see $out/$name.log)}, ${took}s") ;;
    124|137) summary+=("$pkg: timed out after $bound (no figure)") ;;
    *) summary+=("$pkg: gremlins failed (exit $rc), see $out/$name.log") ;;
  esac
done

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), gremlins $GREMLINS_VERSION; logs in $out)"
printf '%s\n' "${summary[@]}"

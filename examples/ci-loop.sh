#!/bin/bash
# A CI job over pristine disk images (README "Recipes"): snapshot them once,
# run each destructive test against the live volume over NBD, and put the
# images back after each test, in time proportional to what the test changed.
# Stops at the first failing test with its exit status; the images go back to
# pristine however the job ends.
#
# Usage: examples/ci-loop.sh [--clones] VOLUME.json TEST...
#   each TEST is run by `vsnap serve --run` with $uri and $socket in its
#   environment. Without --clones (the restore loop) $uri is the live volume
#   and the images are restored to pristine after each test; with --clones
#   (the clone loop) $uri is a throwaway writable clone of pristine, so the
#   images are never written and nothing needs restoring.
set -euo pipefail
mode=restore
if [ "${1:-}" = --clones ]; then mode=clones; shift; fi
vol=${1:?usage: ci-loop.sh [--clones] VOLUME.json TEST...}
shift
vsnap=${VSNAP:-vsnap}

"$vsnap" -q create "$vol" --name pristine >/dev/null

if [ "$mode" = restore ]; then
  # --- restore loop: the tests take turns on the live volume ---
  trap '"$vsnap" -q --wait 10m restore "$vol" pristine && "$vsnap" -q delete "$vol" pristine' EXIT
  for t in "$@"; do
    echo "ci-loop: $t" >&2
    "$vsnap" serve "$vol" --run "$t"       # exits with the test's status; set -e stops here on failure
    "$vsnap" -q restore "$vol" pristine    # rewrites only what the test changed
  done
else
  # --- clone loop: each test on its own throwaway clone of pristine ---
  # The clone is deleted when its test ends, whatever its status; pristine
  # goes once no clone needs it.
  trap '"$vsnap" -q --wait 10m delete "$vol" pristine' EXIT
  for t in "$@"; do
    echo "ci-loop: $t (clone of pristine)" >&2
    "$vsnap" serve "$vol" --run "$t" --clone pristine
  done
fi

#!/bin/bash
# A CI job over pristine disk images (README "Recipes"): snapshot them once,
# run each destructive test against the live volume over NBD, and put the
# images back after each test, in time proportional to what the test changed.
# Stops at the first failing test with its exit status; the images go back to
# pristine however the job ends.
#
# Usage: examples/ci-loop.sh VOLUME.json TEST...
#   each TEST is run by `vsnap serve --run` with $uri (the live volume's NBD
#   URI) and $socket in its environment.
set -euo pipefail
vol=${1:?usage: ci-loop.sh VOLUME.json TEST...}
shift
vsnap=${VSNAP:-vsnap}

"$vsnap" -q create "$vol" --name pristine >/dev/null
trap '"$vsnap" -q --wait 10m restore "$vol" pristine && "$vsnap" -q delete "$vol" pristine' EXIT

# --- restore loop: the tests take turns on the live volume ---
for t in "$@"; do
  echo "ci-loop: $t" >&2
  "$vsnap" serve "$vol" --run "$t"         # exits with the test's status; set -e stops here on failure
  "$vsnap" -q restore "$vol" pristine      # rewrites only what the test changed
done

# --- clone loop (writable clones): each test on its own throwaway clone ---
# CLONE-LOOP: to be filled in when `serve --run CMD --clone SNAP` lands, e.g.
#   for t in "$@"; do "$vsnap" serve "$vol" --run "$t" --clone pristine; done

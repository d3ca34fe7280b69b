#!/usr/bin/env bash
# Quick start, no upstream sources needed (GitHub is never contacted; PyPI provides numpy for the envs):
#  1. build a verified Triton stub from the bundled fixture sources (a miniature of python_backend with the
#     same dependency shape) and show its manifest;
#  2. build stubforge's own runner stub for Python 3.8 and 3.10, pack an env for each, and run the example
#     models (examples/fidelity: add/sub, BLS, a decoupled stream, auto-complete) in them, printing what ran where.
# Everything goes to a throw-away cache and work dir.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export STUBFORGE_CACHE="${STUBFORGE_CACHE:-$(mktemp -d /tmp/stubforge-quickstart.XXXXXX)}"
work="$(mktemp -d /tmp/stubforge-quickstart-work.XXXXXX)"
python="${1:-3.10}"

echo "== 1. Triton's stub from the fixture sources (Python $python)"
stubforge sources import --triton 24.10 --from "$here/../tests/fixtures/upstream"
stubforge build --python "$python" --triton 24.10
stubforge build --python "$python" --triton 24.10      # second run: a cache hit, no cmake
manifest="$(dirname "$(stubforge stubs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["path"])')")/manifest.json"
echo "--- $manifest"
head -c 600 "$manifest"; echo " ..."

echo "== 2. the runner: our stub and an env for Python 3.8 and 3.10, the example models in each"
stubforge build --flavor runner --python 3.8 --python 3.10
stubforge pack-env --python 3.8 --dir "$work/env38" -q
stubforge pack-env --python 3.10 --dir "$work/env310" -q
python3 "$here/run_examples.py" "$work" "$work/env38" "$work/env310"

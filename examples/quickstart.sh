#!/usr/bin/env bash
# Quick start, no network: build a verified stub from the bundled fixture sources (a miniature of
# python_backend with the same dependency shape) and show its manifest.
# Uses a throw-away cache so the fixture never mixes with real r24.10 sources in your own cache.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export STUBFORGE_CACHE="${STUBFORGE_CACHE:-$(mktemp -d /tmp/stubforge-quickstart.XXXXXX)}"
python="${1:-3.10}"

stubforge sources import --triton 24.10 --from "$here/../tests/fixtures/upstream"
stubforge build --python "$python" --triton 24.10
stubforge build --python "$python" --triton 24.10      # second run: a cache hit, no cmake
manifest="$(dirname "$(stubforge stubs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["path"])')")/manifest.json"
echo "--- $manifest"
cat "$manifest"

#!/usr/bin/env bash
# The whole GPU check, for a machine with an NVIDIA GPU, its driver and a CUDA 12/13 toolkit (a few minutes):
# the GPU build decisions (unit), the fixture project's GPU build and the deployment checks (integration), then
# the real r24.10 stub built by stubforge with --gpu, loaded by the real r24.10 server (nvidia-pytriton), and a
# KIND_GPU model handing a CUDA tensor back through DLPack (tests/e2e/test_gpu_stub.py, markers upstream + gpu).
#
#   STUBFORGE_UPSTREAM_SOURCES=/path/to/r24.10-sources benchmarks/gpu_check.sh
#
# STUBFORGE_REQUIRE_GPU=1 turns "no GPU" from a skip into a failure, so a green run means the GPU test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STUBFORGE_UPSTREAM_SOURCES:?set it to a directory of real python_backend r24.10 sources (CONTRIBUTING.md)}"
nvidia-smi -L
export STUBFORGE_REQUIRE_GPU=1
start=$(date +%s)
python3 -m pytest -q -p no:cacheprovider -rs \
  tests/unit/test_cuda.py tests/integration/test_gpu_build.py tests/e2e/test_gpu_stub.py
echo "GPU check passed in $(( $(date +%s) - start )) s"

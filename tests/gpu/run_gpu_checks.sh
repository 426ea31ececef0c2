#!/usr/bin/env bash
# The one prepared GPU check (run on a lent GPU machine from the repository root):
#   GPU tests (precision + distributed), the AMP benchmark, and the CPU-side overhead benchmark
#   (an idle 16-core host gives steadier per-step figures than a busy laptop).
# Needs torch and pytorch-ignite; pytorch-ignite travels as a wheel in .whl/ when the machine lacks it.
# Writes its logs and JSON under $OUT (or ./gpu-out).
set -uo pipefail
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import ignite" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
# DeepSpeed (optional): its sdist and the wheels it needs in .whl/ds/ (see tests/gpu/test_deepspeed_gpu.py)
if ! python3 -c "import deepspeed" 2>/dev/null && ls .whl/ds/deepspeed-*.tar.gz >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/ds/*.whl \
    && DS_BUILD_OPS=0 python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
       --target /tmp/site .whl/ds/deepspeed-*.tar.gz && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, ignite; print(sys.version.split()[0], 'torch', torch.__version__, 'ignite', ignite.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/machine.txt"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$OUT/gpu_tests.log"
timeout 240 python3 benchmarks/amp.py --out "$OUT/amp.json" 2>&1 | tee "$OUT/amp.log"
CUDA_VISIBLE_DEVICES="" timeout 120 python3 benchmarks/overhead.py --repeats 5 2>&1 | tee "$OUT/overhead.json"

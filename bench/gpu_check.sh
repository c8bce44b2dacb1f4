#!/usr/bin/env bash
# The GPU check for a lent device machine (the `device` tool; see its README): CUDA parity tests and
# tenfold's CUDA throughput on the serving workload, in at most ~6 minutes, figures written under $OUT.
#
#   bash bench/gpu_check.sh prepare     # here, with network: wheels the device image lacks + the tiny model
#                                       # -> .gpu-carry/ (about 25 MiB; the device carries at most 64 MiB)
#   bash bench/gpu_check.sh run         # on the device, from the repository root, carry [".gpu-carry"]
#
# The image has Python 3.12 with torch (CUDA), transformers, peft, accelerate, pytest and pytest-timeout, but
# not pydantic (and its parts), llguidance or the embedded model's package; tenfold runs from src/ (its C
# extension is for CPUs and not needed on CUDA). vLLM is not in the image, so no vLLM arm runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu-carry
case "${1:-}" in
prepare)
    PY=${PY:-.venv/bin/python}
    rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/models"
    $PY -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$CARRY/wheels" pydantic pydantic-core annotated-types typing-inspection llguidance
    $PY -c "from pathlib import Path; from tenfold.models.registry import resolve_base_model; \
print(resolve_base_model('tiny-random-llama', models_dir=Path('$CARRY/models')))"
    du -sh "$CARRY"
    ;;
run)
    : "${OUT:?run this on the device machine, where \$OUT is set}"
    test -d "$CARRY/wheels" || { echo "no $CARRY: run 'bash bench/gpu_check.sh prepare' here first" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --target /tmp/gpu-site "$CARRY"/wheels/*.whl
    export PYTHONPATH="$PWD/src:$PWD:/tmp/gpu-site" TENFOLD_TEST_MODEL_CACHE="$PWD/$CARRY/models" HF_HUB_OFFLINE=1
    export TENFOLD_BENCH_DIR=/tmp/tenfold-bench
    { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch; print(torch.__version__)"; } \
        > "$OUT/gpu.txt" 2>&1 || true
    set +e
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/engine/test_parity.py -k cuda > "$OUT/parity.txt" 2>&1
    echo "parity exit $?" >> "$OUT/parity.txt"
    tiny=$(ls -d "$CARRY"/models/tiny-random-llama* | head -1)
    timeout 240 python3 bench/gpu_check.py --tokenizer-from "$tiny" --out "$OUT/gpu_check.json" > "$OUT/throughput.txt" 2>&1
    echo "throughput exit $?" >> "$OUT/throughput.txt"
    tail -3 "$OUT/parity.txt" "$OUT/throughput.txt"
    ;;
*)
    echo "usage: bash bench/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac

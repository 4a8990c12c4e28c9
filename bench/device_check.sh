#!/usr/bin/env bash
# The accelerator check in one call, from the repository root on a bare GPU machine:
#   bench/device_check.sh                 # CUDA: scoring fp32/bf16 vs naive, MFU, trainer presets
#   bench/device_check.sh --device cpu --tiny    # the same steps, tiny, on any CPU (a test runs it)
# Needs torch, transformers, pyarrow, numpy; no Beam, spaCy, gguf or network. Stops itself after
# DEVICE_CHECK_TIMEOUT seconds (default 480: 8 minutes); results under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-}
if [ -z "$py" ]; then
  for candidate in .venv/bin/python /opt/torch/.venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1; then py=$candidate; break; fi
  done
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >&2
exec timeout "${DEVICE_CHECK_TIMEOUT:-480}" "$py" -m bench.device_check "$@"

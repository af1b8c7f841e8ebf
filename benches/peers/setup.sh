#!/usr/bin/env sh
# Creates the Python environment of the PyTorch peers: a virtual
# environment with torch, numpy and deepctr-torch (with the packages it
# imports) from PyPI, by default in the repository's target/peers-venv
# (PEERS_VENV=DIR chooses another place; PYTHON=python3.12 another
# interpreter). Running it again installs only what is missing. Nothing of
# the Rust build uses it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${PEERS_VENV:-$here/../../target/peers-venv}
python=${PYTHON:-python3}
# deepctr-torch 0.3.0 declares torch, tqdm and scikit-learn; its package
# also imports requests (for a version check at import), which it does not
# declare.
deepctr="deepctr-torch==0.3.0"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install torch numpy
"$venv/bin/python" -m pip install "$deepctr" scikit-learn tqdm requests
"$venv/bin/python" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
# deepctr-torch's DIEN at a tiny size: one forward + backward in training
# mode (with negatives and its auxiliary loss), one forward in evaluation mode.
"$venv/bin/python" "$here/deepctr_dien.py" --check
echo "environment ready: $venv/bin/python"

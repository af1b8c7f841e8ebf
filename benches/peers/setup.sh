#!/usr/bin/env sh
# Creates the Python environment of the PyTorch replay: a virtual
# environment with torch and numpy from PyPI, by default in the
# repository's target/peers-venv (PEERS_VENV=DIR chooses another place;
# PYTHON=python3.12 another interpreter). Nothing of the Rust build uses it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${PEERS_VENV:-$here/../../target/peers-venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install torch numpy
"$venv/bin/python" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
echo "environment ready: $venv/bin/python"

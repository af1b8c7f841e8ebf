#!/usr/bin/env bash
# The Python package (crates/dien-py): builds it into a virtual environment
# and runs its tests against the Rust tools they compare with.
#
#   scripts/python-tests.sh            # venv in target/py-venv (reused)
#   DIEN_PY_VENV=/tmp/v scripts/python-tests.sh
#
# Steps: a virtual environment (installing python3-venv with apt-get when
# `python3 -m venv` cannot work, as on a bare Debian), maturin, numpy and
# pytest from PyPI, the `dien` binary and the `score_requests` example of
# dien-model (release builds), the package itself with
# `pip install ./crates/dien-py` (a release build by maturin in the
# workspace's target/), then pytest. Any failure stops the script with a
# non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${DIEN_PY_VENV:-target/py-venv}
PYTHON=${PYTHON:-python3}

fail() {
    echo "python-tests: FAILED: $*" >&2
    exit 1
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || fail "$* missing and no apt-get to install it"
    echo "== apt-get install $*"
    apt-get update -qq && apt-get install -y -qq "$@" >/dev/null || fail "apt-get install $*"
}

command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3
command -v cargo >/dev/null 2>&1 || fail "cargo is required (rust-toolchain.toml pins the toolchain)"

echo "== virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    # Debian's python3 has `venv` but not `ensurepip` without python3-venv.
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV" || fail "python3 -m venv $VENV"
    fi
fi
PY="$ROOT/$VENV/bin/python"
# maturin's build hook runs the `maturin` of this environment.
export PATH="$ROOT/$VENV/bin:$PATH"
"$PY" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" numpy pytest || fail "pip install maturin numpy pytest"

echo "== Rust tools the tests compare with (release)"
# One invocation, so that both share one resolution of dependency features.
cargo build --release -p dien-trainer --bin dien -p dien-model --example score_requests \
    || fail "cargo build dien, score_requests"

echo "== pip install ./crates/dien-py"
"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./crates/dien-py \
    || fail "pip install ./crates/dien-py"

echo "== pytest crates/dien-py/tests"
# The tests fail (rather than skip) when a Rust tool is missing.
DIEN_REQUIRE_TOOLS=1 \
DIEN_BIN="$ROOT/target/release/dien" \
DIEN_SCORE_REQUESTS="$ROOT/target/release/examples/score_requests" \
    "$PY" -m pytest crates/dien-py/tests -q -p no:cacheprovider --durations=5 || fail "pytest"
echo "== python tests passed"

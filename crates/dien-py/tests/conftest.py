"""Shared fixtures: a small generated data set, a model trained on it with
dien.train, the Rust tools the tests compare against, and small helpers.

The Rust tools (the `dien` binary and the `score_requests` example of
dien-model) are found through $DIEN_BIN and $DIEN_SCORE_REQUESTS, or in
target/release of the workspace; a test that needs one is skipped when it is
missing, unless $DIEN_REQUIRE_TOOLS=1 (scripts/python-tests.sh sets it),
which turns the skip into a failure.
"""

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import dien

REPO = Path(__file__).resolve().parents[3]


def _tool(env: str, default: Path) -> Path:
    p = Path(os.environ.get(env, default))
    if not p.is_file():
        msg = f"{p} not found (set ${env}, or build it: see scripts/python-tests.sh)"
        if os.environ.get("DIEN_REQUIRE_TOOLS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return p


@pytest.fixture(scope="session")
def dien_bin() -> Path:
    """The `dien` binary."""
    return _tool("DIEN_BIN", REPO / "target" / "release" / "dien")


@pytest.fixture(scope="session")
def score_requests_bin() -> Path:
    """The `score_requests` example: the Rust request path's scores as bits."""
    return _tool("DIEN_SCORE_REQUESTS", REPO / "target" / "release" / "examples" / "score_requests")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A small synthetic data set (dien.generate)."""
    d = tmp_path_factory.mktemp("data") / "set"
    s = dien.generate(d, seed=7, users=400, items=300, categories=12, min_history=2, max_history=14)
    assert s["train_samples"] > 0 and s["test_samples"] > 0
    return d


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """A small DIEN trained by dien.train: (checkpoint, result, records)."""
    out = tmp_path_factory.mktemp("run") / "m.safetensors"
    records = []
    result = dien.train(
        data_dir,
        "dien",
        out=out,
        epochs=1,
        seed=11,
        threads=2,
        on_step=records.append,
        batch=32,
        dim=4,
        hidden=8,
        max_len=12,
        log_every=2,
        eval_every=6,
    )
    return out, result, records


def read_lines(path: Path):
    """The samples of a data file: (label, uid, mid, cat, hist_mids, hist_cats)."""
    out = []
    for line in path.read_text().splitlines():
        label, uid, mid, cat, hm, hc = line.split("\t")
        hist_m = hm.split("\x02") if hm else []
        hist_c = hc.split("\x02") if hc else []
        out.append((int(float(label)), uid, mid, cat, hist_m, hist_c))
    return out


def read_safetensors(path: Path):
    """A safetensors file's F32 tensors by name, and its metadata."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    tensors = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", t
        a, b = t["data_offsets"]
        tensors[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return tensors, meta


def bits(x) -> np.ndarray:
    """The bit patterns of float32 values."""
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


sys.path.insert(0, str(Path(__file__).parent))

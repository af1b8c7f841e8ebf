"""dien.train, dien.evaluate, dien.generate, the package's metadata, the
quickstart example and the benchmark script."""

import json
import math
import os
import platform
import re
import signal
import subprocess
import sys

import pytest

import dien
from conftest import REPO


def test_train_returns_finite_metrics_and_calls_on_step(trained):
    ckpt, result, records = trained
    for k in ("auc", "gauc", "logloss", "accuracy"):
        assert isinstance(result[k], float) and math.isfinite(result[k]), k
    assert result["model"] == "dien" and result["steps"] > 0 and result["samples"] > 0
    assert result["checkpoint"] == str(ckpt) and ckpt.is_file()
    assert ckpt.with_name("m.vocab.json").is_file() and ckpt.with_name("m.metrics.jsonl").is_file()
    kinds = [r["kind"] for r in records]
    assert "train" in kinds and "eval" in kinds
    train = [r for r in records if r["kind"] == "train"]
    assert all(math.isfinite(r["train_loss"]) for r in train)
    assert [r["step"] for r in train] == list(range(2, 2 * len(train) + 1, 2))
    last_eval = [r for r in records if r["kind"] == "eval"][-1]
    assert last_eval["test"]["auc"] == result["auc"]
    assert last_eval["valid"]["auc"] == result["valid"]["auc"]
    # Validation users were held out; the best checkpoint was chosen on them.
    assert result["select"] == "valid" and result["split"]["valid_frac"] == 0.1
    assert result["split"]["valid_users"] > 0 and result["split"]["train_users"] > 0
    assert result["best"]["valid_auc"] == result["best_auc"]


def test_train_selects_the_best_model_on_validation_users(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    records = []
    result = dien.train(data_dir, "din", out=out, epochs=2, seed=3, threads=1, valid_frac=0.25, select="valid",
                        early_stop=50, on_step=records.append, batch=32, dim=4, hidden=8, eval_every=4, lr=0.01)
    evals = [r for r in records if r["kind"] == "eval"]
    aucs = [r["valid"]["auc"] for r in evals]
    best = result["best"]
    first_max = evals[aucs.index(max(aucs))]
    assert (best["step"], best["valid_auc"], best["epoch"]) == (first_max["step"], max(aucs), first_max["epoch"])
    # The test file is scored only for the final model and the best one.
    assert [r["step"] for r in evals if r["test"] is not None] == [result["steps"]]
    m = dien.evaluate(best["checkpoint"], data_dir, batch=32, threads=1)
    assert m == best["test"]
    assert result["split"]["valid_frac"] == 0.25 and not result["stopped_early"]

    # By test AUC, as the reference code, with or without a validation split.
    r = dien.train(data_dir, "din", out=tmp_path / "t.safetensors", threads=1, valid_frac=0.0, select="test",
                   batch=32, dim=4, hidden=8, eval_every=8)
    assert r["valid"] is None and r["split"]["valid_lines"] == 0 and r["best"]["valid_auc"] is None
    assert r["best_auc"] == r["best"]["test"]["auc"]


def test_validation_settings_are_checked(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=r"`valid_frac` = 1: .*below 1"):
        dien.train(data_dir, out=out, valid_frac=1.0)
    with pytest.raises(ValueError, match="select `best`: expected `valid` or `test`"):
        dien.train(data_dir, out=out, select="best")
    with pytest.raises(ValueError, match="`early_stop` must be at least 1"):
        dien.train(data_dir, out=out, early_stop=0)
    with pytest.raises(ValueError, match="--select valid .* --valid-frac 0"):
        dien.train(data_dir, "din", out=out, valid_frac=0, threads=1, dim=2, hidden=4)
    assert not out.exists()


def test_evaluate_scores_the_checkpoint(trained, data_dir):
    ckpt, result, _ = trained
    m = dien.evaluate(ckpt, data_dir, batch=32, threads=1)
    assert m["samples"] == result["samples"]
    for k in ("auc", "gauc", "logloss", "accuracy"):
        assert m[k] == pytest.approx(result[k], rel=1e-6), k
    with pytest.raises(FileNotFoundError):
        dien.evaluate(ckpt.with_name("none.safetensors"), data_dir)
    with pytest.raises(ValueError, match="batch = 0"):
        dien.evaluate(ckpt, data_dir, batch=0)


def test_an_exception_in_on_step_stops_training(data_dir, tmp_path):
    seen = []

    def on_step(record):
        seen.append(record)
        if len(seen) == 2:
            raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        dien.train(data_dir, "din", out=tmp_path / "m.safetensors", on_step=on_step, log_every=1, batch=16, dim=2, threads=1)
    assert len(seen) == 2


def test_train_settings_are_checked(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=r"train: unknown key `epoch` \(the keys are: epochs"):
        dien.train(data_dir, out=out, epoch=2)
    with pytest.raises(ValueError, match="unknown value `gru4rec`"):
        dien.train(data_dir, "gru4rec", out=out)
    with pytest.raises(ValueError, match="`on_step` must be callable"):
        dien.train(data_dir, out=out, on_step=3)
    with pytest.raises(FileNotFoundError):
        dien.train(tmp_path / "no-data", "base", out=out, threads=1)
    with pytest.raises(ValueError, match="recipe `boost`: expected one of reference, aux-boost"):
        dien.train(data_dir, out=out, recipe="boost")
    with pytest.raises(ValueError, match="--alpha-aux 3 conflicts with --recipe aux-boost"):
        dien.train(data_dir, out=out, recipe="aux-boost", alpha_aux=3, max_steps=1)


def test_train_records_the_recipe(data_dir, tmp_path):
    out = tmp_path / "m.safetensors"
    dien.train(data_dir, out=out, recipe="aux-boost", max_steps=2, threads=1)
    run = json.loads((tmp_path / "m.metrics.jsonl").read_text().splitlines()[0])
    c = run["config"]
    assert (c["recipe"], c["alpha_aux"], c["aux_lr_scale"], c["variant"]) == ("aux-boost", 10.0, 10.0, "augru-ref")


def test_generate_writes_the_reference_layout(tmp_path):
    s = dien.generate(tmp_path / "g", seed=3, users=30, items=40, categories=5, min_history=2, max_history=6)
    assert s["train_users"] + s["test_users"] == 30
    for f in ("local_train_splitByUser", "local_test_splitByUser", "item-info", "reviews-info", "uid_voc.pkl"):
        assert (tmp_path / "g" / f).is_file(), f
    with pytest.raises(ValueError, match="generate: unknown key `user`"):
        dien.generate(tmp_path / "h", user=3)
    with pytest.raises(ValueError, match="users must be at least 1"):
        dien.generate(tmp_path / "h", users=0)


def test_version_and_build_target():
    cargo = (REPO / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert dien.__version__ == version
    # Built inside the workspace, the extension gets .cargo/config.toml's
    # target-cpu (unless RUSTFLAGS replaced it for the build).
    if platform.machine() in ("x86_64", "AMD64") and "RUSTFLAGS" not in os.environ:
        assert dien.simd_target() == "x86-64-v3 (AVX2+FMA)"


def test_quickstart_runs(tmp_path):
    env = dict(os.environ, DIEN_QUICKSTART_USERS="300", MPLBACKEND="Agg")
    r = subprocess.run(
        [sys.executable, REPO / "examples" / "python" / "quickstart.py", "--out", tmp_path / "qs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test auc" in r.stdout and "scores" in r.stdout
    # Without matplotlib (the test environment has none) it says so and ends well.
    assert "matplotlib is not installed" in r.stdout or (tmp_path / "qs" / "curve.png").is_file()


def test_python_bench_runs_with_tiny_settings(dien_bin):
    r = subprocess.run(
        [sys.executable, REPO / "scripts" / "python-bench.py", "--quick", "--dien", dien_bin],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "overhead" in r.stdout and "ratio" in r.stdout


def test_ctrl_c_stops_training(data_dir, tmp_path):
    code = f"""
import signal, sys, dien
signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
def on_step(r):
    print("step", r["step"], flush=True)
try:
    dien.train({str(data_dir)!r}, "din", out={str(tmp_path / "m.safetensors")!r}, epochs=10000, threads=1,
               batch=8, dim=2, log_every=1, eval_every=1000000, on_step=on_step)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("step")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, out
    assert "interrupted" in out

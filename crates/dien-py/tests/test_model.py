"""dien.Model and dien.Batch: f64 gradients against NumPy finite
differences, f32 results against the `dien grads` binary bit for bit,
parameters in and out, and the batch rules of the JSON batch file."""

import json
import subprocess

import numpy as np
import pytest

import dien
from conftest import bits, read_safetensors

TINY = {"model": "dien", "n_uid": 5, "n_mid": 12, "n_cat": 4, "d": 2, "H": 4, "max_len": 6}


def tiny_batch(negatives=True, seed=3):
    """Four samples, histories of 5, 3, 1 and 0 behaviours (T = 5), padded with -1."""
    rng = np.random.default_rng(seed)
    b, t = 4, 5
    lengths = np.array([5, 3, 1, 0])
    pad = np.arange(t)[None, :] >= lengths[:, None]

    def hist(n):
        a = rng.integers(0, n, (b, t))
        a[pad] = -1  # padding is never read
        return a

    kw = {}
    if negatives:
        kw = {"neg_mid": hist(12), "neg_cat": hist(4)}
    return dien.Batch(
        rng.integers(0, 5, b),
        rng.integers(0, 12, b),
        rng.integers(0, 4, b),
        hist(12),
        hist(4),
        lengths,
        np.array([1, 0, 1, 0], dtype=np.float32),
        **kw,
    )


def test_f64_gradients_agree_with_finite_differences():
    m = dien.Model(TINY, seed=5, threads=1)
    b = tiny_batch()
    losses, grads = m.loss_and_grads(b, precision="f64")
    kinds = {t["name"]: t["kind"] for t in m.tensors()}
    assert set(grads) == {n for n, k in kinds.items() if k == "param"}
    base = m.parameters(precision="f64")
    # The objective of a training-mode forward is the loss being differentiated.
    _, l0 = m.forward(b, mode="train", precision="f64")
    assert l0["loss"] == losses["loss"] and losses["loss_aux"] > 0
    eps = 1e-5
    rng = np.random.default_rng(0)
    checked = 0
    for name, g in grads.items():
        assert g.dtype == np.float64 and g.shape == base[name].shape
        flat = np.abs(g).ravel()
        picks = set(np.argsort(flat)[-2:]) | set(rng.integers(0, flat.size, 2).tolist())
        for j in sorted(picks):
            fd = []
            for sign in (1, -1):
                p = base[name].copy()
                p.flat[j] += sign * eps
                m.load_parameters({name: p})
                fd.append(m.forward(b, mode="train", precision="f64")[1]["loss"])
            m.load_parameters({name: base[name]})
            num = (fd[0] - fd[1]) / (2 * eps)
            ana = g.flat[j]
            assert abs(num - ana) <= 1e-7 + 1e-5 * abs(ana), f"{name}[{j}]: analytic {ana}, numeric {num}"
            checked += 1
    assert checked > 50
    # The f32 path computes the same gradients up to rounding.
    _, g32 = m.loss_and_grads(b)
    for name, g in grads.items():
        assert g32[name].dtype == np.float32
        np.testing.assert_allclose(g32[name], g, rtol=2e-3, atol=2e-5, err_msg=name)


def test_parameters_round_trip():
    a = dien.Model(TINY, seed=1)
    b = dien.Model(TINY, seed=2)
    pa = a.parameters()
    assert [t["name"] for t in a.tensors()] == list(pa)
    assert pa["gru1.w_ih"].shape == (12, 4) and pa["gru1.b"].shape == (12,)  # [3H, E], gate blocks r, u, c
    np.testing.assert_array_equal(pa["gru1.b"], [1] * 8 + [0] * 4)
    assert any(not np.array_equal(pa[k], v) for k, v in b.parameters().items())
    b.load_parameters(pa, strict=True)
    for k, v in b.parameters().items():
        np.testing.assert_array_equal(bits(v), bits(pa[k]), err_msg=k)
    batch = tiny_batch()
    for mode in ("eval", "train"):
        np.testing.assert_array_equal(bits(a.forward(batch, mode=mode)[0]), bits(b.forward(batch, mode=mode)[0]))
    # float64 values are kept exactly for the f64 path, rounded for f32.
    w = pa["head.fc1.w"].astype(np.float64) + 1e-9
    b.load_parameters({"head.fc1.w": w})
    np.testing.assert_array_equal(b.parameters(precision="f64")["head.fc1.w"], w)
    np.testing.assert_array_equal(b.parameters()["head.fc1.w"], w.astype(np.float32))
    # Config round trip.
    assert dien.Model(a.config).config == a.config


def test_load_parameters_refuses_bad_arrays():
    m = dien.Model(TINY)
    p = m.parameters()
    w = p["att.fc2.w"]
    cases = [
        ({"att.fc9.w": w}, r"unknown tensor `att.fc9.w` \(this model's tensors are: emb.uid, emb.mid"),
        ({"att.fc2.w": w.T.copy()}, r"`att.fc2.w` has shape \[40, 80\] in this model, got \[80, 40\]"),
        ({"att.fc2.w": w.astype(np.int32)}, r"`att.fc2.w` has dtype int32; expected float32 or float64"),
        ({"att.fc2.w": np.asfortranarray(w)}, r"`att.fc2.w` is not C-contiguous"),
        ({"att.fc2.w": np.where(w > 0, np.nan, w).astype(np.float32)}, r"`att.fc2.w`: element \d+ is not finite \(NaN\)"),
    ]
    for arg, msg in cases:
        with pytest.raises(ValueError, match=msg):
            m.load_parameters(arg)
    with pytest.raises(ValueError, match="strict: missing tensors: emb.uid"):
        m.load_parameters({"att.fc2.w": w}, strict=True)
    np.testing.assert_array_equal(m.parameters()["att.fc2.w"], w)


def test_checkpoint_tensors_are_the_parameters(trained):
    tensors, meta = read_safetensors(trained[0])
    m = dien.Model.load(trained[0])
    params = m.parameters()
    assert set(tensors) == set(params)
    for k, v in params.items():
        np.testing.assert_array_equal(bits(v), bits(tensors[k]), err_msg=k)
    assert meta["model"] == "dien" and int(meta["d"]) == m.config["d"] == 4


def test_f32_and_f64_results_equal_dien_grads(trained, dien_bin, tmp_path):
    ckpt = trained[0]
    m = dien.Model.load(ckpt, threads=2)
    c = m.config
    batch_json = {
        "uid": [1, 2, 0, 3],
        "mid": [3, 4, c["n_mid"] - 1, 1],
        "cat": [1, 1, 2, 0],
        "hist_mid": [[5, 6, 7, 8], [9], [], [2, 2, 3]],
        "hist_cat": [[1, 2, 1, 3], [1], [], [2, 2, 1]],
        "neg_mid": [[8, 9, 1, 4], [10], [], [4, 5, 6]],
        "neg_cat": [[2, 2, 2, 1], [3], [], [1, 1, 1]],
        "label": [1, 0, 0, 1],
    }
    jf = tmp_path / "batch.json"
    jf.write_text(json.dumps(batch_json))
    b = dien.Batch.from_json(jf)
    assert (b.size, b.steps, b.has_negatives) == (4, 4, True)
    for flags, precision in (([], "f32"), (["--f64"], "f64")):
        out = tmp_path / f"g{precision}.safetensors"
        subprocess.run(
            [dien_bin, "grads", "--checkpoint", ckpt, "--batch-file", jf, "--out", out, *flags],
            check=True,
            capture_output=True,
        )
        t, meta = read_safetensors(out)
        assert meta["precision"] == precision
        losses, grads = m.loss_and_grads(b, precision=precision)
        for k in ("loss", "loss_target", "loss_aux"):
            assert np.float32(losses[k]) == t[k][0], k
        assert {f"grad.{k}" for k in grads} == {k for k in t if k.startswith("grad.")}
        for k, g in grads.items():
            np.testing.assert_array_equal(bits(g.astype(np.float32)), bits(t[f"grad.{k}"]), err_msg=k)
        logits, _ = m.forward(b, mode="train", precision=precision)
        np.testing.assert_array_equal(bits(logits.astype(np.float32)), bits(t["logits"]))
    out = tmp_path / "eval.safetensors"
    subprocess.run([dien_bin, "grads", "--checkpoint", ckpt, "--batch-file", jf, "--out", out, "--eval"], check=True, capture_output=True)
    t, _ = read_safetensors(out)
    logits, losses = m.forward(b)
    np.testing.assert_array_equal(bits(logits), bits(t["logits"]))
    assert np.float32(losses["loss"]) == t["loss"][0]


def json_error(obj):
    with pytest.raises(ValueError) as e:
        dien.Batch.from_json_str(json.dumps(obj))
    return str(e.value)


def array_error(**kw):
    args = {
        "uid": np.array([1, 2]),
        "mid": np.array([3, 4]),
        "cat": np.array([1, 1]),
        "hist_mid": np.array([[5, 6, 7], [0, 0, 0]]),
        "hist_cat": np.array([[1, 2, 1], [0, 0, 0]]),
        "lengths": np.array([3, 0]),
        "label": np.array([1.0, 0.0], dtype=np.float32),
    }
    args.update(kw)
    with pytest.raises(ValueError) as e:
        dien.Batch(**args)
    return str(e.value)


GOOD = {"uid": [1, 2], "mid": [3, 4], "cat": [1, 1], "hist_mid": [[5, 6, 7], []], "hist_cat": [[1, 2, 1], []], "label": [1, 0]}


def test_batches_from_arrays_follow_the_json_rules():
    good = dien.Batch(
        np.array([1, 2]),
        np.array([3, 4], dtype=np.int32),  # mixed dtypes are converted
        [1, 1],  # lists too
        np.array([[5, 6, 7], [-1, -1, -1]]),  # padding is not read
        np.array([[1, 2, 1], [99, 99, 99]], dtype=np.uint32),
        np.array([3, 0]),
        np.array([True, False]),
    )
    assert good == dien.Batch.from_json_str(json.dumps(GOOD))
    np.testing.assert_array_equal(good.hist_mid, [[5, 6, 7], [0, 0, 0]])
    assert good.label.dtype == np.float32 and len(good) == 2

    def same(array_kw, json_patch):
        want = json_error({**GOOD, **json_patch})
        assert array_error(**array_kw) == want
        return want

    assert same({"label": np.array([1, 0.5])}, {"label": [1, 0.5]}) == "batch: sample 1: label 0.5 is not 0 or 1"
    assert same({"mid": np.array([3])}, {"mid": [3]}) == "batch: field `mid` has 1 samples, `uid` has 2"
    same({"uid": np.array([1, -4])}, {"uid": [1, -4]})
    assert "sample 1: `uid` value -4 is not an index" in array_error(uid=np.array([1, -4]))
    same({"hist_mid": np.array([[5, -6, 7], [0, 0, 0]])}, {"hist_mid": [[5, -6, 7], []]})
    assert (
        same({"hist_cat": np.array([[1, 2], [0, 0]])}, {"hist_cat": [[1, 2], []]})
        == "batch: sample 0: `hist_cat` has 2 entries, `hist_mid` has 3"
    )
    assert same({"neg_mid": np.array([[8, 9, 1], [0, 0, 0]])}, {"neg_mid": [[8, 9, 1], []]}) == (
        "batch: `neg_mid` and `neg_cat` must be given together"
    )
    # Array-only mistakes.
    assert array_error(lengths=np.array([4, 0])) == "batch: sample 0: length 4 exceeds T = 3"
    assert "`uid` has dtype float64; expected an integer array" in array_error(uid=np.array([1.0, 2.0]))
    assert "`hist_mid` must be a 2-D array [B, T], got shape (3,)" in array_error(hist_mid=np.array([5, 6, 7]))
    assert "`hist_mid` is not C-contiguous" in array_error(hist_mid=np.array([[5, 6, 7], [0, 0, 0]]).T.copy().T)
    assert "`label` has dtype <U1" in array_error(label=np.array(["1", "0"]))


def test_out_of_range_and_empty_batches_are_value_errors():
    m = dien.Model(TINY)
    b = dien.Batch.from_json_str(json.dumps({**GOOD, "uid": [1, 7]}))
    for p in ("f32", "f64"):
        with pytest.raises(ValueError, match=r"sample 1: `uid` index 7 out of range \(table has 5 rows\)"):
            m.forward(b, precision=p)
        with pytest.raises(ValueError, match=r"sample 0, step 1: `hist_mid` index 13 out of range"):
            m.loss_and_grads(dien.Batch.from_json_str(json.dumps({**GOOD, "hist_mid": [[5, 13, 7], []]})), precision=p)
    empty = dien.Batch(*[np.zeros(0, dtype=np.int64)] * 3, np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64), [], [])
    with pytest.raises(ValueError, match="empty"):
        m.forward(empty)
    with pytest.raises(ValueError, match=r"mode `test`: expected \"eval\" or \"train\""):
        m.forward(tiny_batch(), mode="test")
    with pytest.raises(ValueError, match="empty"):
        m.rust_timings(empty)
    with pytest.raises(ValueError, match=r"sample 1: `uid` index 7 out of range"):
        m.rust_timings(b, repeats=2)
    with pytest.raises(ValueError, match="precision `f16`"):
        m.loss_and_grads(tiny_batch(), precision="f16")


def test_rust_timings_time_the_forward_and_change_nothing():
    m = dien.Model(TINY, seed=5)
    b = tiny_batch()
    before = m.parameters()
    logits, _ = m.forward(b, mode="train")
    for mode in ("eval", "train"):
        t = m.rust_timings(b, mode=mode, repeats=4)
        assert t.dtype == np.float64 and t.shape == (4,) and np.all(t > 0)
    np.testing.assert_array_equal(bits(m.forward(b, mode="train")[0]), bits(logits))
    for name, v in m.parameters().items():
        np.testing.assert_array_equal(v, before[name], err_msg=name)


def test_model_configs_are_checked():
    with pytest.raises(ValueError, match=r"unknown key `hiden` \(the keys are: model, variant"):
        dien.Model({**TINY, "hiden": 3})
    with pytest.raises(ValueError, match="`n_cat` \\(a table size\\) is required"):
        dien.Model({"n_uid": 3, "n_mid": 3})
    with pytest.raises(ValueError, match="unknown value `lstm`"):
        dien.Model({**TINY, "variant": "lstm"})
    with pytest.raises(ValueError, match="threads = 0"):
        dien.Model(TINY, threads=0)
    for kind in ("dien-noaux", "din", "base"):
        m = dien.Model({**TINY, "model": kind})
        losses, grads = m.loss_and_grads(tiny_batch())
        assert np.isfinite(losses["loss"]) and "head.fc3.w" in grads
        assert ("gru1.w_ih" in grads) == (kind == "dien-noaux")

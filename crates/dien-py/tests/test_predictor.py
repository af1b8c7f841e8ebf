"""dien.Predictor: scores equal the Rust request path's bit for bit, by
string id and by index, from one thread or four; bad input is a ValueError."""

import json
import subprocess
import threading

import numpy as np
import pytest

import dien
from conftest import bits, read_lines


def requests_from(data_dir, n=24):
    """Requests built from the test file: each user's history, the line's
    item plus a few other items (one unknown) as candidates."""
    lines = read_lines(data_dir / "local_test_splitByUser")
    others = [(l[2], l[3]) for l in lines[:7]] + [("no-such-item", "no-such-cat")]
    reqs = []
    for i, (_, uid, mid, cat, hm, hc) in enumerate(lines[:n]):
        cands = [(mid, cat)] + others[: 1 + i % len(others)]
        reqs.append(
            {
                # Known users, an unknown one, and none (index 0).
                "uid": uid if i % 5 else ("unknown-user" if i % 10 else None),
                "hist_items": hm,
                "hist_cats": hc,
                "cand_items": [c[0] for c in cands],
                "cand_cats": [c[1] for c in cands],
            }
        )
    # An empty history is a valid request.
    reqs.append({"uid": reqs[0]["uid"], "hist_items": [], "hist_cats": [], "cand_items": ["x"], "cand_cats": ["y"]})
    return reqs


def as_indices(reqs, vocab):
    """The same requests by index, through the checkpoint's vocabularies."""
    out = []
    for r in reqs:
        m, c = vocab["mid"], vocab["cat"]
        out.append(
            {
                "uid": vocab["uid"].get(r["uid"], 0),
                "hist_mid": [m.get(x, 0) for x in r["hist_items"]],
                "hist_cat": [c.get(x, 0) for x in r["hist_cats"]],
                "cand_mid": [m.get(x, 0) for x in r["cand_items"]],
                "cand_cat": [c.get(x, 0) for x in r["cand_cats"]],
            }
        )
    return out


def score_str(p, r):
    return p.score(r["hist_items"], r["hist_cats"], r["cand_items"], r["cand_cats"], uid=r["uid"])


def score_idx(p, r, dtype=np.int64):
    a = lambda k: np.asarray(r[k], dtype=dtype)  # noqa: E731
    return p.score(a("hist_mid"), a("hist_cat"), a("cand_mid"), a("cand_cat"), uid=r["uid"])


@pytest.fixture(scope="module")
def setup(trained, data_dir):
    ckpt = trained[0]
    p = dien.Predictor.load(ckpt)
    vocab = json.loads(ckpt.with_name("m.vocab.json").read_text())
    reqs = requests_from(data_dir)
    return p, ckpt, reqs, as_indices(reqs, vocab)


def test_scores_equal_the_rust_api_bit_for_bit(setup, score_requests_bin, tmp_path):
    p, ckpt, reqs, idx = setup
    f = tmp_path / "requests.json"
    f.write_text(json.dumps(reqs + idx))
    out = subprocess.run([score_requests_bin, ckpt, f], capture_output=True, text=True, check=True).stdout
    rust = [np.array(json.loads(line), dtype=np.uint32) for line in out.splitlines()]
    assert len(rust) == 2 * len(reqs)
    py = [score_str(p, r) for r in reqs] + [score_idx(p, r) for r in idx]
    for i, (a, b) in enumerate(zip(py, rust)):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(bits(a), b, err_msg=f"request {i}")
    # Strings and indices take the same path.
    for r, q in zip(reqs, idx):
        np.testing.assert_array_equal(bits(score_str(p, r)), bits(score_idx(p, q)))


def test_index_dtypes_and_lists_give_the_same_scores(setup):
    p, _, _, idx = setup
    r = idx[3]
    want = bits(score_idx(p, r))
    for dt in (np.int32, np.uint32, np.uint64, np.int16):
        np.testing.assert_array_equal(bits(score_idx(p, r, dt)), want)
    got = p.score(r["hist_mid"], r["hist_cat"], r["cand_mid"], r["cand_cat"], uid=np.int64(r["uid"]))
    np.testing.assert_array_equal(bits(got), want)


def test_score_batch_equals_single_requests(setup):
    p, _, reqs, idx = setup
    single = [score_str(p, r) for r in reqs]
    got = p.score_batch(
        [r["hist_items"] for r in reqs],
        [r["hist_cats"] for r in reqs],
        [r["cand_items"] for r in reqs],
        [r["cand_cats"] for r in reqs],
        uids=[r["uid"] for r in reqs],
        threads=2,
    )
    assert len(got) == len(reqs)
    for a, b in zip(got, single):
        np.testing.assert_array_equal(bits(a), bits(b))
    a = lambda r, k: np.asarray(r[k])  # noqa: E731
    got = p.score_batch(
        [a(r, "hist_mid") for r in idx],
        [a(r, "hist_cat") for r in idx],
        [a(r, "cand_mid") for r in idx],
        [a(r, "cand_cat") for r in idx],
        uids=[r["uid"] for r in idx],
    )
    for x, y in zip(got, single):
        np.testing.assert_array_equal(bits(x), bits(y))
    with pytest.raises(ValueError, match=r"request 1: .*empty candidate list"):
        p.score_batch([[], []], [[], []], [["a"], []], [["b"], []])
    with pytest.raises(ValueError, match="`history_items` has 1 requests, `cand_items` has 2"):
        p.score_batch([[]], [[], []], [["a"], ["a"]], [["b"], ["b"]])


def test_four_threads_score_like_one(setup):
    p, _, reqs, idx = setup
    want = [bits(score_str(p, r)) for r in reqs] + [bits(score_idx(p, r)) for r in idx]
    results = [None] * 4
    errors = []

    def work(t):
        try:
            got = []
            for _ in range(5):
                got = [bits(score_str(p, r)) for r in reqs] + [bits(score_idx(p, r)) for r in idx]
            results[t] = got
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got in results:
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_the_predictor_of_a_model_scores_like_its_eval_forward(trained):
    m = dien.Model.load(trained[0], threads=1)
    p = m.predictor()
    assert not p.has_vocabs
    hist = np.array([3, 5, 5, 9], dtype=np.int64)
    hcat = np.array([1, 2, 2, 3], dtype=np.int64)
    cands = np.array([4, 7, 11], dtype=np.int64)
    ccat = np.array([1, 1, 2], dtype=np.int64)
    probs = p.score(hist, hcat, cands, ccat, uid=2)
    k = len(cands)
    b = dien.Batch(
        np.full(k, 2),
        cands,
        ccat,
        np.tile(hist, (k, 1)),
        np.tile(hcat, (k, 1)),
        np.full(k, len(hist)),
        np.zeros(k, dtype=np.float32),
    )
    logits, _ = m.forward(b)
    # The request path and the batch path round differently (docs/EMBEDDING.md).
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=2e-5)


def test_bad_requests_raise_value_error(setup, trained):
    p, _, reqs, idx = setup
    r = idx[0]
    h, hc = np.asarray(r["hist_mid"]), np.asarray(r["hist_cat"])
    c, cc = np.asarray(r["cand_mid"]), np.asarray(r["cand_cat"])
    n_mid = p.config["n_mid"]
    cases = [
        ((h, hc, c.astype(np.float64), cc), r"`cand_items` has dtype float64; expected an integer array"),
        ((h.astype(np.float32), hc, c, cc), r"`history_items` has dtype float32"),
        ((h, hc, c.reshape(1, -1), cc), r"`cand_items` must be a 1-D array of indices, got shape \(1, \d+\)"),
        ((h, hc, np.repeat(c, 2)[::2], cc), r"`cand_items` is not C-contiguous"),
        ((h, hc, c, cc[:-1]), r"`cand_cat` has \d+ entries, expected \d+ \(one category per candidate item\)"),
        ((h, hc, np.array([n_mid + 5]), cc[:1]), rf"`cand_mid`\[0\]: index {n_mid + 5} out of range \(the table has {n_mid} rows\)"),
        ((h, hc, np.array([-1]), cc[:1]), r"`cand_items`\[0\]: value -1 is not an index"),
        ((h, hc, np.array([], dtype=np.int64), cc[:0]), r"empty candidate list"),
        ((h, hc, [], []), r"empty candidate list"),
        ((h, hc, "abc", ["x"]), r"a single str"),
        ((h, hc, c, cc.astype(bool)), r"`cand_cats` has dtype bool"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            p.score(*args, uid=r["uid"])
    with pytest.raises(ValueError, match="`uid`: value -3 is not an index"):
        p.score(h, hc, c, cc, uid=-3)
    with pytest.raises(ValueError, match="`uid` must be an integer index, got str"):
        p.score(h, hc, c, cc, uid="u1")
    with pytest.raises(ValueError, match="`uid` must be a str id, got int"):
        p.score([], [], ["a"], ["b"], uid=3)
    with pytest.raises(ValueError, match="`history_items` must be a list of str ids"):
        p.score(h, hc, ["a"], ["b"])
    # A predictor without vocabularies scores by index only.
    q = dien.Model.load(trained[0]).predictor()
    with pytest.raises(ValueError, match="no vocabularies"):
        q.score([], [], ["a"], ["b"])
    with pytest.raises(FileNotFoundError, match="no-such.safetensors"):
        dien.Predictor.load(trained[0].with_name("no-such.safetensors"))
    # The predictor still works after every error.
    np.testing.assert_array_equal(bits(score_idx(p, r)), bits(score_str(p, reqs[0])))


def test_long_histories_keep_their_last_max_len(setup):
    p, _, _, idx = setup
    r = idx[0]
    n = p.max_len
    hist = np.arange(1, 3 * n + 1) % 50
    cats = np.arange(1, 3 * n + 1) % 5
    c, cc = np.asarray(r["cand_mid"]), np.asarray(r["cand_cat"])
    a = p.score(hist, cats, c, cc, uid=1)
    b = p.score(hist[-n:], cats[-n:], c, cc, uid=1)
    np.testing.assert_array_equal(bits(a), bits(b))
    t = p.rust_timings(hist, cats, c, cc, uid=1, repeats=5)
    assert t.shape == (5,) and np.all(t > 0)

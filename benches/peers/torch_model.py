"""The PyTorch peer as a trainer uses it: dien_torch.py's model with freshly
initialised parameters (the initialisers of docs/MODEL.md#tensors), batches
built from padded arrays, and one training or inference step. bench_torch.py
times these steps and train_torch.py trains with them, so that both measure
the same code.
"""

import math

import numpy as np
import torch

import dien_torch as dt

# The table sizes `dien bench` gives its model (crates/dien-trainer/src/commands/bench.rs).
BENCH_TABLES = (1000, 50_000, 800)


def config(model="dien", d=18, hidden=36, max_len=100, alpha_aux=1.0, variant="augru", att="mlp", aux="mlp"):
    """A dien_torch.Config with docs/MODEL.md's defaults unless told."""
    return dt.Config(
        {
            "model": model,
            "variant": variant,
            "att": att,
            "aux": aux,
            "d": d,
            "H": hidden,
            "max_len": max_len,
            "alpha_aux": 0.0 if model == "dien-noaux" else alpha_aux,
        }
    )


def tensor_shapes(cfg, n_uid, n_mid, n_cat):
    """(name, shape, initialiser) of every tensor of docs/MODEL.md#tensors, in
    the canonical order. Initialisers: ("normal", std), ("uniform", bound),
    ("glorot",), ("const", value), ("gru_bias",)."""
    d, e, h = cfg.d, cfg.e, cfg.hidden
    out = [(f"emb.{n}", (rows, d), ("normal", 0.01)) for n, rows in (("uid", n_uid), ("mid", n_mid), ("cat", n_cat))]

    def dense(prefix, n_out, n_in):
        out.append((f"{prefix}.w", (n_out, n_in), ("glorot",)))
        out.append((f"{prefix}.b", (n_out,), ("const", 0.0)))

    if cfg.has_grus():
        bound = math.sqrt(1.0 / h)
        for name, n_in in (("gru1", e), ("gru2", h)):
            out.append((f"{name}.w_ih", (3 * h, n_in), ("uniform", bound)))
            out.append((f"{name}.w_hh", (3 * h, h), ("uniform", bound)))
            out.append((f"{name}.b", (3 * h,), ("gru_bias",)))
    if cfg.model == "dien" and cfg.aux == "mlp":
        dense("aux.fc1", 100, h + e)
        dense("aux.fc2", 50, 100)
        dense("aux.fc3", 1, 50)
    a = h if cfg.has_grus() else e
    if cfg.model != "base":
        if cfg.att == "mlp":
            dense("att.q", a, e)
            out.append(("att.q.prelu", (a,), ("const", 0.1)))
            dense("att.fc1", 80, 4 * a)
            dense("att.fc2", 40, 80)
            dense("att.fc3", 1, 40)
        else:
            out.append(("att.w", (a, e), ("glorot",)))
    width = d + 3 * e + (h if cfg.has_grus() else e)
    out += [
        ("head.bn.gamma", (width,), ("const", 1.0)),
        ("head.bn.beta", (width,), ("const", 0.0)),
        ("head.bn.running_mean", (width,), ("const", 0.0)),
        ("head.bn.running_var", (width,), ("const", 1.0)),
    ]
    for k, (n_out, n_in) in enumerate(((200, width), (80, 200)), start=1):
        dense(f"head.fc{k}", n_out, n_in)
        out.append((f"head.dice{k}.alpha", (n_out,), ("const", 0.0)))
        out.append((f"head.dice{k}.running_mean", (n_out,), ("const", 0.0)))
        out.append((f"head.dice{k}.running_var", (n_out,), ("const", 1.0)))
    dense("head.fc3", 1, 80)
    return out


def init_params(cfg, n_uid, n_mid, n_cat, seed):
    """{name: float32 tensor} of a fresh model; trainable tensors require
    gradients. Same initialisers as the engine, not the same draws."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape, init in tensor_shapes(cfg, n_uid, n_mid, n_cat):
        t = torch.empty(shape, dtype=torch.float32)
        kind = init[0]
        if kind == "normal":
            t.normal_(0.0, init[1], generator=g)
        elif kind == "uniform":
            t.uniform_(-init[1], init[1], generator=g)
        elif kind == "glorot":
            bound = math.sqrt(6.0 / (shape[0] + shape[1]))
            t.uniform_(-bound, bound, generator=g)
        elif kind == "const":
            t.fill_(init[1])
        else:
            h = shape[0] // 3
            t.zero_()
            t[: 2 * h] = 1.0
        if not dt.is_buffer(name):
            t.requires_grad_(True)
        params[name] = t
    return params


def make_batch(uid, mid, cat, hist_mid, hist_cat, lengths, label, neg_mid=None, neg_cat=None, users=None):
    """A dien_torch.Batch from arrays: uid, mid, cat, lengths, label [B];
    hist_* and neg_* [B, T], zero beyond each length."""
    b = dt.Batch.__new__(dt.Batch)
    hist_mid = torch.as_tensor(np.asarray(hist_mid), dtype=torch.long)
    b.b, b.t = hist_mid.shape
    b.lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
    b.mask = torch.arange(b.t)[None, :] < b.lengths[:, None]
    b.uid = torch.as_tensor(np.asarray(uid), dtype=torch.long)
    b.mid = torch.as_tensor(np.asarray(mid), dtype=torch.long)
    b.cat = torch.as_tensor(np.asarray(cat), dtype=torch.long)
    b.hist_mid = hist_mid
    b.hist_cat = torch.as_tensor(np.asarray(hist_cat), dtype=torch.long)
    b.neg_mid = None if neg_mid is None else torch.as_tensor(np.asarray(neg_mid), dtype=torch.long)
    b.neg_cat = None if neg_cat is None else torch.as_tensor(np.asarray(neg_cat), dtype=torch.long)
    b.label = torch.as_tensor(np.asarray(label), dtype=torch.float64)
    b.users = users
    return b


def synthetic_batch(n_uid, n_mid, n_cat, b, t, negatives, seed=1):
    """A batch like `dien bench`'s: uniform random ids, every history `t`
    long, random labels, negatives when asked (same law, not the same draws)."""
    rng = np.random.default_rng(seed)
    return make_batch(
        rng.integers(0, n_uid, b),
        rng.integers(0, n_mid, b),
        rng.integers(0, n_cat, b),
        rng.integers(0, n_mid, (b, t)),
        rng.integers(0, n_cat, (b, t)),
        np.full(b, t),
        rng.integers(0, 2, b).astype(np.float64),
        rng.integers(0, n_mid, (b, t)) if negatives else None,
        rng.integers(0, n_cat, (b, t)) if negatives else None,
    )


def train_step(cfg, params, opt, batch, lr, forward=None):
    """Forward in training mode, backward, the optimiser step and the
    running statistics, as the engine's trainer takes a step. `forward`
    replaces dien_torch.forward (a compiled one). Returns the losses."""
    fwd = forward or (lambda p, b: dt.forward(cfg, p, b, train=True))
    out = fwd(params, batch)
    out["loss"].backward()
    opt.step(lr, batch.touched_rows(out["with_neg"]))
    dt.update_running_stats(params, out["stats"])
    return out


def infer_step(cfg, params, batch, forward=None):
    """Forward in evaluation mode without gradients; returns the logits."""
    fwd = forward or (lambda p, b: dt.forward(cfg, p, b, train=False))
    with torch.no_grad():
        return fwd(params, batch)["logits"]

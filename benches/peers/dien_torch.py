"""The DIEN models of docs/MODEL.md in PyTorch, written from the equations.

Parameters are a dict of tensors under the engine's tensor names (read from
its safetensors checkpoints); everything runs in float32 (as the engine) or
float64 (for debugging). What is here:

- reading and writing safetensors files (no extra package);
- ``Batch``: a batch of the batch-file format (docs/MODEL.md#batch-file);
- ``forward``: the models ``dien`` (every evolving variant, ``mlp`` or
  ``bilinear`` attention, ``mlp`` or ``dot`` auxiliary head), ``dien-noaux``,
  ``din`` and ``base``, in training mode (BatchNorm and Dice on batch
  statistics) or evaluation mode (running statistics), with the losses;
- ``update_running_stats`` and ``recalibrate`` (docs/MODEL.md#recalibration);
- ``Adam`` with lazy (or dense) embedding-row updates and ``Sgd``, following
  the engine's update rule element for element;
- the metrics: AUC (ties counted half), GAUC, logloss, accuracy.
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

EMB_TABLES = ("emb.uid", "emb.mid", "emb.cat")
BN_EPS = 1e-3
DICE_EPS = 1e-8
MOMENTUM = 0.01
NORM_LAYERS = ("head.bn", "head.dice1", "head.dice2")


# --- safetensors -----------------------------------------------------------

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        arr = np.frombuffer(raw[base + a : base + b], dtype=_DTYPES[h["dtype"]])
        out[name] = arr.reshape(h["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes {name: array} as float32 tensors with string metadata."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --- configuration and batches ---------------------------------------------


class Config:
    """The model settings, from a checkpoint's metadata or a manifest."""

    def __init__(self, m):
        self.model = m["model"]
        self.variant = m.get("variant", "augru")
        self.att = m.get("att", "mlp")
        self.aux = m.get("aux", "mlp")
        self.d = int(m["d"])
        self.hidden = int(m.get("H", m.get("hidden")))
        self.max_len = int(m["max_len"])
        self.alpha_aux = float(m["alpha_aux"])

    @property
    def e(self):
        return 2 * self.d

    def has_grus(self):
        return self.model in ("dien", "dien-noaux")

    def aux_weight(self):
        return 0.0 if self.model == "dien-noaux" else self.alpha_aux


class Batch:
    """A batch of the batch-file format, padded to T = its longest history."""

    def __init__(self, obj):
        hm = obj["hist_mid"]
        self.b = len(obj["uid"])
        self.t = max((len(h) for h in hm), default=0)
        lengths = [len(h) for h in hm]
        if "lengths" in obj and list(obj["lengths"]) != lengths:
            raise ValueError("`lengths` disagrees with the histories")
        self.lengths = torch.tensor(lengths, dtype=torch.long)
        self.mask = torch.arange(self.t)[None, :] < self.lengths[:, None]
        self.uid = torch.tensor(obj["uid"], dtype=torch.long)
        self.mid = torch.tensor(obj["mid"], dtype=torch.long)
        self.cat = torch.tensor(obj["cat"], dtype=torch.long)
        self.hist_mid = self._pad(hm)
        self.hist_cat = self._pad(obj["hist_cat"])
        self.neg_mid = self._pad(obj["neg_mid"]) if obj.get("neg_mid") is not None else None
        self.neg_cat = self._pad(obj["neg_cat"]) if obj.get("neg_cat") is not None else None
        self.label = torch.tensor(obj["label"], dtype=torch.float64)
        self.users = obj.get("users")

    def _pad(self, rows):
        out = torch.zeros((self.b, self.t), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out

    def has_negatives(self):
        return self.neg_mid is not None

    def touched_rows(self, with_neg):
        """Rows of emb.uid, emb.mid, emb.cat looked up at non-padded
        positions (negatives included when they are used)."""
        mids = [self.mid, self.hist_mid[self.mask]]
        cats = [self.cat, self.hist_cat[self.mask]]
        if with_neg:
            mids.append(self.neg_mid[self.mask])
            cats.append(self.neg_cat[self.mask])
        return {
            "emb.uid": torch.unique(self.uid),
            "emb.mid": torch.unique(torch.cat(mids)),
            "emb.cat": torch.unique(torch.cat(cats)),
        }


# --- parameters ------------------------------------------------------------


def is_buffer(name):
    return name.endswith(".running_mean") or name.endswith(".running_var")


def load_params(path, dtype=torch.float32):
    """(Config, {name: tensor}, metadata) of a checkpoint; trainable tensors
    require gradients."""
    arrays, meta = read_safetensors(path)
    params = {}
    for name, a in arrays.items():
        t = torch.from_numpy(a).to(dtype)
        if not is_buffer(name):
            t.requires_grad_(True)
        params[name] = t
    return Config(meta), params, meta


# --- the model -------------------------------------------------------------


def softplus(x):
    """max(x, 0) + log1p(exp(-|x|)), with no linear cut-off."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))


def linear(p, prefix, x):
    return x @ p[prefix + ".w"].T + p[prefix + ".b"]


def mlp3(p, prefix, x):
    """fc1 -> sigmoid -> fc2 -> sigmoid -> fc3, the last output squeezed."""
    h = torch.sigmoid(linear(p, prefix + ".fc1", x))
    h = torch.sigmoid(linear(p, prefix + ".fc2", h))
    return linear(p, prefix + ".fc3", h)[..., 0]


def gru(p, prefix, x, mask, hidden, kind="gru", att=None):
    """The GRU of docs/MODEL.md#gru (reset before the recurrent product)
    over x [B, T, in]; kind selects the evolving variant steered by att
    [B, T]. Padded steps keep the state. Returns (states [B, T, H], last)."""
    b, t, _ = x.shape
    w_ih, w_hh, bias = p[prefix + ".w_ih"], p[prefix + ".w_hh"], p[prefix + ".b"]
    hh = hidden
    if kind == "aigru":
        x = x * att[..., None]
    xi = x @ w_ih.T + bias
    h = torch.zeros((b, hh), dtype=x.dtype)
    states = []
    for s in range(t):
        g = xi[:, s]
        ru = h @ w_hh[: 2 * hh].T
        r = torch.sigmoid(g[:, :hh] + ru[:, :hh])
        u = torch.sigmoid(g[:, hh : 2 * hh] + ru[:, hh:])
        c = torch.tanh(g[:, 2 * hh :] + (r * h) @ w_hh[2 * hh :].T)
        if kind in ("gru", "aigru"):
            new = (1 - u) * h + u * c
        elif kind == "augru":
            ut = att[:, s : s + 1] * u
            new = (1 - ut) * h + ut * c
        elif kind == "augru-ref":
            k = (1 - att[:, s : s + 1]) * (1 - u)
            new = k * h + (1 - k) * c
        elif kind == "agru":
            a = att[:, s : s + 1]
            new = (1 - a) * h + a * c
        else:
            raise ValueError(f"unknown GRU kind {kind}")
        h = torch.where(mask[:, s : s + 1], new, h)
        states.append(h)
    st = torch.stack(states, 1) if states else torch.zeros((b, 0, hh), dtype=x.dtype)
    return st, h


def attention(cfg, p, e_a, keys, mask):
    """Masked softmax weights [B, T] of keys [B, T, A] against e_a
    (docs/MODEL.md#attention); all zero for an empty history."""
    if cfg.att == "mlp":
        pre = linear(p, "att.q", e_a)
        q = torch.where(pre > 0, pre, p["att.q.prelu"] * pre)
        qe = q[:, None, :].expand_as(keys)
        z = torch.cat([qe, keys, qe - keys, qe * keys], -1)
        scores = mlp3(p, "att", z)
    else:
        scores = torch.einsum("bth,he,be->bt", keys, p["att.w"], e_a)
    s = scores.masked_fill(~mask, float("-inf"))
    mx = s.max(1, keepdim=True).values if s.shape[1] else torch.zeros((s.shape[0], 1), dtype=s.dtype)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)).detach()
    ex = torch.exp(s - mx) * mask
    den = ex.sum(1, keepdim=True)
    return ex / torch.where(den > 0, den, torch.ones_like(den))


def column_stats(x):
    """Mean and biased variance of each column, accumulated in float64 and
    returned in x's dtype (the engine's rule); differentiable."""
    x64 = x.to(torch.float64)
    mean = x64.mean(0)
    var = ((x64 - mean) ** 2).mean(0)
    return mean.to(x.dtype), var.to(x.dtype)


def normalise(x, mean, var, eps):
    inv_std = 1.0 / torch.sqrt(var + eps)
    return (x - mean) * inv_std


def head(p, x, train):
    """BatchNorm -> fc1 -> Dice -> fc2 -> Dice -> fc3; returns the logits,
    the statistics used (name -> (mean, var)) and the Dice inputs."""
    stats = {}

    def norm(name, v, eps):
        if train:
            mean, var = column_stats(v)
        else:
            mean, var = p[name + ".running_mean"], p[name + ".running_var"]
        stats[name] = (mean.detach(), var.detach())
        return normalise(v, mean, var, eps)

    y = torch.addcmul(p["head.bn.beta"], p["head.bn.gamma"], norm("head.bn", x, BN_EPS))
    z1 = linear(p, "head.fc1", y)
    a1 = p["head.dice1.alpha"]
    y1 = z1 * (a1 + torch.sigmoid(norm("head.dice1", z1, DICE_EPS)) * (1 - a1))
    z2 = linear(p, "head.fc2", y1)
    a2 = p["head.dice2.alpha"]
    y2 = z2 * (a2 + torch.sigmoid(norm("head.dice2", z2, DICE_EPS)) * (1 - a2))
    return linear(p, "head.fc3", y2)[:, 0], stats, (z1, z2)


def forward(cfg, p, batch, train):
    """One pass over batch. Returns a dict with logits [B], loss,
    loss_target, loss_aux (float64 scalars), head_input [B, D], the
    normalisation statistics used and whether negatives were used."""
    d, e = cfg.d, cfg.e
    mask = batch.mask
    m3 = mask[..., None]

    # F.embedding, not indexing: the backward of indexing accumulates rows
    # in parallel in no fixed order on the CPU, so that a replay would not
    # repeat itself bit for bit.
    def item(mids, cats):
        return torch.cat([F.embedding(mids, p["emb.mid"]), F.embedding(cats, p["emb.cat"])], -1)

    u = F.embedding(batch.uid, p["emb.uid"])
    e_a = item(batch.mid, batch.cat)
    e_hist = item(batch.hist_mid, batch.hist_cat) * m3
    s = e_hist.sum(1)
    with_neg = cfg.model == "dien" and batch.has_negatives()
    loss_aux = torch.zeros((), dtype=torch.float64)
    if cfg.has_grus():
        h, _ = gru(p, "gru1", e_hist, mask, cfg.hidden)
        if with_neg:
            e_neg = item(batch.neg_mid, batch.neg_cat) * m3
            loss_aux = aux_loss(cfg, p, h, e_hist, e_neg, batch.lengths, mask)
        variant = cfg.variant
        if variant == "gru_att":
            h2, _ = gru(p, "gru2", h, mask, cfg.hidden)
            a = attention(cfg, p, e_a, h2, mask)
            interest = (a[..., None] * h2).sum(1)
        else:
            a = attention(cfg, p, e_a, h, mask)
            _, interest = gru(p, "gru2", h, mask, cfg.hidden, kind=variant, att=a)
    elif cfg.model == "din":
        a = attention(cfg, p, e_a, e_hist, mask)
        interest = (a[..., None] * e_hist).sum(1)
    elif cfg.model == "base":
        interest = s
    else:
        raise ValueError(f"unknown model {cfg.model}")
    x = torch.cat([u, e_a, s, e_a * s, interest], -1)
    logits, stats, _ = head(p, x, train)
    z = logits.to(torch.float64)
    y = batch.label
    loss_target = (y * softplus(-z) + (1 - y) * softplus(z)).mean()
    loss = loss_target + cfg.aux_weight() * loss_aux
    return {
        "logits": logits,
        "loss": loss,
        "loss_target": loss_target,
        "loss_aux": loss_aux,
        "head_input": x,
        "stats": stats,
        "with_neg": with_neg,
    }


def aux_loss(cfg, p, h, e_hist, e_neg, lengths, mask):
    """L_aux of docs/MODEL.md#auxiliary-loss (float64 scalar)."""
    n = int(torch.clamp(lengths - 1, min=0).sum())
    if n == 0:
        return torch.zeros((), dtype=torch.float64)
    valid = mask[:, 1:]  # t + 1 < L
    hs = h[:, :-1][valid]
    pos, neg = e_hist[:, 1:][valid], e_neg[:, 1:][valid]
    if cfg.aux == "dot":
        pp, pn = (hs * pos).sum(-1), (hs * neg).sum(-1)
    else:
        pp = mlp3(p, "aux", torch.cat([hs, pos], -1))
        pn = mlp3(p, "aux", torch.cat([hs, neg], -1))
    terms = softplus(-pp.to(torch.float64)) + softplus(pn.to(torch.float64))
    return terms.sum() / n


@torch.no_grad()
def update_running_stats(p, stats):
    """running = 0.99 * running + 0.01 * batch statistic, in place."""
    if p["head.bn.running_mean"].dtype == torch.float32:
        # The engine's f32 constants: 0.01 and 1 - 0.01 rounded to f32.
        w = np.float32(MOMENTUM)
        keep, w = float(np.float32(np.float32(1.0) - w)), float(w)
    else:
        keep, w = 1.0 - MOMENTUM, MOMENTUM
    for name in NORM_LAYERS:
        mean, var = stats[name]
        for buf, v in ((p[name + ".running_mean"], mean), (p[name + ".running_var"], var)):
            buf.copy_(buf * keep + w * v)


@torch.no_grad()
def recalibrate(p, head_inputs):
    """Sets the BatchNorm statistics, then each Dice layer's, to the exact
    mean and biased variance of its input over head_inputs [n, D], the
    network in evaluation mode (docs/MODEL.md#recalibration)."""
    x = head_inputs
    mean, var = column_stats(x)
    p["head.bn.running_mean"].copy_(mean)
    p["head.bn.running_var"].copy_(var)
    for k, name in ((0, "head.dice1"), (1, "head.dice2")):
        _, _, zs = head(p, x, train=False)
        mean, var = column_stats(zs[k])
        p[name + ".running_mean"].copy_(mean)
        p[name + ".running_var"].copy_(var)


# --- optimisers ------------------------------------------------------------


class Adam:
    """Adam as the engine applies it: one global step count t for the bias
    corrections, m <- b1*m + (1-b1)*g, v <- b2*v + (1-b2)*g*g,
    p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps), the constants
    rounded to the parameters' precision as the engine rounds them.
    Embedding rows move only where looked up (lazy), or every row (dense)."""

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, lazy=True, clip_norm=None):
        self.p = params
        self.names = [n for n, t in params.items() if t.requires_grad]
        self.m = {n: torch.zeros_like(params[n], requires_grad=False) for n in self.names}
        self.v = {n: torch.zeros_like(params[n], requires_grad=False) for n in self.names}
        # The hyperparameters are f32 settings; their f64 widening enters
        # the bias corrections, as in the engine.
        self.b1, self.b2, self.eps = (float(np.float32(x)) for x in (beta1, beta2, eps))
        self.lazy, self.clip_norm, self.t = lazy, clip_norm, 0

    def _round(self, x):
        dtype = next(iter(self.p.values())).dtype
        return float(np.float32(x)) if dtype == torch.float32 else float(x)

    @torch.no_grad()
    def step(self, lr, touched):
        self.t += 1
        grads = {n: (self.p[n].grad if self.p[n].grad is not None else torch.zeros_like(self.p[n])) for n in self.names}
        scale = clip_scale(grads, touched, self.clip_norm)
        lr64 = float(np.float32(lr))
        bc1 = 1.0 - self.b1**self.t
        bc2 = 1.0 - self.b2**self.t
        step_size = self._round(lr64 / bc1)
        inv_sqrt_bc2 = self._round(1.0 / math.sqrt(bc2))
        c1, c2 = self._round(1.0 - self.b1), self._round(1.0 - self.b2)
        b1, b2, eps = self._round(self.b1), self._round(self.b2), self._round(self.eps)
        for n in self.names:
            p, m, v, g = self.p[n], self.m[n], self.v[n], grads[n]
            if scale != 1.0:
                g = g * scale
            if n in EMB_TABLES and self.lazy:
                rows = touched[n]
                p_r, m_r, v_r, g_r = p[rows], m[rows], v[rows], g[rows]
                m_r = b1 * m_r + c1 * g_r
                v_r = b2 * v_r + c2 * (g_r * g_r)
                p_r = p_r - step_size * (m_r / (torch.sqrt(v_r) * inv_sqrt_bc2 + eps))
                p[rows], m[rows], v[rows] = p_r, m_r, v_r
            else:
                m.copy_(b1 * m + c1 * g)
                v.copy_(b2 * v + c2 * (g * g))
                p.sub_(step_size * (m / (torch.sqrt(v) * inv_sqrt_bc2 + eps)))
            p.grad = None


class Sgd:
    """p <- p - lr * g; embedding rows move only where looked up."""

    def __init__(self, params, clip_norm=None):
        self.p = params
        self.names = [n for n, t in params.items() if t.requires_grad]
        self.clip_norm = clip_norm

    @torch.no_grad()
    def step(self, lr, touched):
        grads = {n: (self.p[n].grad if self.p[n].grad is not None else torch.zeros_like(self.p[n])) for n in self.names}
        scale = clip_scale(grads, touched, self.clip_norm)
        for n in self.names:
            g = grads[n] * scale if scale != 1.0 else grads[n]
            if n in EMB_TABLES:
                rows = touched[n]
                self.p[n][rows] -= lr * g[rows]
            else:
                self.p[n].sub_(lr * g)
            self.p[n].grad = None


def clip_scale(grads, touched, clip_norm):
    """The factor of global-norm clipping (1 without it): the norm is taken
    over the dense gradients and the looked-up embedding rows, in float64."""
    if clip_norm is None:
        return 1.0
    ss = 0.0
    for n, g in grads.items():
        gg = g[touched[n]] if n in EMB_TABLES else g
        ss += float((gg.to(torch.float64) ** 2).sum())
    norm = math.sqrt(ss)
    return float(np.float32(clip_norm / norm)) if norm > clip_norm else 1.0


# --- metrics ---------------------------------------------------------------


def _pair_counts(scores, positive):
    """(twice the correctly ordered pairs, ties counting one; positives;
    negatives) with scores sorted ascending in tied groups."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], positive[order]
    twice, pos, neg = 0, 0, 0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        p = int(y[i:j].sum())
        n = (j - i) - p
        twice += 2 * p * neg + p * n
        pos += p
        neg += n
        i = j
    return twice, pos, neg


def auc(scores, labels):
    """AUC with ties counted half; None when a class is absent."""
    twice, pos, neg = _pair_counts(np.asarray(scores, np.float64), np.asarray(labels) == 1)
    return None if pos == 0 or neg == 0 else twice / (2.0 * pos * neg)


def gauc(users, scores, labels):
    """Per-user AUC weighted by the user's number of samples; users with a
    single class are skipped; users taken in order of first appearance."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    groups = {}
    for i, u in enumerate(users):
        groups.setdefault(u, []).append(i)
    weighted, weight = 0.0, 0
    for idx in groups.values():
        a = auc(scores[idx], labels[idx])
        if a is not None:
            weighted += a * len(idx)
            weight += len(idx)
    return weighted / weight if weight else None


def logloss(logits, labels):
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels) == 1
    terms = np.where(y, np.maximum(-z, 0) + np.log1p(np.exp(-np.abs(z))), np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))))
    return float(np.cumsum(terms)[-1] / len(z)) if len(z) else None


def accuracy(logits, labels):
    z = np.asarray(logits, np.float64)
    return float(np.mean((z > 0) == (np.asarray(labels) == 1))) if len(z) else None


def metrics(users, logits, labels):
    return {
        "auc": auc(logits, labels),
        "gauc": gauc(users, logits, labels),
        "logloss": logloss(logits, labels),
        "accuracy": accuracy(logits, labels),
        "samples": len(logits),
    }

"""deepctr-torch's DIEN at the configuration closest to docs/MODEL.md's
defaults, for timing against the engine (README.md, "deepctr-torch").

The settings chosen (everything else is deepctr-torch's default):

- embeddings of width d = 18 for the user, the item and the category; the
  history and negative columns share the item and category tables, so the
  item width is E = 36 and both GRUs are 36 wide (deepctr-torch ties the
  hidden width to E; ours is H = 36);
- ``gru_type="AUGRU"``; the auxiliary loss (``use_negsampling=True``,
  ``alpha=1.0``) in training, no negatives in inference;
- attention MLP 80 -> 40 -> 1 with sigmoid, softmax weights
  (``att_weight_normalization=True``);
- head MLP 200 -> 80 with Dice, then 80 -> 1; no L2 regularisation and no
  dropout (the engine has neither).

deepctr-torch 0.3.0 cannot run that head as it is: its ``DNN`` builds Dice
layers for 3-D inputs (``dice_dim=3``) and the head's input is 2-D, so the
first forward fails an assertion. ``build`` replaces the head's two Dice
layers with deepctr-torch's own Dice for 2-D inputs (same parameters).

Importing deepctr_torch starts a thread that asks PyPI for a newer version;
``import_deepctr`` switches that check off, so that a measurement makes no
network request.
"""

import argparse
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

VERSION = "0.3.0"


def import_deepctr():
    """(SparseFeat, VarLenSparseFeat, DIEN, Dice), without the version check."""
    if "deepctr_torch" not in sys.modules:
        stub = types.ModuleType("deepctr_torch.utils")
        stub.check_version = lambda version: None
        sys.modules["deepctr_torch.utils"] = stub
    try:
        import deepctr_torch
        from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
        from deepctr_torch.layers.activation import Dice
        from deepctr_torch.models import DIEN
    except ImportError as e:
        raise SystemExit(f"deepctr-torch is not installed ({e}): run benches/peers/setup.sh") from e
    if deepctr_torch.__version__ != VERSION:
        print(f"note: deepctr-torch {deepctr_torch.__version__}, the settings were chosen for {VERSION}", file=sys.stderr)
    return SparseFeat, VarLenSparseFeat, DIEN, Dice


def build(n_uid, n_mid, n_cat, seqlen, negatives, d=18, seed=1024):
    """deepctr-torch's DIEN for histories of `seqlen`, with the negative
    columns (and the auxiliary loss) when `negatives`."""
    SparseFeat, VarLenSparseFeat, DIEN, Dice = import_deepctr()

    def hist(name, vocab, table):
        return VarLenSparseFeat(SparseFeat(name, vocab, d, embedding_name=table), seqlen, length_name="seq_length")

    columns = [SparseFeat("user", n_uid, d), SparseFeat("mid", n_mid, d), SparseFeat("cat", n_cat, d)]
    columns += [hist("hist_mid", n_mid, "mid"), hist("hist_cat", n_cat, "cat")]
    if negatives:
        columns += [hist("neg_hist_mid", n_mid, "mid"), hist("neg_hist_cat", n_cat, "cat")]
    model = DIEN(
        columns,
        ["mid", "cat"],
        gru_type="AUGRU",
        use_negsampling=negatives,
        alpha=1.0,
        use_bn=False,
        dnn_hidden_units=(200, 80),
        dnn_activation="dice",
        att_hidden_units=(80, 40),
        att_activation="sigmoid",
        att_weight_normalization=True,
        l2_reg_dnn=0,
        l2_reg_embedding=0,
        dnn_dropout=0,
        seed=seed,
        device="cpu",
    )
    layers = model.dnn.activation_layers
    for i, layer in enumerate(layers):
        if isinstance(layer, Dice) and layer.dim != 2:
            layers[i] = Dice(layer.alpha.numel(), dim=2)
    return model


def pack_input(model, arrays):
    """The float input matrix deepctr-torch's models read (columns in the
    order of ``model.feature_index``) from a dict of integer arrays: user,
    mid, cat [B]; hist_mid, hist_cat (and neg_hist_mid, neg_hist_cat) [B, T];
    seq_length [B]."""
    cols = []
    for name in model.feature_index:
        if name not in arrays:
            raise ValueError(f"the model reads a column `{name}` that the batch does not have")
        a = np.asarray(arrays[name])
        cols.append(a[:, None] if a.ndim == 1 else a)
    return torch.from_numpy(np.concatenate(cols, axis=1).astype(np.float32))


class Trainer:
    """One training step as deepctr-torch's ``BaseModel.fit`` takes it for a
    batch (without its per-step metrics and progress bar): forward, the
    summed binary cross-entropy plus the regularisation and auxiliary
    losses, backward, ``torch.optim.Adam`` (lr 0.001, as ``compile("adam")``)."""

    def __init__(self, model):
        self.model = model.train()
        self.optim = torch.optim.Adam(model.parameters())

    def step(self, x, y):
        y_pred = self.model(x).squeeze(-1)
        self.optim.zero_grad()
        loss = F.binary_cross_entropy(y_pred, y, reduction="sum")
        total = loss + self.model.get_regularization_loss() + self.model.aux_loss
        total.backward()
        self.optim.step()
        return total.item()


def infer(model, x):
    """Scores in evaluation mode, as ``BaseModel.predict`` does per batch."""
    with torch.no_grad():
        return model(x)


def synthetic(n_uid, n_mid, n_cat, b, t, negatives, seed=1):
    """Random ids of a batch whose histories are all `t` long, and labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        "user": rng.integers(0, n_uid, b),
        "mid": rng.integers(0, n_mid, b),
        "cat": rng.integers(0, n_cat, b),
        "hist_mid": rng.integers(0, n_mid, (b, t)),
        "hist_cat": rng.integers(0, n_cat, (b, t)),
        "seq_length": np.full(b, t),
    }
    if negatives:
        arrays["neg_hist_mid"] = rng.integers(0, n_mid, (b, t))
        arrays["neg_hist_cat"] = rng.integers(0, n_cat, (b, t))
    labels = torch.from_numpy(rng.integers(0, 2, b).astype(np.float32))
    return arrays, labels


def check():
    """A training step and an inference pass at a tiny size; exits non-zero
    when either fails or gives a non-finite value."""
    torch.set_num_threads(1)
    sizes = (50, 200, 20)
    model = build(*sizes, seqlen=5, negatives=True)
    arrays, y = synthetic(*sizes, b=4, t=5, negatives=True)
    x = pack_input(model, arrays)
    trainer = Trainer(model)
    losses = [trainer.step(x, y) for _ in range(2)]
    if not all(np.isfinite(losses)) or model.aux_loss.item() <= 0:
        raise SystemExit(f"deepctr-torch DIEN: bad training losses {losses} (aux {model.aux_loss.item()})")
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        raise SystemExit("deepctr-torch DIEN: the backward pass left no gradient")
    model = build(*sizes, seqlen=5, negatives=False).eval()
    arrays, _ = synthetic(*sizes, b=4, t=5, negatives=False)
    p = infer(model, pack_input(model, arrays))
    if p.shape != (4, 1) or not torch.all((p > 0) & (p < 1)):
        raise SystemExit(f"deepctr-torch DIEN: bad predictions {p.flatten().tolist()}")
    print(f"deepctr-torch DIEN: training losses {losses[0]:.4f}, {losses[1]:.4f}; {len(grads)} gradients; predictions ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="train two steps and score once at a tiny size")
    a = ap.parse_args()
    if not a.check:
        ap.error("nothing to do: give --check (the timing is bench_torch.py's)")
    check()


if __name__ == "__main__":
    main()

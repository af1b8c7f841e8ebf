"""Quickstart of the dien Python package: generate a synthetic data set,
train DIEN on it (choosing the best checkpoint on held-out training users),
evaluate, score one request by string ids, and plot the training curve
(when matplotlib is installed).

    pip install ./crates/dien-py          # from the root of the repository
    python examples/python/quickstart.py  # about a minute on two cores

Options: --out DIR keeps the data, checkpoint and plot in DIR (default: a
temporary folder, removed at the end); --users N sizes the data set
(default 3000, or $DIEN_QUICKSTART_USERS); --no-plot skips the plot.
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

import dien


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="folder to keep the results in")
    ap.add_argument("--users", type=int, default=int(os.environ.get("DIEN_QUICKSTART_USERS", "3000")))
    ap.add_argument("--no-plot", action="store_true", help="do not plot the training curve")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="dien-quickstart-"))
    try:
        run(out, args.users, plot=not args.no_plot)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


def run(out: Path, users: int, plot: bool) -> None:
    print(f"dien {dien.__version__} [{dien.simd_target()}]")

    # 1. A synthetic data set in the reference layout (docs/DATA.md).
    data = out / "data"
    summary = dien.generate(data, seed=1, users=users, items=1000, categories=20, min_history=5, max_history=30)
    print(f"generated {summary['train_samples']} training and {summary['test_samples']} test samples")

    # 2. Train DIEN on 90% of the training users; the other 10% are the
    # validation set that chooses the best checkpoint. on_step receives
    # every log record as a dict.
    records = []

    def on_step(r):
        records.append(r)
        if r["kind"] == "eval":
            print(f"  step {r['step']:>4}  validation auc {r['valid']['auc']:.4f}")

    ckpt = out / "dien.safetensors"
    result = dien.train(
        data, "dien", out=ckpt, epochs=1, seed=1, on_step=on_step, batch=64, max_len=30, log_every=5, eval_every=20
    )
    print(f"test auc {result['auc']:.4f}  gauc {result['gauc']:.4f}  logloss {result['logloss']:.4f}")
    best = result["best"]
    print(f"best checkpoint (step {best['step']}): test auc {best['test']['auc']:.4f}")
    print("evaluate:", {k: round(v, 4) for k, v in dien.evaluate(ckpt, data).items() if isinstance(v, float)})

    # 3. Score one user's candidates by string id (the checkpoint's vocabularies).
    predictor = dien.Predictor.load(ckpt)
    line = (data / "local_test_splitByUser").read_text().splitlines()[0].split("\t")
    _, user, item, cat, hist_items, hist_cats = line
    items = [l.split("\t") for l in (data / "item-info").read_text().splitlines()[:5]]
    cand_items = [item] + [i for i, _ in items]
    cand_cats = [cat] + [c for _, c in items]
    p = predictor.score(hist_items.split("\x02"), hist_cats.split("\x02"), cand_items, cand_cats, uid=user)
    print(f"scores of user {user}'s candidates: {np.round(p, 4).tolist()}")

    # 4. The training curve.
    if not plot:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot([r["step"] for r in train], [r["train_loss"] for r in train])
    ax[0].set(xlabel="step", ylabel="training loss")
    ax[1].plot([r["step"] for r in evals], [r["valid"]["auc"] for r in evals], marker="o")
    ax[1].set(xlabel="step", ylabel="validation AUC")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=100)
    print(f"wrote {out / 'curve.png'}")


if __name__ == "__main__":
    main()

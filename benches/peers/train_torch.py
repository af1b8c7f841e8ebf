"""Trains dien_torch.py's model on a data directory as `dien train` does and
prints its final metrics as one JSON line (the last line of standard
output), so that the two can be timed process against process.

The same settings as `dien train` by default (docs/MODEL.md#training): d =
18, H = 36, AUGRU, mlp attention and auxiliary head, α_aux = 1; Adam with
lr 0.001 halved after each epoch and lazy embedding-row updates (dien_torch's
Adam, the engine's update rule); batch 128; histories cut to their last 100
behaviours; the reference batching; one negative per history step; 10% of
the training users held out for validation (the engine's split of the
users); at the end of every epoch the BatchNorm and Dice statistics
recalibrated on about 20,000 training samples, then the validation users
scored, and the test file at the end; the best model by validation AUC
(`--select test`: by test AUC, scored at every evaluation). Not the same:
the initial draws and the negatives (torch_data.py says which parts match).

    train_torch.py --data DIR [--epochs 1] [--threads N] [--valid-frac 0.1]
                   [--select valid|test] [--max-steps N] [--seed 2018]
"""

import argparse
import json
import sys
import time

import numpy as np
import torch

import dien_torch as dt
import torch_data as td
import torch_model as tm


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data directory in the reference layout")
    ap.add_argument("--model", default="dien", choices=["dien", "dien-noaux", "din", "base"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--valid-frac", type=float, default=0.1)
    ap.add_argument("--select", choices=["valid", "test"], default="valid")
    ap.add_argument("--recal-samples", type=int, default=20_000)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after N steps in total")
    a = ap.parse_args(argv)
    for name in ("epochs", "batch", "max_len", "recal_samples"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.max_steps is not None and a.max_steps < 1:
        ap.error("--max-steps must be at least 1")
    if a.threads is not None and a.threads < 1:
        ap.error("--threads must be at least 1")
    if not 0 <= a.valid_frac < 1:
        ap.error("--valid-frac must be at least 0 and below 1")
    if a.select == "valid" and a.valid_frac == 0:
        ap.error("--select valid needs validation users: give --valid-frac above 0, or --select test")
    return a


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Run:
    """The data, the model and the settings of one training run."""

    def __init__(self, a):
        self.a = a
        vocabs = td.load_vocabs(a.data)
        self.sampler = td.NegativeSampler(a.data, vocabs) if a.model == "dien" else None
        self.train = td.read_samples(f"{a.data}/{td.TRAIN_FILE}", vocabs)
        self.test = td.read_samples(f"{a.data}/{td.TEST_FILE}", vocabs)
        self.split = td.split_counts(self.train, a.seed, a.valid_frac)
        if self.split["train_lines"] == 0:
            raise SystemExit(f"{a.data}: no training line is left (valid-frac {a.valid_frac})")
        if a.valid_frac > 0 and self.split["valid_lines"] == 0:
            raise SystemExit(f"{a.data}: --valid-frac {a.valid_frac} held out no user")
        held = {s.raw_uid: td.held_out(a.seed, a.valid_frac, s.raw_uid) for s in self.train if s is not None}
        self.is_train = lambda s: not held[s.raw_uid]
        self.is_valid = lambda s: held[s.raw_uid]
        self.cfg = tm.config(a.model, max_len=a.max_len)
        sizes = [v.size for v in vocabs]
        self.params = tm.init_params(self.cfg, *sizes, seed=a.seed)
        self.opt = dt.Adam(self.params)

    def batches(self, samples, keep=None, negatives=False, epoch=0):
        sampler = self.sampler if negatives else None
        return td.batches(samples, self.a.batch, self.a.max_len, keep, sampler, self.a.seed, epoch)

    def recalibrate(self, params):
        """BatchNorm, then Dice statistics over a seeded sample of whole
        training batches holding about --recal-samples samples."""
        lines, want = self.split["train_lines"], self.a.recal_samples
        p = 1.0 if lines <= want else min(1.1 * want / lines, 1.0)
        rng = np.random.default_rng([self.a.seed, 0x7ECA11B7])
        xs = []
        with torch.no_grad():
            for b, _ in self.batches(self.train, self.is_train):
                if p < 1.0 and rng.random() >= p:
                    continue
                xs.append(dt.forward(self.cfg, params, b, train=False)["head_input"])
        if xs:
            dt.recalibrate(params, torch.cat(xs))

    def score(self, params, samples, keep=None):
        users, logits, labels = [], [], []
        with torch.no_grad():
            for b, uids in self.batches(samples, keep):
                logits.extend(dt.forward(self.cfg, params, b, train=False)["logits"].to(torch.float64).tolist())
                users.extend(uids)
                labels.extend(b.label.tolist())
        return dt.metrics(users, logits, labels)


def train(a):
    start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    run = Run(a)
    log(f"split: {run.split}")
    step, seen, best, best_params, last = 0, 0, None, None, None
    lr0 = np.float32(a.lr)
    for epoch in range(a.epochs):
        lr = float(np.float32(lr0 * np.float32(0.5) ** epoch))
        losses = []
        stream = run.batches(run.train, run.is_train, negatives=run.sampler is not None, epoch=epoch)
        batch = next(stream, None)
        stop = False
        while batch is not None:
            b, _ = batch
            out = tm.train_step(run.cfg, run.params, run.opt, b, lr)
            losses.append(out["loss"].item())
            step, seen = step + 1, seen + b.b
            batch = next(stream, None)
            stop = a.max_steps is not None and step >= a.max_steps
            if stop or batch is None:
                break
        final = stop or epoch + 1 == a.epochs
        run.recalibrate(run.params)
        valid = run.score(run.params, run.train, run.is_valid) if a.valid_frac > 0 else None
        test = run.score(run.params, run.test) if a.select == "test" or final else None
        auc = (valid if a.select == "valid" else test)["auc"]
        if auc is not None and (best is None or auc > best["auc"]):
            best = {"auc": auc, "step": step, "epoch": epoch, "valid_auc": valid and valid["auc"]}
            best_params = {k: v.detach().clone() for k, v in run.params.items()}
        last = {"valid": valid, "test": test, "step": step}
        log(
            f"epoch {epoch}: {step} steps, mean loss {np.mean(losses):.4f}, "
            f"valid auc {valid and valid['auc']}, test auc {test and test['auc']}, {time.perf_counter() - start:.1f} s"
        )
        if stop:
            break
    best_test = None
    if best is not None:
        best_test = last["test"] if best["step"] == last["step"] else run.score(best_params, run.test)
    summary = dict(last["test"])
    summary.update(
        impl="torch-eager",
        model=a.model,
        valid=last["valid"],
        select=a.select,
        best_auc=best and best["auc"],
        best=best and {"step": best["step"], "epoch": best["epoch"], "valid_auc": best["valid_auc"], "test": best_test},
        split=run.split,
        steps=step,
        train_samples=seen,
        epochs=a.epochs,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        seconds=time.perf_counter() - start,
    )
    return summary


def main(argv=None):
    a = parse_args(argv)
    print(json.dumps(train(a)), flush=True)


if __name__ == "__main__":
    main()

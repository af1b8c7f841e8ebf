#!/usr/bin/env python3
"""Compares the PyTorch gradients of one batch with the engine's.

    dien grads --checkpoint C --batch-file J --out G.safetensors [--f64]
    python grads.py --checkpoint C --batch-file J --rust G.safetensors [--dtype float64]

Runs the checkpoint C on the batch J (a batch file, or a line of an
export's steps.jsonl saved on its own) in training mode and prints, per
tensor, ||a - b|| / ||a|| with a the engine's gradient, then the losses
and logits of both. parity.py --dump-before STEP writes C and J for a step
of a replay.
"""

import argparse
import json

import numpy as np
import torch

import dien_torch as dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--batch-file", required=True)
    ap.add_argument("--rust", required=True, help="the output of dien grads")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = ap.parse_args()
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    cfg, params, _ = dt.load_params(args.checkpoint, dtype)
    with open(args.batch_file) as f:
        batch = dt.Batch(json.load(f))
    out = dt.forward(cfg, params, batch, train=True)
    out["loss"].backward()
    ref, _ = dt.read_safetensors(args.rust)
    worst = 0.0
    print(f"{'tensor':28s} {'||grad||':>12s} {'rel diff':>10s}")
    for name, t in params.items():
        if dt.is_buffer(name):
            continue
        a = ref["grad." + name].astype(np.float64)
        b = t.grad.to(torch.float64).numpy() if t.grad is not None else np.zeros_like(a)
        na = float(np.linalg.norm(a))
        r = float(np.linalg.norm(a - b) / na) if na > 0 else float(np.linalg.norm(b))
        worst = max(worst, r) if name != "att.fc3.b" else worst
        print(f"{name:28s} {na:12.4e} {r:10.2e}")
    for key in ("loss", "loss_target", "loss_aux"):
        print(f"{key:12s} dien {float(ref[key][0]):.9f}  torch {float(out[key].detach()):.9f}")
    z = out["logits"].detach().to(torch.float64).numpy()
    print(f"logits: max |difference| {float(np.max(np.abs(z - ref['logits']))):.3e}")
    # att.fc3.b shifts every score of a softmax equally: its gradient is
    # zero but for rounding, so its relative difference says nothing.
    print(f"largest relative difference (but att.fc3.b): {worst:.3e}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Relative difference ||a - b|| / ||a|| of two checkpoints, per tensor and
over all trainable tensors (with and without the attention tensors).

    python compare.py A.safetensors B.safetensors

For example the engine's parameters after an epoch against a replay's
(parity.py --save-params), or two replays against each other.
"""

import sys

import torch

import dien_torch as dt
from parity import tensor_diffs


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    _, b, _ = dt.load_params(sys.argv[2], torch.float64)
    d = tensor_diffs(b, sys.argv[1])
    for name, v in d["tensors"].items():
        print(f"{name:28s} {v:10.3e}")
    print(f"trainable {d['trainable']:.3e}  trainable but att.* {d['trainable_but_attention']:.3e}  running statistics {d['buffers']:.3e}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What the Python layer costs over the Rust engine.

(a) Scoring one request with one candidate (K = 1, history T): the time of
    `Predictor.score` called from Python (timeit), against the same request
    timed inside Rust (`Predictor.rust_timings`) and against
    `dien bench --mode score --candidates 1 --threads 1` (p50). The
    difference is the per-call overhead of the binding (argument checks,
    array conversion, releasing the GIL, the output array).
(b) Batched inference at B = 128, T = 100: samples per second of
    `Model.forward` on a `Batch` (and of building the `Batch` from NumPy
    arrays plus the forward), against `dien bench --mode infer --batch 128
    --seqlen 100` on the same number of threads.

Both use the configuration of `dien bench` (d = 18, H = 36, tables of
1000 users, 50,000 items, 800 categories, parameters from seed 1). Measure
on an idle machine; `--quick` only checks that the script runs.

    python scripts/python-bench.py [--dien target/release/dien] [--threads N]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import timeit
from pathlib import Path

import numpy as np

import dien

REPO = Path(__file__).resolve().parents[1]


def bench_config(t: int) -> dict:
    """The model `dien bench` times."""
    return {"model": "dien", "n_uid": 1000, "n_mid": 50_000, "n_cat": 800, "max_len": max(t, 1)}


def dien_bench(binary: Path, *args: str) -> dict:
    """Runs `dien bench` and returns its JSON line."""
    out = subprocess.run([str(binary), "bench", *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def per_call(fn, repeats: int, number: int) -> float:
    """Median seconds per call over `repeats` rounds of `number` calls."""
    return statistics.median(timeit.repeat(fn, repeat=repeats, number=number)) / number


def score_overhead(args, rng) -> None:
    t = args.seqlen
    model = dien.Model(bench_config(t), seed=1, threads=1)
    p = model.predictor()
    hist = rng.integers(1, 50_000, t)
    hcat = rng.integers(1, 800, t)
    cand, ccat = np.array([123]), np.array([7])
    uid = 3
    call = lambda: p.score(hist, hcat, cand, ccat, uid=uid)  # noqa: E731
    call()
    py = per_call(call, args.repeats, args.number)
    rust = float(np.median(p.rust_timings(hist, hcat, cand, ccat, uid=uid, repeats=args.repeats * args.number)))
    print(f"(a) score, K = 1, T = {t}, one thread")
    print(f"    Python Predictor.score     {py * 1e6:9.2f} µs per call (timeit median)")
    print(f"    Rust, same request         {rust * 1e6:9.2f} µs per call (Predictor.rust_timings median)")
    if args.dien:
        b = dien_bench(
            args.dien, "--mode", "score", "--candidates", "1", "--threads", "1", "--seqlen", str(t),
            "--steps", str(args.steps),
        )
        print(f"    dien bench --mode score    {b['p50_us']:9.2f} µs p50")
    print(f"    overhead of the binding    {(py - rust) * 1e6:9.2f} µs per call, ratio {py / rust:.3f}")


def infer_throughput(args, rng) -> None:
    b, t, threads = args.batch, args.seqlen, args.threads
    model = dien.Model(bench_config(t), seed=1, threads=threads)
    arrays = dict(
        uid=rng.integers(0, 1000, b),
        mid=rng.integers(0, 50_000, b),
        cat=rng.integers(0, 800, b),
        hist_mid=rng.integers(0, 50_000, (b, t)),
        hist_cat=rng.integers(0, 800, (b, t)),
        lengths=np.full(b, t),
        label=(rng.random(b) < 0.5).astype(np.float32),
    )
    batch = dien.Batch(**arrays)
    for _ in range(3):
        model.forward(batch)
    fwd = per_call(lambda: model.forward(batch), args.repeats, 1)
    both = per_call(lambda: model.forward(dien.Batch(**arrays)), args.repeats, 1)
    print(f"(b) inference, B = {b}, T = {t}, {threads} thread(s)")
    print(f"    Python Model.forward            {b / fwd:12.0f} samples/s")
    print(f"    Python Batch(...) + forward     {b / both:12.0f} samples/s")
    if args.dien:
        r = dien_bench(
            args.dien, "--mode", "infer", "--batch", str(b), "--seqlen", str(t), "--threads", str(threads),
            "--steps", str(args.steps),
        )
        rust = r["samples_per_s"]
        print(f"    dien bench --mode infer         {rust:12.0f} samples/s")
        print(f"    ratio Python / Rust: forward {(b / fwd) / rust:.3f}, with Batch {(b / both) / rust:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_dien = REPO / "target" / "release" / "dien"
    ap.add_argument("--dien", type=Path, default=default_dien if default_dien.is_file() else None,
                    help="the dien binary to compare with (default: target/release/dien)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of (b) (default: all cores)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=50, help="timing rounds")
    ap.add_argument("--number", type=int, default=200, help="calls per round in (a)")
    ap.add_argument("--steps", type=int, default=50, help="timed steps of dien bench")
    ap.add_argument("--quick", action="store_true", help="tiny settings: check that the script runs")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.seqlen, args.repeats, args.number, args.steps, args.threads = 8, 10, 3, 5, 2, 1
    if args.dien is None:
        print("no dien binary (build it: cargo build --release -p dien-trainer); Rust-side timings only")
    print(f"dien {dien.__version__} [{dien.simd_target()}], Python {sys.version.split()[0]}")
    rng = np.random.default_rng(0)
    score_overhead(args, rng)
    infer_throughput(args, rng)


if __name__ == "__main__":
    main()

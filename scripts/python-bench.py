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
    # Blocks of `number` calls, Python and Rust alternating, so that both
    # see the same phases of a shared machine; the overhead is the median of
    # the paired differences of block means.
    py_blocks, rust_blocks = [], []
    for _ in range(args.repeats):
        py_blocks.append(timeit.timeit(call, number=args.number) / args.number)
        rust_blocks.append(float(p.rust_timings(hist, hcat, cand, ccat, uid=uid, repeats=args.number).mean()))
    py, rust = statistics.median(py_blocks), statistics.median(rust_blocks)
    overhead = statistics.median(a - b for a, b in zip(py_blocks, rust_blocks))
    print(f"(a) score, K = 1, T = {t}, one thread")
    print(f"    Python Predictor.score     {py * 1e6:9.2f} µs per call (median of block means)")
    print(f"    Rust, same request         {rust * 1e6:9.2f} µs per call (Predictor.rust_timings, same statistic)")
    if args.dien:
        b = dien_bench(
            args.dien, "--mode", "score", "--candidates", "1", "--threads", "1", "--seqlen", str(t),
            "--steps", str(args.steps),
        )
        print(f"    dien bench --mode score    {b['p50_us']:9.2f} µs p50")
    print(f"    overhead of the binding    {overhead * 1e6:9.2f} µs per call (median of paired blocks)")


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
    # Rounds alternate the three measurements (A B C A B C ...) so that a
    # slow phase of a shared machine hits all of them; medians over rounds.
    fwd, both, rust, bench = [], [], [], []
    for _ in range(args.rounds):
        fwd.append(b / per_call(lambda: model.forward(batch), args.repeats, 1))
        both.append(b / per_call(lambda: model.forward(dien.Batch(**arrays)), args.repeats, 1))
        rust.append(b / float(np.median(model.rust_timings(batch, repeats=args.repeats))))
        if args.dien:
            r = dien_bench(
                args.dien, "--mode", "infer", "--batch", str(b), "--seqlen", str(t), "--threads", str(threads),
                "--steps", str(args.steps),
            )
            bench.append(r["samples_per_s"])
    med = statistics.median
    print(f"(b) inference, B = {b}, T = {t}, {threads} thread(s), medians of {args.rounds} alternating rounds")
    print(f"    Python Model.forward            {med(fwd):12.0f} samples/s")
    print(f"    Python Batch(...) + forward     {med(both):12.0f} samples/s")
    print(f"    Rust, same batch and process    {med(rust):12.0f} samples/s (Model.rust_timings)")
    if bench:
        print(f"    dien bench --mode infer         {med(bench):12.0f} samples/s")
        ratios = [f / r for f, r in zip(fwd, bench)]
        print(
            f"    ratio Python / Rust: forward {med(fwd) / med(bench):.3f}, with Batch {med(both) / med(bench):.3f}"
            f"; per round: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}..{max(ratios):.3f}"
        )


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
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of (b)")
    ap.add_argument("--quick", action="store_true", help="tiny settings: check that the script runs")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.seqlen, args.repeats, args.number, args.steps, args.threads = 8, 10, 3, 5, 2, 1
        args.rounds = 1
    if args.dien is None:
        print("no dien binary (build it: cargo build --release -p dien-trainer); Rust-side timings only")
    print(f"dien {dien.__version__} [{dien.simd_target()}], Python {sys.version.split()[0]}")
    rng = np.random.default_rng(0)
    score_overhead(args, rng)
    infer_throughput(args, rng)


if __name__ == "__main__":
    main()

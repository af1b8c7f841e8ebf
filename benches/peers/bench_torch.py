"""Times the PyTorch peers of `dien bench` on the same kind of batch and
prints one JSON line (the last line of standard output).

Implementations (--impl):

- ``eager``: dien_torch.py's model (the engine's model, written from
  docs/MODEL.md) with its Adam, as torch_model.py steps it;
- ``compile``: the same with ``torch.compile`` of the model's forward pass
  (its backward through AOTAutograd; the optimiser step and the running
  statistics stay eager);
- ``deepctr``: deepctr-torch's DIEN at the closest configuration
  (deepctr_dien.py).

Modes: ``train`` is forward + backward + Adam step (with negatives and the
auxiliary loss); ``infer`` is a forward pass in evaluation mode on the batch
without negatives. Every history of the batch is --seqlen long, the ids are
uniform over the table sizes `dien bench` uses (1000 users, 50,000 items,
800 categories). After --warmup steps, --steps steps are timed one by one;
samples/s is the batch size over the median step time, as `dien bench`
reports it.

A failure (an error, or compilation running past --compile-timeout) still
prints the JSON line, with ``error`` saying why, and exits with status 2.
"""

import argparse
import json
import os
import signal
import statistics
import sys
import time
import traceback

import torch

import dien_torch as dt
import torch_model as tm

IMPL_NAMES = {"eager": "torch-eager", "compile": "torch-compile", "deepctr": "deepctr-torch"}


class CompileTimeout(Exception):
    pass


def eager_step(a, compiled):
    """A closure taking one step of dien_torch.py's model (compiled or not)."""
    n_uid, n_mid, n_cat = tm.BENCH_TABLES
    cfg = tm.config(a.model, max_len=max(a.seqlen, 1))
    params = tm.init_params(cfg, n_uid, n_mid, n_cat, seed=1)
    train = a.mode == "train"
    batch = tm.synthetic_batch(n_uid, n_mid, n_cat, a.batch, a.seqlen, negatives=train)
    fwd = None
    if compiled:
        fwd = torch.compile(lambda p, b: dt.forward(cfg, p, b, train=train), mode=a.compile_mode)
    if train:
        opt = dt.Adam(params)
        return lambda: tm.train_step(cfg, params, opt, batch, 0.001, forward=fwd)
    return lambda: tm.infer_step(cfg, params, batch, forward=fwd)


def deepctr_step(a):
    """A closure taking one step of deepctr-torch's DIEN."""
    import deepctr_dien as dd

    n_uid, n_mid, n_cat = tm.BENCH_TABLES
    train = a.mode == "train"
    model = dd.build(n_uid, n_mid, n_cat, a.seqlen, negatives=train)
    arrays, labels = dd.synthetic(n_uid, n_mid, n_cat, a.batch, a.seqlen, negatives=train)
    x = dd.pack_input(model, arrays)
    if train:
        trainer = dd.Trainer(model)
        return lambda: trainer.step(x, labels)
    model.eval()
    return lambda: dd.infer(model, x)


def measure(a, result):
    """Fills `result` with the timing of a's implementation."""
    if a.impl == "deepctr":
        step = deepctr_step(a)
    else:
        step = eager_step(a, compiled=a.impl == "compile")
    if a.impl == "compile":
        # The first call compiles; a limit keeps a compiler that never
        # finishes from holding the comparison up.
        message = f"torch.compile did not finish within {a.compile_timeout} s"
        fired = []

        def on_alarm(signum, frame):
            fired.append(True)
            raise CompileTimeout(message)

        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(a.compile_timeout)
        t0 = time.perf_counter()
        try:
            step()
        except Exception as e:
            # The compiler may wrap the timeout in an error of its own.
            if fired:
                raise CompileTimeout(message) from e
            raise
        finally:
            signal.alarm(0)
        result["compile_s"] = time.perf_counter() - t0
    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    result.update(samples_per_s=a.batch / med, ms_per_step=med * 1e3, min_ms=min(times) * 1e3)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", choices=sorted(IMPL_NAMES), required=True)
    ap.add_argument("--model", default="dien", choices=["dien"], help="the model (only dien has every peer)")
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=100, help="history length of every sample")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (as dien bench)")
    ap.add_argument("--compile-timeout", type=int, default=600, help="seconds allowed for torch.compile's first call")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode (default, max-autotune, ...)")
    a = ap.parse_args(argv)
    for name in ("batch", "seqlen", "threads", "steps", "compile_timeout"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.warmup < 0:
        ap.error("--warmup must be at least 0")
    return a


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    result = {
        "impl": IMPL_NAMES[a.impl],
        "mode": a.mode,
        "model": a.model,
        "batch": a.batch,
        "T": a.seqlen,
        "threads": a.threads,
        "steps": a.steps,
        "warmup": a.warmup,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    status = 0
    try:
        measure(a, result)
    except CompileTimeout as e:
        result["error"] = str(e)
        status = 2
    except Exception as e:  # noqa: BLE001 - every failure is reported, with its reason
        traceback.print_exc(file=sys.stderr)
        last = str(e).strip().splitlines()
        result["error"] = f"{type(e).__name__}: {last[0] if last else ''}"[:300]
        status = 2
    print(json.dumps(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

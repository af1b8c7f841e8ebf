"""Compares the engine with its PyTorch peers: speed on `dien bench`'s
batches, and whole training runs on real data.

Speed: for every mode, batch, history length and thread count, `dien bench`
and each peer (bench_torch.py: PyTorch eager, torch.compile, deepctr-torch)
run in turn, one process per measurement, round after round (A B C D A B C D
...), so that neither warms the other and a drift of the machine's speed
hits all alike. The peers get torch.set_num_threads(N) and OMP, MKL and
OpenBLAS thread counts of N; ours `--threads N`. Prints a Markdown table of
median samples/s, the ratios and our share of the SGEMM yardstick, and
writes PREFIX.md and PREFIX.json (every measurement).

Training (--epochs-data DIR): `dien train` and train_torch.py, same settings,
alternating, each a whole process timed from start to exit; wall seconds,
their ratio and both final test AUCs.

    peers.py                                   # the full grid (long: run it on an idle machine)
    peers.py --modes train --batches 128 --seqlens 100 --threads 1 --rounds 3
    peers.py --epochs-data ../shared/data/real/amazon_s3rec/dien_format_Beauty --epochs 1,2
    peers.py --smoke                           # tiny sizes; checks every row is there
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import peers_report as pr

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = ["eager", "compile", "deepctr"]


def csv(kind, choices=None):
    def parse(text):
        items = [kind(x) for x in text.split(",") if x]
        bad = [x for x in items if choices is not None and x not in choices]
        if not items or bad:
            raise argparse.ArgumentTypeError(f"`{text}`: a comma-separated list" + (f" of {', '.join(choices)}" if choices else ""))
        return items

    return parse


def thread_count(text):
    return len(os.sched_getaffinity(0)) if text == "all" else int(text)


def default_python():
    """The interpreter of setup.sh's environment ($PEERS_VENV, else
    target/peers-venv) when there is one, else this one."""
    venv = os.environ.get("PEERS_VENV") or os.path.join(ROOT, "target", "peers-venv")
    py = os.path.join(venv, "bin", "python")
    return py if os.access(py, os.X_OK) else sys.executable


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", type=csv(str, ["train", "infer"]), default=["train", "infer"])
    ap.add_argument("--batches", type=csv(int), default=[1, 128, 1024])
    ap.add_argument("--seqlens", type=csv(int), default=[20, 100])
    ap.add_argument("--threads", type=csv(thread_count), default=[1, thread_count("all")], help="counts, or `all` (every core)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of every measurement")
    ap.add_argument("--peers", type=csv(str, PEERS), default=None, help="default: eager,compile,deepctr")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement (both sides)")
    ap.add_argument("--warmup", type=int, default=3, help="the peers' untimed steps (dien bench takes 3)")
    ap.add_argument("--compile-timeout", type=int, default=600, help="seconds allowed for torch.compile")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds allowed for any one measurement")
    ap.add_argument("--no-speed", action="store_true", help="only the training comparison")
    ap.add_argument("--epochs-data", metavar="DIR", help="data directory for the training comparison")
    ap.add_argument("--epochs", type=csv(int), default=[1], help="epochs of the training comparison")
    ap.add_argument("--train-rounds", type=int, default=None, help="rounds of the training comparison (default --rounds)")
    ap.add_argument("--valid-frac", type=float, default=0.1, help="both trainers' --valid-frac")
    ap.add_argument("--select", choices=["valid", "test"], default="valid", help="both trainers' --select")
    ap.add_argument("--dien", default=os.path.join(ROOT, "target", "release", "dien"), help="our binary")
    ap.add_argument("--python", default=default_python(), help="the peers' interpreter (default: the venv of setup.sh)")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "peers", "peers"), help="writes OUT.md and OUT.json")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round; checks the tables are complete")
    a = ap.parse_args(argv)
    if a.smoke:
        a.modes, a.batches, a.seqlens, a.threads = ["train", "infer"], [1, 4], [3], [1]
        a.rounds, a.steps, a.warmup, a.epochs = 1, 2, 1, [1]
        a.peers = a.peers or ["eager", "deepctr"]
    a.peers = a.peers or PEERS
    a.train_rounds = a.train_rounds or a.rounds
    for name in ("rounds", "steps", "train_rounds", "compile_timeout", "timeout"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(a.batches + a.seqlens + a.threads + a.epochs) < 1:
        ap.error("batches, history lengths, threads and epochs must be at least 1")
    if not os.access(a.dien, os.X_OK):
        ap.error(f"{a.dien} is not an executable: build it (cargo build --release -p dien-trainer) or give --dien")
    # Found, not imported: importing deepctr_torch asks PyPI for its latest version.
    need = ["torch", "numpy"] + (["deepctr_torch"] if "deepctr" in a.peers else [])
    code = f"import importlib.util as u, sys; m = [m for m in {need!r} if u.find_spec(m) is None]; sys.exit(','.join(m) or 0)"
    probe = subprocess.run([a.python, "-c", code], capture_output=True, text=True)
    if probe.returncode != 0:
        ap.error(f"{a.python} lacks {probe.stderr.strip()}: run benches/peers/setup.sh, or give --python")
    return a


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return None


def run(cmd, env, timeout):
    """(last JSON line of stdout or None, error or None, wall seconds)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"no result within {timeout} s (killed)", time.perf_counter() - t0
    wall = time.perf_counter() - t0
    obj = last_json(p.stdout)
    if obj is not None and obj.get("error"):
        return obj, obj["error"], wall
    if p.returncode != 0 or obj is None:
        tail = (p.stderr.strip().splitlines() or [""])[-1][:300]
        return obj, f"exit status {p.returncode}: {tail}", wall
    return obj, None, wall


def torch_env(threads, smoke):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    if smoke:
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    return env


def measure_speed(a):
    cells = list(itertools.product(a.modes, a.batches, a.seqlens, a.threads))
    runs, broken = [], {}
    total = len(cells) * a.rounds
    for i, ((mode, b, t, n), r) in enumerate(itertools.product(cells, range(a.rounds)), start=1):
        size = ["--mode", mode, "--batch", str(b), "--seqlen", str(t), "--threads", str(n), "--steps", str(a.steps)]
        jobs = [("ours", [a.dien, "bench", "--model", "dien"] + size, dict(os.environ), a.timeout)]
        for p in a.peers:
            cmd = [a.python, os.path.join(HERE, "bench_torch.py"), "--impl", p, "--warmup", str(a.warmup)]
            cmd += ["--compile-timeout", str(a.compile_timeout)] + size
            limit = a.timeout + (a.compile_timeout if p == "compile" else 0)
            jobs.append((p, cmd, torch_env(n, a.smoke), limit))
        for impl, cmd, env, limit in jobs:
            # A failure is not tried again in later rounds, and a compilation
            # that ran out of time is not tried again at the same mode and
            # history length (its graph, and so its compile time, grows with
            # T, not with the batch or the threads).
            key = (impl, mode, b, t, n)
            if impl == "compile" and (mode, t) in broken:
                key = (mode, t)
            name = "dien-rs" if impl == "ours" else pr.PEER_NAMES[impl]
            base = {"impl": name, "mode": mode, "batch": b, "T": t, "threads": n, "round": r}
            if key in broken:
                runs.append(dict(base, error=broken[key]))
                print(f"[{i}/{total}] {mode} B={b} T={t} threads={n} round {r + 1}: {name} skipped (failed before)", file=sys.stderr)
                continue
            obj, err, wall = run(cmd, env, limit)
            rec = dict(base, **(obj or {}), wall_s=wall)
            rec.update(impl=name, round=r)
            if err:
                rec["error"] = err
                if impl != "ours":
                    broken[key] = err
                if impl == "compile" and "within" in err:
                    broken[(mode, t)] = f"{err} (at B={b}, threads={n})"
            runs.append(rec)
            shown = f"{rec['samples_per_s']:,.0f} samples/s" if rec.get("samples_per_s") else f"failed: {err}"
            print(f"[{i}/{total}] {mode} B={b} T={t} threads={n} round {r + 1}: {name} {shown}", file=sys.stderr, flush=True)
    keys = [(m, b, t, n) for m, b, t, n in cells]
    return runs, pr.speed_rows(runs, keys, a.peers)


def measure_training(a, data):
    cells = list(itertools.product(a.epochs, a.threads))
    runs = []
    common = ["--valid-frac", str(a.valid_frac), "--select", a.select]
    for (epochs, n), r in itertools.product(cells, range(a.train_rounds)):
        work = tempfile.mkdtemp(prefix="peers-train-")
        try:
            ours = [a.dien, "train", "--data", data, "--model", "dien", "--epochs", str(epochs), "--threads", str(n)]
            ours += ["--out", os.path.join(work, "m.safetensors"), "--quiet"] + common
            theirs = [a.python, os.path.join(HERE, "train_torch.py"), "--data", data, "--model", "dien"]
            theirs += ["--epochs", str(epochs), "--threads", str(n)] + common
            for side, cmd, env in (("ours", ours, dict(os.environ)), ("torch", theirs, torch_env(n, a.smoke))):
                obj, err, wall = run(cmd, env, a.timeout * max(epochs, 1))
                obj = obj or {}
                rec = {"side": side, "epochs": epochs, "threads": n, "round": r, "wall_s": wall}
                rec.update(auc=obj.get("auc"), gauc=obj.get("gauc"), logloss=obj.get("logloss"), steps=obj.get("steps"))
                rec.update(split=obj.get("split"), valid_auc=(obj.get("valid") or {}).get("auc"))
                rec["best_test_auc"] = ((obj.get("best") or {}).get("test") or {}).get("auc")
                if err:
                    rec["error"] = err
                runs.append(rec)
                shown = f"{wall:.1f} s, test auc {rec['auc']}" if not err else f"failed: {err}"
                print(f"train epochs={epochs} threads={n} round {r + 1}: {side} {shown}", file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return runs, pr.train_rows(runs, cells)


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)), "load_avg": os.getloadavg()}


def check_smoke(a, report):
    """The complete-table check of --smoke: a row per cell, every
    implementation a number or a reason, training on both sides."""
    rows = report.get("speed", {}).get("rows", [])
    want = 0 if a.no_speed else len(a.modes) * len(a.batches) * len(a.seqlens) * len(a.threads)
    problems = [] if len(rows) == want else [f"{len(rows)} speed rows, expected {want}"]
    for r in rows:
        for impl in ["ours"] + a.peers:
            if r["rates"].get(impl) is None and impl not in r["errors"]:
                problems.append(f"{r['mode']} B={r['batch']}: {impl} has neither a rate nor a reason")
        if r["rates"]["ours"] is None:
            problems.append(f"{r['mode']} B={r['batch']}: ours failed: {r['errors'].get('ours')}")
        if r["rates"].get("eager") is None and "eager" in a.peers:
            problems.append(f"{r['mode']} B={r['batch']}: PyTorch eager failed: {r['errors'].get('eager')}")
    tr = report.get("training", {}).get("rows", [])
    if len(tr) != 1 or tr[0]["ours_auc"] is None or tr[0]["torch_auc"] is None:
        problems.append(f"training comparison incomplete: {tr}")
    elif tr[0]["ours_split"] != tr[0]["torch_split"] or tr[0]["ours_steps"] != tr[0]["torch_steps"]:
        problems.append(f"the two trainers differ in split or steps: {tr[0]}")
    return problems


def main(argv=None):
    a = parse_args(argv)
    report = {"machine": machine(), "settings": {k: v for k, v in vars(a).items()}}
    text = []
    if not a.no_speed:
        runs, rows = measure_speed(a)
        report["speed"] = {"runs": runs, "rows": rows}
        text.append(pr.speed_markdown(rows, a.peers, a.rounds))
    data, gen = a.epochs_data, None
    if a.smoke and not data:
        gen = tempfile.mkdtemp(prefix="peers-smoke-data-")
        subprocess.run([a.dien, "generate", "--out", gen, "--users", "300", "--seed", "1"], check=True, capture_output=True)
        data = gen
    try:
        if data and not os.path.isfile(os.path.join(data, "local_train_splitByUser")):
            reason = f"training comparison skipped: {data} holds no local_train_splitByUser"
            report["training"] = {"data": data, "skipped": reason}
            text.append(reason)
        elif data:
            runs, rows = measure_training(a, data)
            report["training"] = {"data": data, "runs": runs, "rows": rows}
            text.append(pr.train_markdown(rows, a.train_rounds, data, f"--valid-frac {a.valid_frac} --select {a.select}"))
    finally:
        if gen:
            shutil.rmtree(gen, ignore_errors=True)
    report["machine"]["load_avg_end"] = os.getloadavg()
    md = "\n\n".join(text) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".md", "w") as f:
        f.write(md)
    with open(a.out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    print(md)
    print(f"wrote {a.out}.md and {a.out}.json", file=sys.stderr)
    if a.smoke:
        problems = check_smoke(a, report)
        if problems:
            print("smoke check FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 1
        print("smoke check passed: every row present, every cell a number or a reason", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

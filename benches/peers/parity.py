#!/usr/bin/env python3
"""Replays a run exported by `dien train --export-batches DIR` in PyTorch
and compares it with the engine's, step by step.

From DIR/init.safetensors it trains on the batches of DIR/steps.jsonl, in
order, with the engine's optimiser rule and learning-rate schedule, and
compares each step's losses with those the engine recorded; after each
epoch it compares the parameters with the engine's (||a - b|| / ||a||, a
the engine's, per tensor and over all trainable tensors); at each
evaluation it recalibrates on the exported training batches and scores the
exported test batches. It prints a report and writes it as JSON and
Markdown (--report PREFIX: PREFIX.json, PREFIX.md).

    python parity.py DIR [--dtype float32|float64] [--report PREFIX]
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

import dien_torch as dt

CHECK_STEPS = (1, 10, 100, 300, 600)
RANGES = ((1, 100), (1, 300), (1, 600))


def read_lines(path):
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def rel(a, b):
    """|a - b| / |b| (b the engine's value)."""
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def tensor_diffs(params, ref_path, names=None):
    """{name: ||a - b|| / ||a||} against the checkpoint ref_path (a), the
    norms ||a||, and the overall value over the trainable tensors and over
    the buffers."""
    ref, _ = dt.read_safetensors(ref_path)
    out, norms, num, den, bnum, bden, anum, aden = {}, {}, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for name, a in ref.items():
        a = a.astype(np.float64)
        b = params[name].detach().to(torch.float64).numpy()
        dn, an = float(np.sum((a - b) ** 2)), float(np.sum(a * a))
        out[name] = float(np.sqrt(dn) / np.sqrt(an)) if an > 0 else float(np.sqrt(dn))
        norms[name] = float(np.sqrt(an))
        if dt.is_buffer(name):
            bnum, bden = bnum + dn, bden + an
        else:
            num, den = num + dn, den + an
            if not name.startswith("att."):
                anum, aden = anum + dn, aden + an
    return {
        "tensors": out,
        "norms": norms,
        "trainable": float(np.sqrt(num / den)) if den else 0.0,
        "buffers": float(np.sqrt(bnum / bden)) if bden else 0.0,
        # Attention gradients are orders of magnitude below the others and
        # so carry the most rounding noise, which Adam's normalisation turns
        # into full-size steps: the rest is reported on its own.
        "trainable_but_attention": float(np.sqrt(anum / aden)) if aden else 0.0,
    }


def evaluate(cfg, params, root, ev):
    """Recalibrates params on the event's training batches (in place, as the
    engine does) and scores its test batches."""
    n = 0
    if ev.get("recal"):
        xs = []
        with torch.no_grad():
            for obj in read_lines(os.path.join(root, ev["recal"])):
                b = dt.Batch(obj)
                xs.append(dt.forward(cfg, params, b, train=False)["head_input"])
                n += b.b
        dt.recalibrate(params, torch.cat(xs))
    users, logits, labels = [], [], []
    with torch.no_grad():
        for obj in read_lines(os.path.join(root, ev["test"])):
            b = dt.Batch(obj)
            logits.extend(dt.forward(cfg, params, b, train=False)["logits"].to(torch.float64).tolist())
            users.extend(b.users)
            labels.extend(b.label.tolist())
    return dt.metrics(users, logits, labels), n


def make_optimizer(manifest, params):
    o = manifest["optimizer"]
    if o["kind"] == "adam":
        return dt.Adam(params, o["beta1"], o["beta2"], o["eps"], o["lazy_embeddings"], o.get("clip_norm"))
    if o["kind"] == "sgd":
        return dt.Sgd(params, o.get("clip_norm"))
    raise SystemExit(f"optimizer {o['kind']} is not replayed")


def replay(args):
    root = args.export
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != "dien-export" or manifest.get("version") != 1:
        raise SystemExit(f"{root}: not an export of version 1")
    dtype = torch.float32 if args.dtype == "float32" else torch.float64
    cfg, params, meta = dt.load_params(os.path.join(root, "init.safetensors"), dtype)
    opt = make_optimizer(manifest, params)
    events = list(read_lines(os.path.join(root, "events.jsonl")))
    lr0 = np.float32(manifest["optimizer"]["lr"])
    steps, epochs, evals, lr_mismatch = [], [], [], []
    ei = 0
    start = time.time()
    for obj in read_lines(os.path.join(root, "steps.jsonl")):
        k, epoch = obj["step"], obj["epoch"]
        if args.max_steps and k > args.max_steps:
            break
        if args.dump_before == k:
            dump(args, params, meta, obj, k)
        b = dt.Batch(obj)
        out = dt.forward(cfg, params, b, train=True)
        out["loss"].backward()
        # The schedule: the learning rate halves (in f32) after each epoch.
        lr = np.float32(lr0 * np.float32(0.5) ** epoch)
        if lr != np.float32(obj["lr"]):
            lr_mismatch.append({"step": k, "ours": float(obj["lr"]), "replay": float(lr)})
        opt.step(float(lr), b.touched_rows(out["with_neg"]))
        dt.update_running_stats(params, out["stats"])
        rec = {"step": k, "epoch": epoch}
        for key in ("loss", "loss_target", "loss_aux"):
            rec[key] = obj[key]
            rec["torch_" + key] = float(out[key].detach())
        steps.append(rec)
        if k % 50 == 0 or k == 1:
            print(
                f"step {k:5d}  loss {obj['loss']:.6f}  torch {rec['torch_loss']:.6f}  "
                f"rel {rel(rec['torch_loss'], obj['loss']):.2e}  ({time.time() - start:.0f} s)",
                file=sys.stderr,
            )
        while ei < len(events) and events[ei]["step"] == k:
            ev = events[ei]
            ei += 1
            if args.save_params:
                save_params(args.save_params, params, meta, f"torch-{ev['kind']}-{k:06d}.safetensors")
            if ev["kind"] == "epoch_end":
                d = tensor_diffs(params, os.path.join(root, ev["params"]))
                epochs.append({"epoch": ev["epoch"], "step": k, "complete": ev["complete"], **d})
                print(f"end of epoch {ev['epoch']} (step {k}): parameters rel diff {d['trainable']:.3e}", file=sys.stderr)
            elif ev["kind"] == "evaluation":
                m, n = evaluate(cfg, params, root, ev)
                d = tensor_diffs(params, os.path.join(root, ev["params"]))
                evals.append(
                    {
                        "step": k,
                        "epoch": ev["epoch"],
                        "recal_samples": {"ours": ev["recal_samples"], "replay": n},
                        "ours": ev["metrics"],
                        "torch": m,
                        "buffers_rel_diff": d["buffers"],
                        "trainable_rel_diff": d["trainable"],
                    }
                )
                print(f"evaluation at step {k}: AUC ours {ev['metrics']['auc']:.5f}, torch {m['auc']:.5f}", file=sys.stderr)
    return build_report(args, manifest, steps, epochs, evals, lr_mismatch, time.time() - start)


def save_params(d, params, meta, name):
    """Writes the replay's parameters as a checkpoint the engine reads (its
    metadata but the checksum and the run record)."""
    os.makedirs(d, exist_ok=True)
    keep = {key: v for key, v in meta.items() if key not in ("checksum", "run")}
    tensors = {n: t.detach().to(torch.float32).numpy() for n, t in params.items()}
    dt.write_safetensors(os.path.join(d, name), tensors, keep)


def dump(args, params, meta, obj, k):
    """Writes the replay's parameters before step k as a checkpoint and the
    step's batch as a batch file, for `dien grads` and grads.py."""
    d = args.dump_dir or args.export
    save_params(d, params, meta, f"torch-before-{k}.safetensors")
    with open(os.path.join(d, f"batch-{k}.json"), "w") as f:
        json.dump(obj, f)
    print(f"wrote {d}/torch-before-{k}.safetensors and {d}/batch-{k}.json", file=sys.stderr)


def build_report(args, manifest, steps, epochs, evals, lr_mismatch, seconds):
    by_step = {s["step"]: s for s in steps}
    loss_rel = {s["step"]: rel(s["torch_loss"], s["loss"]) for s in steps}
    at = [
        {
            "step": k,
            "ours": by_step[k]["loss"],
            "torch": by_step[k]["torch_loss"],
            "rel_diff": loss_rel[k],
        }
        for k in CHECK_STEPS
        if k in by_step
    ]
    n = len(steps)
    ranges = []
    for lo, hi in list(RANGES) + [(1, n)]:
        if hi > n and (lo, hi) != (1, n):
            continue
        sel = [s for s in steps if lo <= s["step"] <= hi]
        if not sel:
            continue
        worst = max(sel, key=lambda s: loss_rel[s["step"]])
        ranges.append(
            {
                "from": lo,
                "to": hi,
                "max_rel_diff": loss_rel[worst["step"]],
                "at_step": worst["step"],
                "max_rel_diff_target": max(rel(s["torch_loss_target"], s["loss_target"]) for s in sel),
                "max_rel_diff_aux": max(rel(s["torch_loss_aux"], s["loss_aux"]) for s in sel),
            }
        )
    first = {}
    for tol in (1e-6, 1e-4, 1e-2):
        first[str(tol)] = next((s["step"] for s in steps if loss_rel[s["step"]] > tol), None)
    return {
        "export": os.path.abspath(args.export),
        "model": manifest["model"],
        "optimizer": manifest["optimizer"],
        "batch": manifest["batch"],
        "dtype": args.dtype,
        "machine": {
            "processor": cpu_name(),
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "steps": n,
        "seconds": seconds,
        "loss_at": at,
        "loss_ranges": ranges,
        "first_step_over": first,
        "lr_mismatch": lr_mismatch,
        "epochs": epochs,
        "evaluations": evals,
        "per_step": steps,
    }


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(r):
    m = r["model"]
    out = [
        f"### {m['model']} ({r['steps']} steps, batch {r['batch']}, {r['dtype']})",
        "",
        "| step | loss (dien-rs) | loss (PyTorch) | relative difference |",
        "|---:|---:|---:|---:|",
    ]
    for a in r["loss_at"]:
        out.append(f"| {a['step']} | {a['ours']:.7f} | {a['torch']:.7f} | {a['rel_diff']:.2e} |")
    out += ["", "| steps | max rel. diff. of loss (at step) | of L_target | of L_aux |", "|---|---:|---:|---:|"]
    for g in r["loss_ranges"]:
        out.append(
            f"| {g['from']}–{g['to']} | {g['max_rel_diff']:.2e} ({g['at_step']}) | "
            f"{g['max_rel_diff_target']:.2e} | {g['max_rel_diff_aux']:.2e} |"
        )
    out += [
        "",
        "| after epoch | step | ‖a−b‖/‖a‖ trainable | trainable but `att.*` | running statistics | largest tensor (but `att.fc3.b`) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for e in r["epochs"]:
        # att.fc3.b shifts every attention score equally (the softmax
        # removes it): its gradient is rounding noise on both sides.
        name, v = max(
            ((k, v) for k, v in e["tensors"].items() if not dt.is_buffer(k) and k != "att.fc3.b"),
            key=lambda kv: kv[1],
        )
        out.append(
            f"| {e['epoch'] + 1} | {e['step']} | {e['trainable']:.2e} | {e['trainable_but_attention']:.2e} | "
            f"{e['buffers']:.2e} | `{name}` {v:.2e} |"
        )
    out += ["", "| evaluation at step | test AUC (dien-rs) | test AUC (PyTorch) | GAUC (dien-rs / PyTorch) | logloss (dien-rs / PyTorch) |", "|---:|---:|---:|---:|---:|"]
    for e in r["evaluations"]:
        o, t = e["ours"], e["torch"]
        out.append(
            f"| {e['step']} | {o['auc']:.5f} | {t['auc']:.5f} | {o['gauc']:.5f} / {t['gauc']:.5f} | "
            f"{o['logloss']:.5f} / {t['logloss']:.5f} |"
        )
    if r["lr_mismatch"]:
        out += ["", f"Learning-rate schedule differs at {len(r['lr_mismatch'])} steps (first: {r['lr_mismatch'][0]})."]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="directory written by dien train --export-batches")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--max-steps", type=int, default=None, help="replay only the first N steps")
    ap.add_argument("--report", default=None, help="write PREFIX.json and PREFIX.md (default: DIR/parity-<dtype>)")
    ap.add_argument("--dump-before", type=int, default=None, metavar="STEP", help="write the replay's parameters before STEP and its batch")
    ap.add_argument("--dump-dir", default=None, help="where --dump-before writes (default: the export directory)")
    ap.add_argument("--save-params", default=None, metavar="DIR", help="write the replay's parameters at every event into DIR")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = replay(args)
    prefix = args.report or os.path.join(args.export, f"parity-{args.dtype}")
    with open(prefix + ".json", "w") as f:
        json.dump(r, f, indent=1)
    md = markdown(r)
    with open(prefix + ".md", "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {prefix}.json and {prefix}.md", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Summaries and Markdown tables of peers.py's measurements."""

import statistics

PEER_NAMES = {"eager": "torch-eager", "compile": "torch-compile", "deepctr": "deepctr-torch"}
PEER_TITLES = {"eager": "PyTorch eager", "compile": "torch.compile", "deepctr": "deepctr-torch"}


def median(xs):
    return statistics.median(xs) if xs else None


def speed_rows(runs, cells, peers):
    """One row per cell (mode, batch, T, threads): the median over rounds of
    each implementation's samples/s, the ratios ours/theirs, our share of
    the yardstick, and the reason of every implementation that did not
    give a number."""
    rows = []
    for mode, b, t, n in cells:
        mine = [r for r in runs if (r["mode"], r["batch"], r["T"], r["threads"]) == (mode, b, t, n)]
        row = {"mode": mode, "batch": b, "T": t, "threads": n, "rates": {}, "spread": {}, "errors": {}}
        for impl in ["ours"] + peers:
            name = "dien-rs" if impl == "ours" else PEER_NAMES[impl]
            got = [r for r in mine if r["impl"] == name]
            rates = [r["samples_per_s"] for r in got if r.get("samples_per_s")]
            row["rates"][impl] = median(rates)
            row["spread"][impl] = [min(rates), max(rates)] if rates else None
            errors = sorted({r["error"] for r in got if r.get("error")})
            if errors:
                row["errors"][impl] = errors[0]
            elif not got:
                row["errors"][impl] = "not measured"
            compile_s = [r["compile_s"] for r in got if r.get("compile_s")]
            if compile_s:
                # The first round compiles from scratch; later ones may find
                # torch's on-disk compile caches filled.
                row["compile_s"] = [min(compile_s), max(compile_s)]
        ours = row["rates"]["ours"]
        row["ratios"] = {p: (ours / row["rates"][p] if ours and row["rates"].get(p) else None) for p in peers}
        shares = [
            100.0 * r["gflops"] / (r["threads"] * r["sgemm_gflops_1thread"])
            for r in mine
            if r["impl"] == "dien-rs" and r.get("gflops") and r.get("sgemm_gflops_1thread")
        ]
        row["ours_pct_of_sgemm"] = median(shares)
        rows.append(row)
    return rows


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def speed_markdown(rows, peers, rounds):
    head = ["mode", "B", "T", "threads", "ours"] + [PEER_TITLES[p] for p in peers]
    head += [f"ours / {PEER_TITLES[p]}" for p in peers] + ["ours, % of threads × SGEMM"]
    lines = [
        f"samples/s, median of {rounds} alternating round(s), one process per measurement",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    notes = []

    def cell(r, impl):
        text = fmt_rate(r["rates"].get(impl))
        if impl in r["errors"]:
            title = "ours" if impl == "ours" else PEER_TITLES[impl]
            notes.append(f"{r['mode']} B={r['batch']} T={r['T']} threads={r['threads']}, {title}: {r['errors'][impl]}")
            text += f" [{len(notes)}]"
        return text

    for r in rows:
        cells = [r["mode"], str(r["batch"]), str(r["T"]), str(r["threads"])]
        cells += [cell(r, impl) for impl in ["ours"] + peers]
        cells += [fmt_ratio(r["ratios"].get(p)) for p in peers]
        pct = r["ours_pct_of_sgemm"]
        cells.append("—" if pct is None else f"{pct:.1f}%")
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines += [f"[{i}] {n}" for i, n in enumerate(notes, start=1)]
    compiles = [r for r in rows if r.get("compile_s")]
    if compiles:
        lines.append("")
        lines.append(
            "torch.compile's first call (compilation), seconds, least and most over the rounds "
            "(later rounds may reuse torch's on-disk caches): "
            + ", ".join(
                f"{r['mode']} B={r['batch']} T={r['T']} threads={r['threads']}: {r['compile_s'][0]:.0f}–{r['compile_s'][1]:.0f}"
                for r in compiles
            )
        )
    return "\n".join(lines)


def train_rows(runs, cells):
    """One row per (epochs, threads): median wall seconds of each side,
    the ratio, and the final test AUCs (median over rounds)."""
    rows = []
    for epochs, n in cells:
        mine = [r for r in runs if (r["epochs"], r["threads"]) == (epochs, n)]
        row = {"epochs": epochs, "threads": n, "errors": {}}
        for side in ("ours", "torch"):
            got = [r for r in mine if r["side"] == side]
            ok = [r for r in got if not r.get("error")]
            row[f"{side}_wall_s"] = median([r["wall_s"] for r in ok])
            row[f"{side}_auc"] = median([r["auc"] for r in ok if r.get("auc") is not None])
            row[f"{side}_best_auc"] = median([r["best_test_auc"] for r in ok if r.get("best_test_auc") is not None])
            row[f"{side}_steps"] = sorted({r.get("steps") for r in ok})
            row[f"{side}_split"] = next((r.get("split") for r in ok), None)
            errors = [r["error"] for r in got if r.get("error")]
            if errors:
                row["errors"][side] = errors[0]
        ours, theirs = row["ours_wall_s"], row["torch_wall_s"]
        row["ratio"] = theirs / ours if ours and theirs else None
        a, b = row["ours_auc"], row["torch_auc"]
        row["auc_diff"] = b - a if a is not None and b is not None else None
        rows.append(row)
    return rows


def train_markdown(rows, rounds, data, settings):
    def f(x, p=4):
        return "—" if x is None else f"{x:.{p}f}"

    lines = [
        f"`dien train` against train_torch.py on {data} (both {settings}): whole processes, wall seconds, "
        f"median of {rounds} alternating round(s); test AUC of the final model",
        "",
        "| epochs | threads | ours s | PyTorch s | PyTorch / ours | ours test AUC | PyTorch test AUC | PyTorch − ours | steps ours / PyTorch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for r in rows:
        steps = " / ".join(",".join(str(s) for s in r[f"{side}_steps"]) or "—" for side in ("ours", "torch"))
        lines.append(
            f"| {r['epochs']} | {r['threads']} | {f(r['ours_wall_s'], 1)} | {f(r['torch_wall_s'], 1)} | "
            f"{fmt_ratio(r['ratio'])} | {f(r['ours_auc'])} | {f(r['torch_auc'])} | {f(r['auc_diff'])} | {steps} |"
        )
        for side, e in r["errors"].items():
            notes.append(f"epochs {r['epochs']} threads {r['threads']}, {side}: {e}")
    if notes:
        lines += [""] + notes
    return "\n".join(lines)

"""The data layer of `dien train` in Python, for train_torch.py: the
reference layout (docs/MODEL.md#data-layout), its vocabularies,
popularity-weighted negatives (#negative-sampling), the batching of the
reference code (#batching) and the validation split of the training users
(#validation-split-and-model-selection).

What matches the engine exactly: the vocabularies and the mapping of ids
(unknown ids to 0), the item→category map, the sampling weights, the
groups of 20 batches sorted stably by untruncated history length (longest
first), truncation to the last `max_len` behaviours, and the split (the same
seeded SplitMix64 hash of the raw uid, so the same users are held out). What
does not: the random draws (negatives and recalibration batches come from
NumPy's generator, not the engine's ChaCha8), so the runs see the same
batches with different negatives.
"""

import json
import os
import pickle

import numpy as np

import torch_model as tm

TRAIN_FILE = "local_train_splitByUser"
TEST_FILE = "local_test_splitByUser"
HIST_SEP = "\x02"
GROUP_BATCHES = 20
MASK64 = (1 << 64) - 1
SPLIT_SALT = 0x5EED0F7A11DA7E00


# --- vocabularies -----------------------------------------------------------


class Vocab:
    """String id -> index; unknown ids map to 0; size = largest index + 1."""

    def __init__(self, mapping):
        self.map = mapping
        self.size = max(max(mapping.values(), default=0) + 1, 1)

    def get(self, key):
        return self.map.get(key, 0)


def load_vocab_file(path):
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    else:
        with open(path, "rb") as f:
            raw = pickle.load(f, encoding="bytes")
    out = {}
    for k, v in raw.items():
        key = k.decode("utf-8") if isinstance(k, bytes) else str(k)
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{path}: the index of `{key}` is {v!r}, not a non-negative integer")
        out[key] = v
    return Vocab(out)


def build_vocabs(train_path):
    """Most frequent first, ties in order of first appearance, index 0 the
    unknown id; counts uid, mid and cat once per line plus every history id."""
    counts = [{}, {}, {}]
    for f in read_lines(train_path):
        if f is None:
            continue
        for c, keys in ((0, [f[1]]), (1, [f[2]] + split_hist(f[4])), (2, [f[3]] + split_hist(f[5]))):
            for k in keys:
                counts[c][k] = counts[c].get(k, 0) + 1
    vocabs = []
    for default, c in zip(("default_uid", "default_mid", "default_cat"), counts):
        ranked = sorted(c.items(), key=lambda kv: -kv[1])  # stable: first appearance breaks ties
        mapping = {default: 0}
        for k, _ in ranked:
            mapping.setdefault(k, len(mapping))
        vocabs.append(Vocab(mapping))
    return vocabs


def load_vocabs(data_dir):
    """uid, mid, cat vocabularies: `*_voc.pkl`, else `*_voc.json`, else built
    from the training file."""
    found = []
    for name in ("uid", "mid", "cat"):
        paths = [os.path.join(data_dir, f"{name}_voc.{ext}") for ext in ("pkl", "json")]
        found.append(next((p for p in paths if os.path.isfile(p)), None))
    built = build_vocabs(os.path.join(data_dir, TRAIN_FILE)) if None in found else None
    return [load_vocab_file(p) if p else built[i] for i, p in enumerate(found)]


# --- lines -------------------------------------------------------------------


def split_hist(field):
    return field.split(HIST_SEP) if field else []


def read_lines(path):
    """Yields the six fields of every line, None for a blank line; a
    malformed line is an error naming it."""
    with open(path, encoding="utf-8", newline="\n") as f:
        for lno, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                yield None
                continue
            f6 = line.split("\t")
            if len(f6) != 6:
                raise ValueError(f"{path}:{lno}: expected 6 tab-separated fields, found {len(f6)}")
            if f6[0].strip() not in ("0", "1", "0.0", "1.0"):
                raise ValueError(f"{path}:{lno}: label `{f6[0]}` is not 0 or 1")
            if len(split_hist(f6[4])) != len(split_hist(f6[5])):
                raise ValueError(f"{path}:{lno}: mid_hist and cat_hist have different lengths")
            yield f6


class Sample:
    __slots__ = ("label", "uid", "mid", "cat", "hist_mid", "hist_cat", "raw_uid")


def read_samples(path, vocabs):
    """Every line of `path` mapped through the vocabularies (None for a blank
    line), histories untruncated."""
    uv, mv, cv = vocabs
    out = []
    for f in read_lines(path):
        if f is None:
            out.append(None)
            continue
        s = Sample()
        s.label, s.raw_uid = float(f[0]), f[1]
        s.uid, s.mid, s.cat = uv.get(f[1]), mv.get(f[2]), cv.get(f[3])
        s.hist_mid = np.array([mv.get(k) for k in split_hist(f[4])], dtype=np.int64)
        s.hist_cat = np.array([cv.get(k) for k in split_hist(f[5])], dtype=np.int64)
        out.append(s)
    return out


# --- negatives ---------------------------------------------------------------


class NegativeSampler:
    """Items drawn with probability proportional to their count in
    reviews-info, never the positive item; category from item-info."""

    def __init__(self, data_dir, vocabs):
        _, mv, cv = vocabs
        self.cat_of = np.zeros(mv.size, dtype=np.int64)
        seen = np.zeros(mv.size, dtype=bool)
        for fields in tab_records(os.path.join(data_dir, "item-info"), 2):
            m = mv.map.get(fields[0])
            if m is not None and not seen[m]:
                seen[m] = True
                self.cat_of[m] = cv.get(fields[1])
        counts = np.zeros(mv.size, dtype=np.int64)
        for fields in tab_records(os.path.join(data_dir, "reviews-info"), 2):
            counts[mv.get(fields[1])] += 1
        if counts.sum() == 0:
            raise ValueError(f"{data_dir}/reviews-info holds no event")
        self.counts = counts
        self.ends = np.cumsum(counts)
        self.total = int(self.ends[-1])

    def draw(self, rng, positives):
        """(negative items, their categories) for an int array of positives."""
        w = self.counts[positives]
        start = self.ends[positives] - w
        avail = self.total - w
        r = rng.integers(0, np.maximum(avail, 1))
        r = np.where(r >= start, r + w, r)
        items = np.searchsorted(self.ends, r, side="right")
        items = np.where(avail > 0, items, 0)
        return items, np.where(avail > 0, self.cat_of[items], 0)


def tab_records(path, n):
    with open(path, encoding="utf-8") as f:
        for lno, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) < n:
                raise ValueError(f"{path}:{lno}: expected at least {n} tab-separated fields, found {len(fields)}")
            yield fields


# --- the validation split ------------------------------------------------------


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def user_hash(seed, uid):
    raw = uid.encode("utf-8")
    h = splitmix64((seed ^ SPLIT_SALT) & MASK64)
    for i in range(0, len(raw), 8):
        h = splitmix64(h ^ int.from_bytes(raw[i : i + 8].ljust(8, b"\0"), "little"))
    return splitmix64(h ^ len(raw))


def held_out(seed, frac, uid):
    """Whether the user is in the validation split (as the engine decides)."""
    return frac > 0 and (user_hash(seed, uid) >> 11) * (1.0 / (1 << 53)) < frac


def split_counts(samples, seed, frac):
    lines, users = [0, 0], [set(), set()]
    for s in samples:
        if s is not None:
            i = int(held_out(seed, frac, s.raw_uid))
            lines[i] += 1
            users[i].add(s.raw_uid)
    return {
        "valid_frac": frac,
        "train_lines": lines[0],
        "train_users": len(users[0]),
        "valid_lines": lines[1],
        "valid_users": len(users[1]),
    }


# --- batching ------------------------------------------------------------------


def batches(samples, batch_size, max_len, keep=None, sampler=None, seed=0, epoch=0):
    """The batches of the reference batching as (Batch, raw uids): groups of
    `batch_size * 20` lines (blank and left-out lines count), kept samples
    sorted stably by untruncated history length, longest first, cut from the
    longest end; negatives for every kept history step when `sampler`."""
    group_lines = batch_size * GROUP_BATCHES
    for g, start in enumerate(range(0, len(samples), group_lines)):
        group = [s for s in samples[start : start + group_lines] if s is not None and (keep is None or keep(s))]
        group.sort(key=lambda s: -len(s.hist_mid))
        for k, b0 in enumerate(range(0, len(group), batch_size)):
            part = group[b0 : b0 + batch_size]
            rng = np.random.default_rng([seed, epoch, g, k]) if sampler else None
            yield build(part, max_len, sampler, rng), [s.raw_uid for s in part]


def build(part, max_len, sampler, rng):
    b = len(part)
    lengths = np.array([min(len(s.hist_mid), max_len) for s in part], dtype=np.int64)
    t = int(lengths.max()) if b else 0
    hm, hc = np.zeros((b, t), dtype=np.int64), np.zeros((b, t), dtype=np.int64)
    for i, s in enumerate(part):
        n = lengths[i]
        if n:
            hm[i, :n], hc[i, :n] = s.hist_mid[-n:], s.hist_cat[-n:]
    nm = nc = None
    if sampler is not None:
        mask = np.arange(t)[None, :] < lengths[:, None]
        nm, nc = np.zeros_like(hm), np.zeros_like(hc)
        nm[mask], nc[mask] = sampler.draw(rng, hm[mask])
    return tm.make_batch(
        [s.uid for s in part],
        [s.mid for s in part],
        [s.cat for s in part],
        hm,
        hc,
        lengths,
        [s.label for s in part],
        nm,
        nc,
        users=[s.raw_uid for s in part],
    )

#!/usr/bin/env bash
# Do two builds of `dien` train to the same bits? Generates one small data
# set, trains seven short configurations with each binary (every evolving
# variant, both attention and auxiliary forms, din, base with SGD; three
# epochs with evaluation and recalibration) and compares the SHA-256 of every
# checkpoint, optimiser state and best model they write: their tensors and
# metadata, bit for bit, but for the two entries that name the build (the run
# record's `version`, the source revision) and the checksum that covers them.
#   scripts/same-results.sh OLD_DIEN NEW_DIEN
# Exit status 0 when every file is the same.
set -euo pipefail
old=$1
new=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$old" generate --out "$work/data" --users 6000 --seed 5 >/dev/null
# Both binaries write into the same folder, one after the other: a
# checkpoint's run record names its output files, so the paths must match.
hashes() {
    local bin=$1 out=$work/run
    rm -rf "$out"
    mkdir -p "$out"
    run() {
        local name=$1
        shift
        "$bin" train --data "$work/data" --out "$out/$name.safetensors" --epochs 3 --eval-every 100 \
            --threads 2 --quiet --recal-samples 2000 "$@" >"$out/$name.log" 2>&1
    }
    run dien --model dien
    run aigru --model dien --variant aigru --att bilinear
    run gruatt --model dien --variant gru_att
    run augruref --model dien --variant augru-ref --aux dot
    run agru --model dien-noaux --variant agru
    run din --model din
    run base --model base --optimizer sgd --lr 0.05
    (cd "$out" && for f in ./*.safetensors; do printf '%s  %s\n' "$(normalised "$f" | sha256sum | cut -d' ' -f1)" "$f"; done)
}
# A safetensors file with the build's revision taken out of its metadata.
normalised() {
    python3 - "$1" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
meta = header.get("__metadata__", {})
meta.pop("checksum", None)
if "run" in meta:
    run = json.loads(meta["run"])
    run.pop("version", None)
    meta["run"] = json.dumps(run, sort_keys=True)
sys.stdout.buffer.write(json.dumps(header, sort_keys=True).encode() + raw[8 + n:])
PY
}
hashes "$old" >"$work/old.sha"
hashes "$new" >"$work/new.sha"
cat "$work/new.sha"
if diff "$work/old.sha" "$work/new.sha"; then
    echo "same results: all $(wc -l <"$work/new.sha") files the same"
else
    echo "results differ" >&2
    exit 1
fi

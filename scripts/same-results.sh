#!/usr/bin/env bash
# Do two builds of `dien` train to the same bits? Generates one small data
# set, trains seven short configurations with each binary (every evolving
# variant, both attention and auxiliary forms, din, base with SGD; three
# epochs with evaluation and recalibration) and compares the SHA-256 of every
# checkpoint, optimiser state and best model they write: their tensors (names,
# shapes, bytes), not the metadata, which records the build's version.
#   scripts/same-results.sh OLD_DIEN NEW_DIEN
# Exit status 0 when every file is bit-identical.
set -euo pipefail
old=$1
new=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$old" generate --out "$work/data" --users 6000 --seed 5 >/dev/null
# SHA-256 of a safetensors file without its `__metadata__` entry.
tensor_hash() {
    python3 - "$1" <<'PY'
import hashlib, json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    h.update(f.read())
print(h.hexdigest())
PY
}
hashes() {
    local bin=$1 out=$2
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
    (cd "$out" && for f in ./*.safetensors; do echo "$(tensor_hash "$f")  $f"; done)
}
hashes "$old" "$work/old" >"$work/old.sha"
hashes "$new" "$work/new" >"$work/new.sha"
cat "$work/new.sha"
if diff "$work/old.sha" "$work/new.sha"; then
    echo "same results: all $(wc -l <"$work/new.sha") files bit-identical"
else
    echo "results differ" >&2
    exit 1
fi

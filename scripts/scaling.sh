#!/usr/bin/env bash
# Thread scaling of a full DIEN step (`dien bench`, docs/MODEL.md#commands), train and
# infer, at B = 128 and T = 100, for each thread count given (default
# "1 2 4 8 16"). Prints the machine and one JSON line per run.
#   scripts/scaling.sh [path/to/dien] [thread counts...]
set -euo pipefail
bin=${1:-target/release/dien}
shift || true
threads=${*:-1 2 4 8 16}
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
for mode in train infer; do
    for n in $threads; do
        "$bin" bench --model dien --mode "$mode" --batch 128 --seqlen 100 --threads "$n" --steps 15 2>/dev/null | tail -n 1
    done
done

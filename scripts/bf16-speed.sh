#!/usr/bin/env bash
# The request path in f32 and in bf16, alternating: ROUNDS rounds of
# `dien bench --mode score` at K = 1 and K = 100 (T = 100, one thread),
# the order of the two precisions swapped every round; prints each run's
# p50 and, per K and precision, the median p50 over the rounds.
#   scripts/bf16-speed.sh DIEN [ROUNDS]
# Needs a CPU with AVX512_BF16 (docs/PERFORMANCE.md, "bf16 (opt-in)").
set -euo pipefail
dien=$1
rounds=${2:-7}
declare -A p50
for k in 1 100; do
    steps=$((k == 1 ? 2000 : 200))
    for r in $(seq 1 "$rounds"); do
        order="f32 bf16"
        ((r % 2 == 0)) && order="bf16 f32"
        for p in $order; do
            v=$("$dien" bench --model dien --mode score --candidates "$k" --seqlen 100 --threads 1 \
                --steps "$steps" --precision "$p" 2>/dev/null | tail -1 |
                python3 -c 'import json,sys; print(round(json.load(sys.stdin)["p50_us"], 1))')
            echo "K=$k round $r $p p50 ${v} us"
            p50[$k.$p]="${p50[$k.$p]:-} $v"
        done
    done
done
for k in 1 100; do
    for p in f32 bf16; do
        echo "K=$k $p median p50: $(echo ${p50[$k.$p]} | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') us"
    done
done

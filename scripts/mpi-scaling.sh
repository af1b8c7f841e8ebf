#!/usr/bin/env bash
# Data-parallel scaling of `dien train --distributed` (docs/DISTRIBUTED.md#scaling):
# one rank against two, one compute thread per rank, global batch 1024, on a
# generated data set. For each rank count it prints one JSON line with the
# samples per second of a training step (global batch / mean step time), the
# share of the step spent communicating and the bytes sent per step, then the
# speedup. Run it on an otherwise idle machine (or cluster: MPIRUN_ARGS can
# carry --hostfile).
#
#   scripts/mpi-scaling.sh
#
# Settings (environment):
#   DIEN         the binary, built with MPI (default target/release/dien;
#                cargo build --release -p dien-trainer --features mpi)
#   DATA         data directory (default: generated once into
#                target/mpi-scaling-data with USERS users)
#   USERS        users of the generated set (default 150000)
#   BATCH        global batch (default 1024)
#   STEPS        training steps per run (default 40)
#   RANKS        rank counts to run (default "1 2")
#   EXTRA        more `dien train` flags (e.g. "--dim 4 --hidden 8")
#   MPIRUN_ARGS  more mpirun flags (default "--oversubscribe --bind-to none",
#                plus --allow-run-as-root as root)
set -euo pipefail
cd "$(dirname "$0")/.."

dien=${DIEN:-target/release/dien}
users=${USERS:-150000}
batch=${BATCH:-1024}
steps=${STEPS:-40}
ranks=${RANKS:-1 2}
extra=${EXTRA:-}
mpirun_args=${MPIRUN_ARGS:---oversubscribe --bind-to none}
if [ "$(id -u)" = 0 ]; then
    mpirun_args="--allow-run-as-root $mpirun_args"
fi
command -v mpirun >/dev/null || { echo "mpirun is required (apt-get install openmpi-bin)" >&2; exit 1; }
[ -x "$dien" ] || { echo "$dien not found: cargo build --release -p dien-trainer --features mpi" >&2; exit 1; }

data=${DATA:-target/mpi-scaling-data/u$users}
if [ ! -e "$data/local_train_splitByUser" ]; then
    "$dien" generate --out "$data" --users "$users" >/dev/null
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(mpirun --version | head -n 1)"
echo "# data $data, global batch $batch, $steps steps, 1 thread per rank${extra:+, $extra}"
# A number of the summary's `distributed` object.
field() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"; }
base=""
for n in $ranks; do
    # shellcheck disable=SC2086
    summary=$(mpirun $mpirun_args -np "$n" "$dien" train --distributed --data "$data" \
        --out "$scratch/np$n/m.safetensors" --batch "$batch" --threads 1 --max-steps "$steps" \
        --no-recalibrate --quiet $extra 2>"$scratch/np$n.err" | tail -n 1) || {
        cat "$scratch/np$n.err" >&2
        exit 1
    }
    step_s=$(field step_seconds "$summary")
    share=$(field comm_share "$summary")
    bytes=$(field bytes_sent_per_step "$summary")
    sps=$(awk -v b="$batch" -v s="$step_s" 'BEGIN { printf "%.1f", b / s }')
    echo "{\"ranks\":$n,\"batch\":$batch,\"samples_per_s\":$sps,\"step_seconds\":$step_s,\"comm_share\":$share,\"bytes_sent_per_step\":$bytes}"
    if [ -z "$base" ]; then
        base=$sps
    else
        awk -v a="$sps" -v b="$base" -v n="$n" 'BEGIN { printf "# %d ranks: %.2fx the samples/s of one rank\n", n, a / b }'
    fi
done

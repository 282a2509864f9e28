#!/usr/bin/env bash
# Usage: ./submit.sh SPEC.toml OUT [SHARDS]   (SHARDS defaults to 16)
# Queues SHARDS array tasks and a merge that starts once all of them have succeeded.
set -euo pipefail
spec=$1
out=$2
shards=${3:-16}
here=$(dirname "$0")
array=$(sbatch --parsable --array=0-$((shards - 1)) "$here/sweep.sbatch" "$spec" "$out")
sbatch --dependency=afterok:"$array" "$here/merge.sbatch" "$out"

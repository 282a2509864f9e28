#!/usr/bin/env bash
# The same split on one machine with GNU parallel: SHARDS processes, JOBS at a time, then the merge.
# Usage: ./parallel.sh SPEC.toml OUT [SHARDS] [JOBS]   (defaults: 4 shards, 2 at a time)
# Interrupted? Run it again: every shard resumes from its stored points.
set -euo pipefail
spec=$1
out=$2
shards=${3:-4}
jobs=${4:-2}
seq 0 $((shards - 1)) | parallel --jobs "$jobs" --halt now,fail=1 \
    gradlab experiment run "$spec" --out "$out/shard-{}" --shard "{}/$shards" --threads 1
gradlab experiment merge "$out"/shard-* --out "$out/merged"

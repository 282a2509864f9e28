#!/usr/bin/env bash
# Side-by-side gradlab vs PyTorch on this machine, one after the other in one run:
# criterion benches (cells and the GEMM peak on 1 thread, the probe on all cores), then PyTorch
# (cells on 1 thread, the probe on all cores), then the ratio table.
# Needs `pip install torch`. Writes target/peers/pytorch.csv and prints the Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target/peers
RAYON_NUM_THREADS=1 cargo bench --bench bench_main -- '^(gemm|rnn|lstm|gru|train)/' "${@}"
cargo bench --bench bench_main -- '^probe/' "${@}"
python3 benches/peers/pytorch_rnn.py > target/peers/pytorch.csv
python3 benches/peers/compare.py target/peers/pytorch.csv target/criterion

#!/usr/bin/env python3
"""Prints the gradlab/PyTorch table: reads criterion's medians from target/criterion and the
CSV written by pytorch_rnn.py, and reports per benchmark both medians, the speed-up
(PyTorch time / gradlab time) and, for forward+backward, GFLOP/s by the issue's count
(2*B*G*H*(I+H) flops per step forward, twice that backward) with its fraction of the machine's
one-core GEMM peak: the faster of gradlab's square GEMM (criterion group `gemm`, matrixmultiply)
and PyTorch's (torch.mm, the `gemm` rows of the CSV).

Usage: python3 benches/peers/compare.py pytorch.csv [target/criterion] > table.md
"""
import csv
import json
import sys
from pathlib import Path

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
T = 100


def criterion_median(root, bench, ident):
    path = Path(root, bench.replace("/", "_"), ident, "new", "estimates.json")
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] * 1e-9


def gflops(bench, ident, seconds):
    first, second, third = bench.split("/")
    if first == "train":
        # One update: forward and backward of the cell (the head and Adam are a few percent).
        task, t, b, h = ident.split("_")
        t, b, h = int(t[1:]), int(b[1:]), int(h[1:])
        i = 2 if task == "adding" else 10
        return 3 * t * 2 * b * GATES[second] * h * (i + h) / seconds / 1e9
    cell, mode = first, third
    if cell not in GATES:
        return None
    b, i, h = (int(part[1:]) for part in ident.split("_"))
    per_step = 2 * b * GATES[cell] * h * (i + h)
    total = T * per_step * (3 if mode == "forward_backward" else 1)
    return total / seconds / 1e9


def gemm_peaks(root):
    """GFLOP/s of the one-core square GEMM bench per dtype (criterion group `gemm`)."""
    peaks = {}
    for path in Path(root, "gemm").glob("*/new/estimates.json"):
        dtype, size = path.parts[-3].split("_N")
        seconds = json.loads(path.read_text())["median"]["point_estimate"] * 1e-9
        peaks[dtype] = 2 * int(size) ** 3 / seconds / 1e9
    return peaks


def torch_gemm_peaks(torch_csv):
    """GFLOP/s of PyTorch's one-core square GEMM per dtype (the CSV's `gemm` rows)."""
    peaks = {}
    with open(torch_csv) as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            if row["bench"] == "gemm":
                peaks[row["id"].split("_N")[0]] = int(row["elements"]) / float(row["median_seconds"]) / 1e9
    return peaks


def main():
    torch_csv = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else "target/criterion"
    gradlab_peaks, torch_peaks = gemm_peaks(root), torch_gemm_peaks(torch_csv)
    peaks = {}
    for dtype in sorted(set(gradlab_peaks) | set(torch_peaks)):
        g, t = gradlab_peaks.get(dtype, float("nan")), torch_peaks.get(dtype, float("nan"))
        peaks[dtype] = max(gradlab_peaks.get(dtype, 0.0), torch_peaks.get(dtype, 0.0))
        print(f"GEMM peak (one core, 1024³), {dtype}: {peaks[dtype]:.1f} GFLOP/s (gradlab/matrixmultiply {g:.1f}, PyTorch {t:.1f})  ")
    print()
    print("| bench | shape | gradlab | PyTorch | speed-up | gradlab GFLOP/s | of GEMM peak |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with open(torch_csv) as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            if row["bench"] == "gemm":
                continue
            ours = criterion_median(root, row["bench"], row["id"])
            theirs = float(row["median_seconds"])
            if ours is None:
                continue
            g = gflops(row["bench"], row["id"], ours)
            gtxt = f"{g:.1f}" if g is not None else ""
            dtype = [p for p in row["bench"].split("/") if p in ("f32", "f64")][0]
            peak = peaks.get(dtype) if g is not None else None
            ptxt = f"{100 * g / peak:.0f}%" if peak else ""
            print(f"| {row['bench']} | {row['id']} | {ours * 1e3:.3f} ms | {theirs * 1e3:.3f} ms | {theirs / ours:.2f}× | {gtxt} | {ptxt} |")


if __name__ == "__main__":
    main()

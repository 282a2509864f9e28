#!/usr/bin/env python3
"""Trains gradlab's PyTorch cross-check cases with torch in f64 and prints, per case and update,
the loss and the gradient norm before clipping (CSV: case,inputs_fnv1a,step,loss,grad_norm).

Each case folder (written by `cargo test --release --test train -- --ignored export_pytorch_cases`
into target/pytorch-cases/) holds `config.json` and `inputs.safetensors`: the initial model in
PyTorch's layout (`weight_ih_l0`, ..., `head.weight`, `head.bias`) and per update `x{k}` (T, B, I)
with `target{k}` (copy: classes (T, B); adding: sums (B)). Training is what gradlab's trainer does
(THEORY.md section 9): the model's outputs at every step through a linear head; copy: cross-entropy
averaged over all T*B steps; adding: squared error at the last step averaged over the batch;
`clip_grad_norm_` when `clip` is set; `torch.optim.Adam` (single-tensor path, PyTorch's betas and
eps). The output is tests/fixtures/train/pytorch.csv:

    pip install torch safetensors
    python3 benches/peers/train_check.py target/pytorch-cases > tests/fixtures/train/pytorch.csv
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def run(case: Path):
    cfg = json.loads((case / "config.json").read_text())
    raw = (case / "inputs.safetensors").read_bytes()
    t = load_file(case / "inputs.safetensors")
    hidden, copy = cfg["hidden"], cfg["task"] == "copy"
    inputs = t["x0"].shape[2]
    outputs = t["head.weight"].shape[0]
    cell = {
        "rnn": lambda: torch.nn.RNN(inputs, hidden, nonlinearity="tanh"),
        "rnn-relu": lambda: torch.nn.RNN(inputs, hidden, nonlinearity="relu"),
        "lstm": lambda: torch.nn.LSTM(inputs, hidden),
        "gru": lambda: torch.nn.GRU(inputs, hidden),
    }[cfg["cell"]]().double()
    head = torch.nn.Linear(hidden, outputs).double()
    cell.load_state_dict({k: v for k, v in t.items() if k.endswith("_l0")})
    head.load_state_dict({"weight": t["head.weight"], "bias": t["head.bias"]})
    params = list(cell.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=cfg["lr"], foreach=False)
    rows = []
    for k in range(cfg["updates"]):
        x, target = t[f"x{k}"], t[f"target{k}"]
        opt.zero_grad()
        y = head(cell(x)[0])  # (T, B, O)
        if copy:
            loss = torch.nn.functional.cross_entropy(y.reshape(-1, outputs), target.reshape(-1).long())
        else:
            loss = ((y[-1, :, 0] - target) ** 2).mean()
        loss.backward()
        if cfg["clip"] is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, cfg["clip"], foreach=False)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        rows.append((k, loss.item(), norm.item()))
        opt.step()
    return fnv1a(raw), rows


def main():
    torch.set_num_threads(1)
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/pytorch-cases")
    print("case,inputs_fnv1a,step,loss,grad_norm")
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        h, rows = run(case)
        for k, loss, norm in rows:
            print(f"{case.name},{h:016x},{k},{loss!r},{norm!r}")


if __name__ == "__main__":
    main()

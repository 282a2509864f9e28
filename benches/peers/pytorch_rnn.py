#!/usr/bin/env python3
"""Times PyTorch on the shapes of gradlab's criterion benches, the same way: one thread,
T = 100, forward and forward+backward (loss = sum of outputs, gradients for weights and x),
median over repetitions, per call. Also times the "obvious" PyTorch probe of ||dh_T/dh_s||
(spectral and Frobenius, every s) at H = 256, T = 500 in f64, on all cores (gradlab's probe
uses both).

Also times one training update (forward, loss, backward, global-norm clipping at 1, Adam) on
the shapes of gradlab's `train/` benches: the adding problem (last-step MSE) and the copy task
(cross-entropy over every step) at T = 100, batch 32, f32, one thread.

Usage: python3 benches/peers/pytorch_rnn.py [--quick | --train-only] > pytorch.csv
Columns: bench,id,median_seconds,elements (elements = T*B, as criterion's throughput; flops for
the `gemm` rows, a 1024^3 torch.mm on one thread).
"""
import argparse
import os
import statistics
import sys
import time

import torch

T = 100
SHAPES = [(1, 32, 64), (1, 128, 256), (16, 64, 128), (64, 256, 256), (64, 512, 512), (1, 1024, 1024)]
CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def median_time(fn, min_reps=10, min_seconds=1.0, max_seconds=20.0):
    for _ in range(2):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > max_seconds and len(times) >= 3:
            break
    return statistics.median(times)


def bench_cells(shapes, out):
    for cell, cls in CELLS.items():
        for dtype, name in [(torch.float32, "f32"), (torch.float64, "f64")]:
            for b, i, h in shapes:
                torch.manual_seed(1)
                rnn = cls(i, h).to(dtype)
                x = torch.randn(T, b, i, dtype=dtype, requires_grad=True)

                def fwd():
                    with torch.no_grad():
                        rnn(x)

                def fwd_bwd():
                    rnn.zero_grad(set_to_none=True)
                    x.grad = None
                    y, _ = rnn(x)
                    y.sum().backward()

                for mode, fn in [("forward", fwd), ("forward_backward", fwd_bwd)]:
                    sec = median_time(fn)
                    print(f"{cell}/{name}/{mode},B{b}_I{i}_H{h},{sec!r},{T * b}", file=out, flush=True)


# (task, T, B, H) of the training benches; the inputs and outputs are the task's.
TRAIN_SHAPES = [("adding", 100, 32, 32), ("adding", 100, 32, 128), ("copy", 100, 32, 128)]


def bench_train(out):
    """One Adam update of an RNN/LSTM/GRU with a linear head, PyTorch's defaults throughout."""
    for cell, cls in CELLS.items():
        for task, steps, b, h in TRAIN_SHAPES:
            torch.manual_seed(1)
            inputs, outputs = (2, 1) if task == "adding" else (10, 10)
            rnn, head = cls(inputs, h), torch.nn.Linear(h, outputs)
            params = list(rnn.parameters()) + list(head.parameters())
            opt = torch.optim.Adam(params, lr=1e-3)
            x = torch.rand(steps, b, inputs)
            if task == "adding":
                target = torch.rand(b) * 2
            else:
                target = torch.randint(0, 10, (steps * b,))

            def update():
                opt.zero_grad(set_to_none=True)
                y = head(rnn(x)[0])
                if task == "adding":
                    loss = ((y[-1, :, 0] - target) ** 2).mean()
                else:
                    loss = torch.nn.functional.cross_entropy(y.reshape(-1, outputs), target)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()

            sec = median_time(update)
            print(f"train/{cell}/f32,{task}_T{steps}_B{b}_H{h},{sec!r},1", file=out, flush=True)


def bench_gemm(out, n=1024):
    """One-core square GEMM (torch.mm, MKL/oneDNN), as gradlab's `gemm` bench group."""
    for dtype, name in [(torch.float32, "f32"), (torch.float64, "f64")]:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        sec = median_time(lambda: torch.mm(a, b))
        print(f"gemm,{name}_N{n},{sec!r},{2 * n**3}", file=out, flush=True)


def probe_rnn(w_hh, b_ih, b_hh, w_ih, x):
    """||dh_T/dh_s|| for every s, accumulating P_s = P_{s+1} J_{s+1}, J = diag(1-h^2) W_hh."""
    h = torch.zeros(w_hh.shape[0], dtype=x.dtype)
    ds = []
    for t in range(x.shape[0]):
        a = w_ih @ x[t] + b_ih + w_hh @ h + b_hh
        h = torch.tanh(a)
        ds.append(1 - h * h)
    p = torch.eye(w_hh.shape[0], dtype=x.dtype)
    norms = []
    for d in reversed(ds):
        p = p @ (d[:, None] * w_hh)
        norms.append((torch.linalg.matrix_norm(p, ord=2).item(), torch.linalg.matrix_norm(p).item()))
    return norms


def probe_lstm(w_hh, b, w_ih, x):
    """The same for the LSTM's full (h, c) state: 2H x 2H one-step Jacobians (THEORY.md §4)."""
    hid = w_hh.shape[1]
    h = torch.zeros(hid, dtype=x.dtype)
    c = torch.zeros(hid, dtype=x.dtype)
    jacs = []
    u_i, u_f, u_g, u_o = w_hh.split(hid)
    for t in range(x.shape[0]):
        a = w_ih @ x[t] + b + w_hh @ h
        ai, af, ag, ao = a.split(hid)
        i, f, g, o = torch.sigmoid(ai), torch.sigmoid(af), torch.tanh(ag), torch.sigmoid(ao)
        c_prev = c
        c = f * c + i * g
        tc = torch.tanh(c)
        h = o * tc
        A = (c_prev * f * (1 - f))[:, None] * u_f + (g * i * (1 - i))[:, None] * u_i + (i * (1 - g * g))[:, None] * u_g
        E = o * (1 - tc * tc)
        top = torch.cat([(tc * o * (1 - o))[:, None] * u_o + E[:, None] * A, torch.diag(E * f)], dim=1)
        bottom = torch.cat([A, torch.diag(f)], dim=1)
        jacs.append(torch.cat([top, bottom], dim=0))
    p = torch.eye(2 * hid, dtype=x.dtype)
    norms = []
    for j in reversed(jacs):
        p = p @ j
        for m in (p[:hid, :hid], p[hid:, hid:], p):
            norms.append((torch.linalg.matrix_norm(m, ord=2).item(), torch.linalg.matrix_norm(m).item()))
    return norms


def bench_probes(out):
    torch.manual_seed(1)
    hid, steps, inp = 256, 500, 32
    x = torch.randn(steps, inp, dtype=torch.float64)
    rnn = torch.nn.RNN(inp, hid).double()
    w = {k: v.detach() for k, v in rnn.state_dict().items()}
    sec = median_time(lambda: probe_rnn(w["weight_hh_l0"], w["bias_ih_l0"], w["bias_hh_l0"], w["weight_ih_l0"], x), min_reps=3, min_seconds=0)
    print(f"probe/f64/H256_T500,rnn,{sec!r},{steps}", file=out, flush=True)
    lstm = torch.nn.LSTM(inp, hid).double()
    w = {k: v.detach() for k, v in lstm.state_dict().items()}
    b = w["bias_ih_l0"] + w["bias_hh_l0"]
    sec = median_time(lambda: probe_lstm(w["weight_hh_l0"], b, w["weight_ih_l0"], x), min_reps=3, min_seconds=0)
    print(f"probe/f64/H256_T500,lstm,{sec!r},{steps}", file=out, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the two smallest shapes, no probes")
    ap.add_argument("--train-only", action="store_true", help="only the training updates")
    ap.add_argument("--no-probe", action="store_true", help="everything but the probes (one thread throughout)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, {torch.__config__.parallel_info().splitlines()[0]}", file=sys.stderr)
    print("bench,id,median_seconds,elements")
    if args.train_only:
        bench_train(sys.stdout)
        return
    shapes = [SHAPES[0], SHAPES[2]] if args.quick else SHAPES
    bench_gemm(sys.stdout)
    bench_train(sys.stdout)
    bench_cells(shapes, sys.stdout)
    if not (args.quick or args.no_probe):
        # The probe peer may use every core, as gradlab's probe does.
        torch.set_num_threads(os.cpu_count())
        bench_probes(sys.stdout)


if __name__ == "__main__":
    main()

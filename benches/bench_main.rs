//! Throughput benchmarks: the machine's GEMM peak (one core), forward and forward+backward for
//! every cell in f32 and f64 over the shapes PyTorch is compared on (T = 100), and the
//! gradient-flow probe at H = 256, T = 500; one training update (forward, loss, backward,
//! clipping, Adam) on the adding and copy tasks at T = 100, batch 32, f32.
//! One axis per group (the shape); throughput is T·B sequence steps per second.
//!
//! `cargo bench` runs everything (~10 minutes on 2 cores). `GRADLAB_BENCH_SHAPES=small` keeps
//! the two smallest shapes; `cargo bench -- --test` runs each benchmark once (CI's smoke run).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gradlab::bptt::{Inputs, backward, backward_into, forward, forward_into};
use gradlab::cell::CellKind;
use gradlab::init::InitSpec;
use gradlab::linalg::{Op, gemm};
use gradlab::params::Params;
use gradlab::probe::{Quantity, jacobian_flow};
use gradlab::scalar::Scalar;
use gradlab::train::optim::AdamConfig;
use gradlab::train::tasks::{Task, TaskKind};
use gradlab::train::trainer::{Learner, TrainConfig, batches, initial_params};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

const STEPS: usize = 100;
/// (B, I, H), as in the PyTorch comparison.
const SHAPES: [(usize, usize, usize); 6] =
    [(1, 32, 64), (1, 128, 256), (16, 64, 128), (64, 256, 256), (64, 512, 512), (1, 1024, 1024)];

fn shapes() -> Vec<(usize, usize, usize)> {
    match std::env::var("GRADLAB_BENCH_SHAPES").as_deref() {
        Ok("small") => SHAPES[..1].iter().chain(&SHAPES[2..3]).copied().collect(),
        _ => SHAPES.to_vec(),
    }
}

/// A PyTorch-default model (no head) and inputs x ~ U(-1, 1), cast to `T`.
fn setup<T: Scalar>(cell: CellKind, b: usize, i: usize, h: usize, steps: usize) -> (Params<T>, Inputs<T>) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let p = InitSpec::default().build(cell, 1, i, h, &mut rng);
    let x = DMatrix::from_fn(i, steps * b, |r, c| ((r * 7 + c * 13) as f64 * 0.1).sin());
    let inputs = Inputs::with_zero_state(&p, x, steps, b);
    (p.cast(), inputs.cast())
}

fn bench_cell<T: Scalar>(c: &mut Criterion, cell: CellKind) {
    for mode in ["forward", "forward_backward"] {
        let mut group = c.benchmark_group(format!("{cell}/{}/{mode}", T::NAME));
        group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(10);
        for (b, i, h) in shapes() {
            group.throughput(Throughput::Elements((STEPS * b) as u64));
            // Set up on first use, so benches left out by a filter cost nothing (and stay out of
            // profiles). One tape and one set of gradients reused across iterations, as a sweep
            // over one shape would.
            let mut state = None;
            group.bench_with_input(BenchmarkId::from_parameter(format!("B{b}_I{i}_H{h}")), &(), |bench, _| {
                let (p, inputs, dy, tape, grads) = state.get_or_insert_with(|| {
                    let (p, inputs) = setup::<T>(cell, b, i, h, STEPS);
                    let dy = DMatrix::from_element(h, STEPS * b, T::one());
                    let tape = forward(&p, &inputs);
                    let grads = backward(&p, &inputs, &tape, &dy);
                    (p, inputs, dy, tape, grads)
                });
                bench.iter(|| {
                    forward_into(black_box(&*p), black_box(&*inputs), tape);
                    if mode == "forward_backward" {
                        backward_into(p, inputs, tape, dy, grads);
                    }
                    black_box(&*grads);
                })
            });
        }
        group.finish();
    }
}

fn cells(c: &mut Criterion) {
    for cell in CellKind::ALL {
        bench_cell::<f32>(c, cell);
        bench_cell::<f64>(c, cell);
    }
}

/// ‖∂h_T/∂h_s‖ spectral and Frobenius for every s (the LSTM: its full (h, c) state as well).
fn probe(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe/f64/H256_T500");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(5)).sample_size(10);
    for cell in CellKind::ALL {
        let which: &[Quantity] =
            if cell == CellKind::Lstm { &[Quantity::Dh, Quantity::Dc, Quantity::Dstate] } else { &[Quantity::Dh] };
        group.throughput(Throughput::Elements(500));
        let mut state = None;
        group.bench_with_input(BenchmarkId::from_parameter(cell), &(), |bench, _| {
            let (p, tape) = state.get_or_insert_with(|| {
                let (p, inputs) = setup::<f64>(cell, 1, 32, 256, 500);
                let tape = forward(&p, &inputs);
                (p, tape)
            });
            bench.iter(|| black_box(jacobian_flow(p, tape, 0, 0, which)))
        });
    }
    group.finish();
}

/// (task, T, B, H) of the training benches, as in the PyTorch comparison.
const TRAIN_SHAPES: [(TaskKind, usize, usize, usize); 3] =
    [(TaskKind::Adding, 100, 32, 32), (TaskKind::Adding, 100, 32, 128), (TaskKind::Copy, 100, 32, 128)];

/// One Adam update with clipping at 1 (`train::trainer::Learner::step`) on a fixed batch: the
/// work of every update of `gradlab train` and the trainability experiment. Throughput: updates.
fn training(c: &mut Criterion) {
    let shapes = match std::env::var("GRADLAB_BENCH_SHAPES").as_deref() {
        Ok("small") => &TRAIN_SHAPES[..1],
        _ => &TRAIN_SHAPES[..],
    };
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let mut group = c.benchmark_group(format!("train/{cell}/f32"));
        group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(10);
        group.throughput(Throughput::Elements(1));
        for &(kind, steps, batch, hidden) in shapes {
            let task = Task::of_length(kind, steps);
            let mut state = None;
            let id = format!("{}_T{steps}_B{batch}_H{hidden}", kind.name());
            group.bench_with_input(BenchmarkId::from_parameter(id), &(), |bench, _| {
                let (learner, batch) = state.get_or_insert_with(|| {
                    let config = TrainConfig {
                        task,
                        cell,
                        init: InitSpec::default(),
                        hidden,
                        batch,
                        steps: 1,
                        adam: AdamConfig::default(),
                        clip: Some(1.0),
                        seed: 1,
                        probe_every: 0,
                        threshold: 1e-3,
                    };
                    let batch = batches(&config).next().expect("endless");
                    (Learner::<f32>::new(initial_params(&config).cast(), config.adam, config.clip), batch)
                });
                bench.iter(|| black_box(learner.step(black_box(&*batch), true)))
            });
        }
        group.finish();
    }
}

/// The practical GEMM peak of one core: a square product through the kernel every bench uses
/// (`linalg::gemm`, called off the rayon pool, so on one thread). Throughput counts flops.
fn gemm_peak(c: &mut Criterion) {
    let n = if std::env::var("GRADLAB_BENCH_SHAPES").as_deref() == Ok("small") { 256 } else { 1024 };
    let mut group = c.benchmark_group("gemm");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(10);
    group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    bench_gemm::<f32>(&mut group, n);
    bench_gemm::<f64>(&mut group, n);
    group.finish();
}

fn bench_gemm<T: Scalar>(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, n: usize) {
    let mut state = None;
    group.bench_function(BenchmarkId::from_parameter(format!("{}_N{n}", T::NAME)), |bench| {
        let (a, b, out) = state.get_or_insert_with(|| {
            let a = DMatrix::from_fn(n, n, |i, j| T::of(((i * 7 + j * 3) % 11) as f64 * 0.1));
            let b = DMatrix::from_fn(n, n, |i, j| T::of(((i * 5 + j) % 13) as f64 * 0.1));
            (a, b, DMatrix::zeros(n, n))
        });
        bench.iter(|| gemm(T::one(), a.as_view(), Op::N, b.as_view(), Op::N, T::zero(), out.as_view_mut()))
    });
}

criterion_group! {
    name = benches;
    // No HTML plots: criterion's plotters charts would need system fonts.
    config = Criterion::default().without_plots();
    targets = gemm_peak, cells, probe, training
}
criterion_main!(benches);

//! Seeded fuzzing on stable Rust of the two readers of user files: the experiment spec parser and
//! the safetensors model reader. A mutator derives inputs from valid files (the built-in specs,
//! the reference cases' weights and inputs): numbers swapped for extreme ones, names and dtypes
//! swapped, lines and bytes dropped, duplicated, flipped or cut. Every input must be accepted or
//! rejected with an error whose exit code is 2 and whose message is one non-empty line; a panic
//! fails the test and prints the input that caused it (and the seed that reproduces it).
//!
//! `GRADLAB_FUZZ_INPUTS` sets the inputs per reader (default 20 000), `GRADLAB_FUZZ_SEED` the
//! seed (default fixed, so CI runs the same inputs every time; set it to explore others).

use gradlab::error::Error;
use gradlab::experiment::grid::expand;
use gradlab::experiment::spec::Spec;
use gradlab::model_file::{load_inputs, load_params, load_targets};
use gradlab::params::Params;
use gradlab::tensors::TensorFile;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn inputs_per_reader() -> usize {
    std::env::var("GRADLAB_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn seed() -> u64 {
    std::env::var("GRADLAB_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x0067_7261_646c_6162)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Numbers a reader must range-check.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "-1",
    "-0",
    "3.5",
    "4096",
    "4097",
    "65537",
    "100000",
    "1000000000",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e308",
    "1e400",
    "-1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
];

/// How the counts of a fuzz run came out.
#[derive(Default, Debug)]
struct Tally {
    accepted: usize,
    rejected: usize,
}

impl Tally {
    /// Checks one outcome: `Ok`, or an error that exits 2 with a one-line message.
    fn record(&mut self, outcome: std::thread::Result<Result<(), Error>>, input: &dyn Fn() -> String, seed: u64) {
        match outcome {
            Ok(Ok(())) => self.accepted += 1,
            Ok(Err(e)) => {
                let message = e.to_string();
                assert_eq!(e.exit_code(), 2, "exit code of {message:?} for input (seed {seed}):\n{}", input());
                assert!(
                    !message.trim().is_empty() && !message.trim_end().contains('\n'),
                    "an error must be one non-empty line, got {message:?} for input (seed {seed}):\n{}",
                    input()
                );
                self.rejected += 1;
            }
            Err(_) => panic!("the reader panicked on this input (seed {seed}):\n{}", input()),
        }
    }

    /// The mutator must reach both sides, or the run says little.
    fn check_both_sides(&self, what: &str, n: usize) {
        eprintln!("{what}: {n} inputs, {} accepted, {} rejected", self.accepted, self.rejected);
        assert_eq!(self.accepted + self.rejected, n);
        assert!(self.accepted >= n / 100, "{what}: only {} of {n} mutants were accepted", self.accepted);
        assert!(self.rejected >= n / 10, "{what}: only {} of {n} mutants were rejected", self.rejected);
    }
}

/// Replaces the `k`-th run of digits (with sign, point and exponent) in `text` by `with`.
fn replace_number(text: &str, rng: &mut ChaCha8Rng, with: &str) -> String {
    let b = text.as_bytes();
    let mut starts = Vec::new();
    for i in 0..b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'.')) {
            starts.push(i);
        }
    }
    if starts.is_empty() {
        return text.to_string();
    }
    let s = starts[rng.random_range(0..starts.len())];
    let mut e = s;
    while e < b.len() && (b[e].is_ascii_digit() || b".eE+-_".contains(&b[e])) {
        e += 1;
    }
    format!("{}{with}{}", &text[..s], &text[e..])
}

/// Replaces one `"..."` string in `text` by `"with"`.
fn replace_string(text: &str, rng: &mut ChaCha8Rng, with: &str) -> String {
    let quotes: Vec<usize> = text.match_indices('"').map(|(i, _)| i).collect();
    if quotes.len() < 2 {
        return text.to_string();
    }
    let k = rng.random_range(0..quotes.len() / 2) * 2;
    format!("{}\"{with}\"{}", &text[..quotes[k]], &text[quotes[k + 1] + 1..])
}

/// One to three mutations of a text's lines, tokens or bytes.
fn mutate_text(text: &str, rng: &mut ChaCha8Rng, strings: &[&str], snippets: &[&str]) -> String {
    let mut t = text.to_string();
    for _ in 0..rng.random_range(1..=3) {
        let mut lines: Vec<String> = t.lines().map(str::to_string).collect();
        t = match rng.random_range(0..9) {
            0..=2 => {
                let with = NUMBERS[rng.random_range(0..NUMBERS.len())];
                replace_number(&t, rng, with)
            }
            3 | 4 => {
                let with = strings[rng.random_range(0..strings.len())];
                replace_string(&t, rng, with)
            }
            5 => {
                let at = rng.random_range(0..=lines.len());
                lines.insert(at, snippets[rng.random_range(0..snippets.len())].to_string());
                lines.join("\n")
            }
            6 if !lines.is_empty() => {
                let i = rng.random_range(0..lines.len());
                if rng.random_bool(0.5) {
                    lines.remove(i);
                } else {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                }
                lines.join("\n")
            }
            6 => t,
            7 => {
                let mut bytes = t.into_bytes();
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.random_range(0..8);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => {
                let cut = rng.random_range(0..=t.len());
                String::from_utf8_lossy(&t.as_bytes()[..cut]).into_owned()
            }
        };
    }
    t
}

/// What README promises of an accepted spec: sizes in range, nothing listed twice, a grid.
fn accepted_spec_keeps_the_contract(spec: &Spec) {
    use gradlab::experiment::spec::{MAX_BATCH, MAX_HIDDEN, MAX_INPUT, MAX_SEQ_LEN};
    assert!(spec.hidden.iter().all(|h| (1..=MAX_HIDDEN).contains(h)), "hidden {:?}", spec.hidden);
    assert!(spec.seq_len.iter().all(|t| (2..=MAX_SEQ_LEN).contains(t)), "seq_len {:?}", spec.seq_len);
    assert!((1..=MAX_BATCH).contains(&spec.batch) && (1..=MAX_INPUT).contains(&spec.input_size));
    let distinct = |v: Vec<String>| v.iter().enumerate().all(|(i, x)| !v[..i].contains(x));
    assert!(distinct(spec.seeds.iter().map(u64::to_string).collect()), "seeds {:?}", spec.seeds);
    assert!(distinct(spec.hidden.iter().map(usize::to_string).collect()), "hidden {:?}", spec.hidden);
    assert!(distinct(spec.inits.iter().map(|i| i.label.clone()).collect()), "inits listed twice");
    assert!(spec.probes.lyapunov_burn_in < *spec.seq_len.iter().min().unwrap(), "burn-in ≥ T");
    assert!(spec.probes.horizon_threshold > 0.0 && spec.probes.horizon_threshold < 1.0);
    assert!(!spec.out.as_os_str().is_empty(), "an empty out");
    if let Some(t) = &spec.train {
        use gradlab::experiment::spec::{MAX_LAG, MAX_UPDATES};
        use gradlab::train::tasks::Task;
        assert!(!t.tasks.is_empty() && !t.lags.is_empty() && !t.clips.is_empty());
        assert!(t.tasks.iter().all(|&k| t.lags.iter().all(|l| (Task::min_lag(k)..=MAX_LAG).contains(l))), "{t:?}");
        assert!((1..=MAX_UPDATES).contains(&t.steps) && (1..=MAX_BATCH).contains(&t.batch), "{t:?}");
        assert!(t.lr.is_finite() && t.lr > 0.0 && t.clips.iter().flatten().all(|&c| c.is_finite() && c > 0.0));
        assert!((1..=t.steps).contains(&t.probe_every) && (1..=t.steps).contains(&t.log_every), "{t:?}");
    }
    let points = expand(spec);
    assert!(!points.is_empty(), "an accepted spec has points");
}

#[test]
fn the_spec_parser_accepts_or_rejects_every_mutant_with_exit_2() {
    let corpus: Vec<String> = ["vanishing", "gates", "memory", "edge-of-chaos", "precision", "trainability"]
        .iter()
        .map(|n| std::fs::read_to_string(root().join("experiments").join(format!("{n}.toml"))).unwrap())
        .collect();
    let strings = [
        "",
        "rnn",
        "lstm",
        "gru",
        "gates",
        "vanishing",
        "memory",
        "edge-of-chaos",
        "precision",
        "trainability",
        "copy",
        "adding",
        "f16",
        "dh",
        "dstate",
        "dc_total",
        "orthogonal(1e308)",
        "orthogonal(-1)",
        "gaussian(nan)",
        "gaussian(0)",
        "xavier(inf)",
        "identity(18446744073709551616)",
        "spectral-radius(0)",
        "spectral-norm(1e-320)",
        "chrono(0)",
        "chrono(1)",
        "chrono(18446744073709551615)",
        "forget-bias(1e400)",
        "constant(",
        "zeros()",
        "uniform-pytorch",
        "uniform(-0)",
        "gaussian(1e308)",
        "zeros",
        "../x",
        "a b",
        "ünï",
    ];
    let snippets = [
        "[init.extra]",
        "recurrent = \"zeros\"",
        "gate_bias = \"forget-bias(1)\"",
        "lyapunov = 1000000",
        "lyapunov = 0",
        "lyapunov_burn_in = 18446744073709551615",
        "horizon_threshold = 0",
        "horizon_threshold = nan",
        "gains = [0.5, 0.5]",
        "gains = [1e308]",
        "quantities = [\"dstate\", \"dstate\"]",
        "seeds = [0, 0]",
        "hidden = [4096]",
        "seq_len = [1000000]",
        "batch = 4096",
        "input_size = 65536",
        "out = \"\"",
        "[probes]",
        "unknown = 1",
        "cells = []",
        "inits = [\"nope\"]",
        "[train]",
        "tasks = []",
        "tasks = [\"copy\", \"copy\"]",
        "lags = [1]",
        "lags = [100001]",
        "lags = [18446744073709551615]",
        "steps = 0",
        "steps = 10000001",
        "lr = -1",
        "lr = nan",
        "clips = [0]",
        "clips = [inf, inf]",
        "clips = [nan]",
        "probe_every = 0",
        "log_every = 18446744073709551615",
        "precision = \"f16\"",
    ];
    let n = inputs_per_reader();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tally = Tally::default();
    for _ in 0..n {
        let text = mutate_text(&corpus[rng.random_range(0..corpus.len())], &mut rng, &strings, &snippets);
        let outcome =
            catch_unwind(AssertUnwindSafe(|| Spec::parse(&text).map(|spec| accepted_spec_keeps_the_contract(&spec))));
        tally.record(outcome, &|| text.clone(), seed);
    }
    tally.check_both_sides("spec parser", n);
}

/// A safetensors file: the 8-byte header length, the JSON header, the data.
fn split(bytes: &[u8]) -> (String, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(), bytes[8 + n..].to_vec())
}

fn join(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// A mutant of a valid safetensors file: its header edited as text (the length fixed up, mostly),
/// values overwritten with special floats, or its bytes flipped or cut.
fn mutate_safetensors(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let (header, mut data) = split(bytes);
    let names = [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
        "weight_hh_l1",
        "bias_hh_l1000000000000",
        "bias_hh_l18446744073709551615",
        "weight_ih_l01",
        "rnn.weight_hh_l0",
        "head.weight",
        "head.bias",
        "x",
        "h0",
        "c0",
        "target",
        "labels",
        "F16",
        "BF16",
        "F32",
        "F64",
        "I64",
        "U8",
        "BOOL",
        "F8_E4M3",
    ];
    match rng.random_range(0..10) {
        0..=5 => {
            let edited = mutate_text(&header, rng, &names, &["", "}", "{\"a\":{}}"]);
            let mut out = join(&edited, &data);
            if rng.random_bool(0.1) {
                out[..8].copy_from_slice(&(rng.random_range(0..2 * header.len() as u64)).to_le_bytes());
            }
            out
        }
        6 | 7 => {
            let specials = [f64::NAN, f64::INFINITY, -f64::INFINITY, f64::MAX, 1e-310, -0.0, 1e200];
            for _ in 0..rng.random_range(1..=4) {
                if data.len() >= 8 {
                    let i = rng.random_range(0..data.len() / 8) * 8;
                    let v = specials[rng.random_range(0..specials.len())];
                    data[i..i + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            join(&header, &data)
        }
        8 => {
            let mut out = bytes.to_vec();
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..out.len());
                out[i] = rng.random();
            }
            out
        }
        _ => bytes[..rng.random_range(0..bytes.len())].to_vec(),
    }
}

/// What the commands do with a weights file and an input file: read the model (f64 and f32), its
/// inputs and targets, and run it forward.
fn read_and_run(weights: &TensorFile, input: &TensorFile) -> Result<(), Error> {
    let params: Params<f64> = load_params(weights, None)?;
    let _: Params<f32> = load_params(weights, None)?;
    let inputs = load_inputs(input, &params)?;
    load_targets(input, &params, &inputs, None)?;
    let tape = gradlab::bptt::forward(&params, &inputs);
    assert!(tape.y.iter().all(|v| v.is_finite()) || tape.y.is_empty(), "finite weights and inputs give finite outputs");
    Ok(())
}

#[test]
fn the_safetensors_reader_accepts_or_rejects_every_mutant_with_exit_2() {
    let cases: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/oracle"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        v.sort();
        v
    };
    assert!(cases.len() >= 5, "the reference cases are the corpus");
    let read = |p: &Path| std::fs::read(p).unwrap();
    let corpus: Vec<(Vec<u8>, Vec<u8>)> =
        cases.iter().map(|c| (read(&c.join("weights.safetensors")), read(&c.join("input.safetensors")))).collect();
    let n = inputs_per_reader();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 1);
    let mut tally = Tally::default();
    let label = PathBuf::from("mutant.safetensors");
    for _ in 0..n {
        let (w, x) = &corpus[rng.random_range(0..corpus.len())];
        let mutate_weights = rng.random_bool(0.5);
        let (w, x) = if mutate_weights {
            (mutate_safetensors(w, &mut rng), x.clone())
        } else {
            (w.clone(), mutate_safetensors(x, &mut rng))
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let weights = TensorFile::parse(label.clone(), &w)?;
            let input = TensorFile::parse(label.clone(), &x)?;
            read_and_run(&weights, &input)
        }));
        let mutant = if mutate_weights { &w } else { &x };
        tally.record(
            outcome,
            &|| {
                format!(
                    "{} file, {} bytes: {:?}",
                    if mutate_weights { "weights" } else { "input" },
                    mutant.len(),
                    String::from_utf8_lossy(mutant)
                )
            },
            seed,
        );
    }
    tally.check_both_sides("safetensors reader", n);
}

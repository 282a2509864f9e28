//! f32 against f64 on a moderate case: the same code in both precisions agrees to what f32
//! round-off allows, and the f32 run really is f32.

mod common;

use common::*;
use gradlab::bptt::gradients;
use gradlab::cell::CellKind;

#[test]
fn f32_gradients_agree_with_f64() {
    for (n, kind) in CellKind::ALL.into_iter().enumerate() {
        let mut r = rng(300 + n as u64);
        let params = random_params(kind, 2, 8, 32, Some(5), 0.3, &mut r);
        let inputs = random_inputs(&params, 20, 4, &mut r);
        let targets = random_targets(&params, 20, 4, n % 2 == 0, &mut r);
        let (_, loss64, g64) = gradients(&params, &inputs, &targets);
        let (_, loss32, g32) = gradients(&params.cast::<f32>(), &inputs.cast::<f32>(), &targets.cast::<f32>());
        assert!(((loss32 as f64 - loss64) / loss64).abs() < 1e-5, "{kind}: loss {loss32} vs {loss64}");
        let mut worst = 0.0_f64;
        let as64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let t64 = g64.params.to_tensors();
        for ((name, _, a), (_, _, b)) in g32.params.to_tensors().iter().zip(&t64) {
            let e = rel_err(name, &as64(a), b);
            assert!(e < 1e-4, "{kind}: {name} f32 vs f64 relative error {e:.2e}");
            worst = worse(worst, e);
        }
        let e = rel_err("x", &as64(g32.x.as_slice()), g64.x.as_slice());
        assert!(e < 1e-4, "{kind}: x f32 vs f64 relative error {e:.2e}");
        assert!(worst > 1e-9, "{kind}: f32 agrees to {worst:.1e}, better than f32 can: not computed in f32?");
        println!("{kind}: worst f32-vs-f64 relative error {worst:.2e}");
    }
}

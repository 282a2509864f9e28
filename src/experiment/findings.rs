//! Findings: what an experiment's numbers say about a claim, computed from its rows, never typed
//! in. A finding lists the cases (inits, gains, …) where the claim holds and where it fails; its
//! verdict follows from the two lists, so a spec that changes the cases can flip it.

use serde::{Deserialize, Serialize};

/// A claim the experiments test: the seeds' (THEORY.md, seed 001) and the theory's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Claim {
    /// Seed 001: a tanh RNN's gradient vanishes with distance.
    RnnVanishes,
    /// Seed 001: an LSTM's state carries the gradient further than a tanh RNN's.
    LstmRemembers,
    /// Seed 001: F = diag(f_t) dominates ∂c_t/∂c_{t-1}.
    FDominates,
    /// Seed 001: ∏ f_t carries the gradient along the cell state.
    ProdFCarries,
    /// THEORY.md §6: ½ ln χ(q*) predicts a wide random tanh RNN's decay rate within 0.01 per step.
    MeanFieldRate,
    /// That a gradient's exact norm is what training receives: no loss to f32 underflow.
    F32Delivers,
    /// Folk wisdom behind seed 001: a cell learns a dependency only as far as its gradient
    /// reaches at initialisation.
    HorizonPredicts,
}

impl Claim {
    /// The claim in words, with where it comes from.
    pub fn text(self) -> &'static str {
        match self {
            Claim::RnnVanishes => "a tanh RNN's gradient vanishes with distance (seed 001)",
            Claim::LstmRemembers => "an LSTM's state carries the gradient further than a tanh RNN's (seed 001)",
            Claim::FDominates => "F = diag(f_t) dominates dc_t/dc_(t-1) (seed 001)",
            Claim::ProdFCarries => "the product of forget gates carries the gradient along c (seed 001)",
            Claim::MeanFieldRate => "½ ln χ predicts the tanh RNN's decay rate within 0.01/step (THEORY §6)",
            Claim::F32Delivers => "f32 BPTT delivers the gradient as far as its exact norm reaches",
            Claim::HorizonPredicts => "a cell learns a lag only if its gradient horizon at initialisation spans it",
        }
    }
}

/// What the cases say about a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// In every case measured.
    Holds,
    /// In none.
    Fails,
    /// In some: the finding's `holds` list says which.
    HoldsOnlyWhen,
    /// No case measured decides it (the sentence says why).
    Untested,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Holds => "holds",
            Verdict::Fails => "fails",
            Verdict::HoldsOnlyWhen => "holds only when",
            Verdict::Untested => "untested",
        })
    }
}

/// One finding: a row of `findings.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub claim: Claim,
    pub verdict: Verdict,
    /// The cases where the claim holds, each with its number ("chrono (100%)"), "; "-separated.
    pub holds: String,
    /// The cases where it fails, likewise.
    pub fails: String,
    /// The sentence for the report, with the numbers.
    pub sentence: String,
}

impl Finding {
    /// A finding whose verdict follows from the cases: `holds` and `fails` are the cases' labels
    /// with their numbers; `sentence` says what was measured.
    pub fn new(claim: Claim, holds: Vec<String>, fails: Vec<String>, sentence: String) -> Finding {
        let verdict = match (holds.is_empty(), fails.is_empty()) {
            (true, true) => Verdict::Untested,
            (false, true) => Verdict::Holds,
            (true, false) => Verdict::Fails,
            (false, false) => Verdict::HoldsOnlyWhen,
        };
        Finding { claim, verdict, holds: holds.join("; "), fails: fails.join("; "), sentence }
    }

    /// The finding as a Markdown bullet: verdict, where it holds and fails, the sentence.
    pub fn markdown(&self) -> String {
        let mut s = format!("- **{}** — {}: {}.", self.verdict, self.claim.text(), self.sentence);
        if !self.holds.is_empty() {
            s.push_str(&format!(" Holds: {}.", self.holds));
        }
        if !self.fails.is_empty() {
            s.push_str(&format!(" Fails: {}.", self.fails));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_follows_from_the_cases() {
        let f = |h: &[&str], x: &[&str]| {
            Finding::new(
                Claim::FDominates,
                h.iter().map(|s| s.to_string()).collect(),
                x.iter().map(|s| s.to_string()).collect(),
                "s".into(),
            )
            .verdict
        };
        assert_eq!(f(&["a"], &[]), Verdict::Holds);
        assert_eq!(f(&[], &["b"]), Verdict::Fails);
        assert_eq!(f(&["a"], &["b"]), Verdict::HoldsOnlyWhen);
        assert_eq!(f(&[], &[]), Verdict::Untested);
        let md = Finding::new(Claim::FDominates, vec!["a (1%)".into()], vec!["b (2%)".into()], "x".into()).markdown();
        assert!(md.starts_with("- **holds only when** — F = diag") && md.contains("Holds: a (1%). Fails: b (2%)."));
    }
}

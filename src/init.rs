//! Seeded, reproducible parameter initialization. Each parameter draws from its own stream,
//! seeded from the run seed and the parameter's name, so adding a parameter does not change
//! the others' values.
use crate::plan::{Init, Plan, Role, TensorId};

/// SplitMix64: small, fast, and good enough for weight init.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// FNV-1a of a name, to derive per-parameter streams.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The initial values of every parameter of the plan, for `seed`.
pub fn init_params(plan: &Plan, seed: u64) -> Vec<(TensorId, Vec<f32>)> {
    plan.params
        .iter()
        .map(|slot| {
            let desc = plan.tensor(slot.param);
            let Role::Param { init, .. } = desc.role else {
                unreachable!("param slots hold params")
            };
            let mut rng = Rng::new(seed ^ name_hash(&desc.name));
            let n = desc.numel();
            let values: Vec<f32> = match init {
                Init::Zeros => vec![0.0; n],
                Init::Constant(c) => vec![c; n],
                Init::Normal { std } => {
                    (0..n).map(|_| (rng.normal() * std as f64) as f32).collect()
                }
                Init::Uniform { bound } => (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound as f64) as f32)
                    .collect(),
                Init::ResidMix => (0..n).map(|i| if i < n / 2 { 1.0 } else { 0.0 }).collect(),
            };
            (slot.param, values)
        })
        .collect()
}

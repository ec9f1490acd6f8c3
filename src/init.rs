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
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The initial values of every parameter of the plan, for `seed`.
pub fn init_params(plan: &Plan, seed: u64) -> Vec<(TensorId, Vec<f32>)> {
    plan.params
        .iter()
        .map(|slot| {
            let desc = plan.tensor(slot.param);
            let Role::Param { init, .. } = desc.role else { unreachable!("param slots hold params") };
            let mut rng = Rng::new(seed ^ name_hash(&desc.name));
            let n = desc.numel();
            let values: Vec<f32> = match init {
                Init::Zeros => vec![0.0; n],
                Init::Constant(c) => vec![c; n],
                Init::Normal { std } => (0..n).map(|_| (rng.normal() * std as f64) as f32).collect(),
                Init::Uniform { bound } => {
                    (0..n).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound as f64) as f32).collect()
                }
                Init::ResidMix => (0..n).map(|i| if i < n / 2 { 1.0 } else { 0.0 }).collect(),
                Init::Orthogonal { gain } => {
                    let (rows, cols) = (desc.shape[0], n / desc.shape[0]);
                    orthogonal(rows, cols, &mut rng).into_iter().map(|v| (v * gain as f64) as f32).collect()
                }
            };
            (slot.param, values)
        })
        .collect()
}

/// A `rows x cols` (row-major) matrix with orthonormal rows (rows <= cols) or columns
/// (rows > cols), from a normal matrix by modified Gram-Schmidt in f64. Gram-Schmidt gives
/// the QR factor with a positive diagonal in R, which is what PyTorch's `orthogonal_` makes of
/// its Householder QR by flipping signs.
pub fn orthogonal(rows: usize, cols: usize, rng: &mut Rng) -> Vec<f64> {
    // Orthonormalize the `k` vectors of length `len` (the shorter dimension's count).
    let (k, len) = if rows <= cols { (rows, cols) } else { (cols, rows) };
    let mut v: Vec<Vec<f64>> = (0..k).map(|_| (0..len).map(|_| rng.normal()).collect()).collect();
    for i in 0..k {
        for j in 0..i {
            let (done, rest) = v.split_at_mut(i);
            let dot: f64 = rest[0].iter().zip(&done[j]).map(|(a, b)| a * b).sum();
            for (a, b) in rest[0].iter_mut().zip(&done[j]) {
                *a -= dot * b;
            }
        }
        let norm = v[i].iter().map(|a| a * a).sum::<f64>().sqrt();
        v[i].iter_mut().for_each(|a| *a /= norm);
    }
    let mut out = vec![0.0; rows * cols];
    for (i, vec) in v.iter().enumerate() {
        for (j, &x) in vec.iter().enumerate() {
            // Vectors are rows when rows <= cols, else columns.
            if rows <= cols {
                out[i * cols + j] = x;
            } else {
                out[j * cols + i] = x;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram(m: &[f64], rows: usize, cols: usize, by_rows: bool) -> Vec<f64> {
        let (k, len) = if by_rows { (rows, cols) } else { (cols, rows) };
        let at = |v: usize, e: usize| {
            if by_rows {
                m[v * cols + e]
            } else {
                m[e * cols + v]
            }
        };
        let mut g = vec![0.0; k * k];
        for a in 0..k {
            for b in 0..k {
                g[a * k + b] = (0..len).map(|e| at(a, e) * at(b, e)).sum();
            }
        }
        g
    }

    #[test]
    fn orthogonal_has_orthonormal_rows_or_columns() {
        for (rows, cols) in [(8, 8), (4, 12), (12, 4), (1, 5)] {
            let m = orthogonal(rows, cols, &mut Rng::new(7));
            let by_rows = rows <= cols;
            let g = gram(&m, rows, cols, by_rows);
            let k = rows.min(cols);
            for a in 0..k {
                for b in 0..k {
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((g[a * k + b] - want).abs() < 1e-12, "{rows}x{cols} gram[{a},{b}] = {}", g[a * k + b]);
                }
            }
        }
    }

    #[test]
    fn init_is_seeded_and_per_parameter() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(name_hash("blocks.0.attn.c_q.weight"), name_hash("blocks.0.attn.c_k.weight"));
        let normals: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
        let mean = normals.iter().sum::<f64>() / normals.len() as f64;
        let var = normals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / normals.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }
}

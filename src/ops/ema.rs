//! An exponential moving average of the weights (record spec section 5):
//! `E <- decay E + (1 - decay) W` after every optimizer step, decay 0.997, no bias
//! correction, `E` starting at the initial weights.

use super::Real;

/// The record's decay.
pub const EMA_DECAY: f64 = 0.997;

/// `ema <- decay ema + (1 - decay) param` (decay rounded to f32 first, as the kernel's
/// override constant is).
pub fn ema<T: Real>(ema: &mut [T], param: &[T], decay: f64) {
    let d = T::from_f64(decay as f32 as f64);
    let keep = T::one() - d;
    for (e, &w) in ema.iter_mut().zip(param) {
        *e = d * *e + keep * w;
    }
}

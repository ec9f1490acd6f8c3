//! The schedules of a run, as methods of [`Config`]: the learning-rate multiplier (step or
//! wall-clock warmdown), the Muon momentum warmup, and the wall-clock stop rule.
use crate::config::{Config, Warmdown};

impl Config {
    /// The learning-rate multiplier at step `step` (0-based): 1, then linear to 0 over the
    /// last `warmdown_steps`. As in the reference, a warmdown longer than the run starts
    /// below 1 (at steps / warmdown_steps).
    pub fn lr_scale(&self, step: usize) -> f32 {
        let (n, w) = (self.train.steps, self.train.warmdown_steps);
        if w == 0 || step + w < n {
            1.0
        } else {
            (n - step) as f32 / w as f32
        }
    }

    /// The learning-rate multiplier at step `step` after `elapsed_s` seconds of training:
    /// [`Config::lr_scale`] for step warmdown; for wall-clock warmdown, 1 while the time left
    /// exceeds `warmdown_steps` mean steps, then that ratio, reaching 0 at the cap.
    pub fn lr_scale_at(&self, step: usize, elapsed_s: f64) -> f32 {
        let t = &self.train;
        match t.warmdown {
            Warmdown::Steps => self.lr_scale(step),
            Warmdown::Wallclock => {
                if step == 0 || t.warmdown_steps == 0 {
                    return 1.0;
                }
                let window = t.warmdown_steps as f64 * elapsed_s / step as f64;
                let left = (t.max_wallclock_s - elapsed_s).max(0.0);
                if left > window {
                    1.0
                } else {
                    (left / window) as f32
                }
            }
        }
    }

    /// Muon momentum at step `step` (0-based), after the linear warmup.
    pub fn muon_momentum(&self, step: usize) -> f32 {
        let t = &self.train;
        if t.muon_momentum_warmup_steps == 0 {
            return t.muon_momentum;
        }
        let frac = (step as f32 / t.muon_momentum_warmup_steps as f32).min(1.0);
        t.muon_momentum_start + (t.muon_momentum - t.muon_momentum_start) * frac
    }

    /// Whether the schedule needs the real training time at every step (a cap or wall-clock
    /// warmdown): the loop then waits for the GPU after each step.
    pub fn needs_wallclock(&self) -> bool {
        self.train.max_wallclock_s > 0.0 || self.train.warmdown == Warmdown::Wallclock
    }

    /// The stop rule: training stops once it has run `max_wallclock_s` seconds (0: never).
    pub fn wallclock_reached(&self, elapsed_s: f64) -> bool {
        self.train.max_wallclock_s > 0.0 && elapsed_s >= self.train.max_wallclock_s
    }
}

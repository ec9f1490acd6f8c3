//! What a run reports: the JSON-lines metrics file, the training clock, and throughput
//! measured between loss read-backs.
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// JSON-lines metrics, one object per event, flushed as written.
pub struct Metrics {
    file: std::io::BufWriter<std::fs::File>,
}

impl Metrics {
    /// Opens `path` for a new run (truncating it), or for a run resumed from the checkpoint
    /// of step `resume_from`: then the events after that step, which a crash after the
    /// checkpoint left behind and the resumed run will log again, are cut first (as is a
    /// line a kill left half-written), so that no step appears twice. Returns the writer
    /// and the number of lines cut.
    pub fn open(path: &Path, resume_from: Option<usize>) -> Result<(Self, usize)> {
        let mut cut = 0;
        if let Some(step) = resume_from {
            if path.exists() {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let kept: Vec<&str> = text.lines().filter(|line| event_step(line).is_some_and(|s| s <= step)).collect();
                cut = text.lines().count() - kept.len();
                if cut > 0 {
                    let mut bytes = kept.join("\n");
                    if !bytes.is_empty() {
                        bytes.push('\n');
                    }
                    crate::fsutil::write_atomic(path, bytes.as_bytes())
                        .with_context(|| format!("rewriting {}", path.display()))?;
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resume_from.is_some())
            .truncate(resume_from.is_none())
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok((Metrics { file: std::io::BufWriter::new(file) }, cut))
    }

    /// Writes one event as a line.
    pub fn event(&mut self, value: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// The step of a metrics line, if it is a whole event with one.
fn event_step(line: &str) -> Option<usize> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("step")?.as_u64().map(|s| s as usize)
}

/// Training time: this process's loop plus the seconds trained before a resume, less the
/// periodic validations (the reference stops its training clock for them too).
pub struct Clock {
    start: Instant,
    before_s: f64,
    excluded_s: f64,
}

impl Clock {
    pub fn start(before_s: f64) -> Self {
        Clock { start: Instant::now(), before_s, excluded_s: 0.0 }
    }

    /// Seconds of training, those before a resume included.
    pub fn elapsed(&self) -> f64 {
        self.before_s + self.run_secs()
    }

    /// Seconds of training since this process's loop started.
    pub fn run_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64() - self.excluded_s
    }

    /// Leaves `secs` (a periodic validation just done) out of the training time.
    pub fn exclude(&mut self, secs: f64) {
        self.excluded_s += secs;
    }
}

/// Throughput over windows that end at loss read-backs (they wait for the GPU, so the time
/// between two is real work). The first window (pipeline builds, warm-up) is left out of
/// the run's mean.
pub struct Throughput {
    first_step: usize,
    window: (Instant, usize),
    measured: (f64, usize),
}

impl Throughput {
    /// Starts the first window at `first_step`.
    pub fn new(first_step: usize) -> Self {
        Throughput { first_step, window: (Instant::now(), first_step), measured: (0.0, 0) }
    }

    /// Leaves `secs` (a periodic validation just done) out of the current window.
    pub fn exclude(&mut self, secs: f64) {
        self.window.0 += std::time::Duration::from_secs_f64(secs);
    }

    /// Ends the window at `step` and starts the next; returns its ms per step and tokens per
    /// second.
    pub fn lap(&mut self, step: usize, step_tokens: usize) -> (f64, f64) {
        let secs = self.window.0.elapsed().as_secs_f64();
        let steps_in_window = step - self.window.1;
        let step_ms = 1e3 * secs / steps_in_window as f64;
        let tok_s = (steps_in_window * step_tokens) as f64 / secs;
        if self.window.1 > self.first_step {
            self.measured.0 += secs;
            self.measured.1 += steps_in_window;
        }
        self.window = (Instant::now(), step);
        (step_ms, tok_s)
    }

    /// The run's mean tokens per second and ms per step, over the measured windows; over
    /// the whole run (`done_steps` in `run_secs`) when there were none.
    pub fn mean(&self, done_steps: usize, run_secs: f64, step_tokens: usize) -> (f64, f64) {
        let (secs, steps) = self.measured;
        if steps > 0 {
            ((steps * step_tokens) as f64 / secs, 1e3 * secs / steps as f64)
        } else {
            ((done_steps * step_tokens) as f64 / run_secs, 1e3 * run_secs / done_steps.max(1) as f64)
        }
    }
}

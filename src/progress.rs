//! Progress of long commands (train, eval, tokenize): a live indicatif bar on a terminal,
//! plain periodic lines elsewhere (CI, a log file), never control characters there.
//!
//! A caller makes one [`Progress`] per stage with its total, asks [`Progress::due`] whether
//! an update would be shown now (so that work needed only for the display, such as waiting
//! for the GPU to know the true step, is done only then) and calls [`Progress::update`]
//! with the position and its own figures (the loss, tokens/s). Log lines go through
//! [`Progress::println`], which prints them above the bar, or as they are without one.
//!
//! The mode comes from `WGOLF_PROGRESS` (`bar`, `plain` or `off`); by default a bar when
//! stderr is a terminal (and `TERM` is not `dumb`), plain lines otherwise. Plain lines come
//! at most every `WGOLF_PROGRESS_SECS` seconds (default 30).
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A live bar on stderr (a terminal).
    Bar,
    /// A plain line on stderr every so often.
    Plain,
    /// Nothing (log lines still print).
    Off,
}

impl Mode {
    /// The mode from `WGOLF_PROGRESS`, else from whether stderr is a terminal.
    pub fn from_env() -> Mode {
        match std::env::var("WGOLF_PROGRESS").ok().as_deref().map(str::trim) {
            Some("bar") => Mode::Bar,
            Some("plain") => Mode::Plain,
            Some("off" | "0" | "none") => Mode::Off,
            _ => {
                let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
                if std::io::stderr().is_terminal() && !dumb {
                    Mode::Bar
                } else {
                    Mode::Plain
                }
            }
        }
    }
}

/// What the position counts, for the display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Plain counts: steps, sequences.
    Count,
    /// Bytes (shown as KiB, MiB).
    Bytes,
}

/// The progress of one stage.
pub struct Progress {
    mode: Mode,
    label: String,
    total: u64,
    unit: Unit,
    bar: Option<indicatif::ProgressBar>,
    /// When and where the rate measurement starts (the first update: warm-up left out).
    origin: Option<(Instant, u64)>,
    started: Instant,
    last_shown: Instant,
    interval: Duration,
    /// When a wall-clock cap ends the stage, if one does.
    deadline: Option<Instant>,
    /// The rate shown, as (what one unit is worth, its name): e.g. (step tokens, "tok/s").
    rate: Option<(f64, String)>,
}

impl Progress {
    /// A stage of `total` units named `label` (e.g. "train"), shown in the mode from the
    /// environment.
    pub fn new(label: &str, total: u64, unit: Unit) -> Self {
        Self::with_mode(Mode::from_env(), label, total, unit)
    }

    /// Shows nothing; log lines still print.
    pub fn hidden() -> Self {
        Self::with_mode(Mode::Off, "", 0, Unit::Count)
    }

    /// A stage shown in `mode`.
    pub fn with_mode(mode: Mode, label: &str, total: u64, unit: Unit) -> Self {
        let bar = (mode == Mode::Bar).then(|| {
            let pb =
                indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr_with_hz(4));
            pb.set_style(
                indicatif::ProgressStyle::with_template("{prefix:.bold} [{elapsed_precise}] {bar:30.cyan/blue} {msg}")
                    .expect("a valid progress template")
                    .progress_chars("=> "),
            );
            pb.set_prefix(label.to_string());
            // The elapsed time keeps moving between updates (lavapipe steps take seconds).
            pb.enable_steady_tick(Duration::from_secs(1));
            pb
        });
        let interval = std::env::var("WGOLF_PROGRESS_SECS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(Duration::from_secs(30), Duration::from_secs_f64);
        let now = Instant::now();
        Progress {
            mode,
            label: label.to_string(),
            total,
            unit,
            bar,
            origin: None,
            started: now,
            last_shown: now,
            // The training loop waits for the device at each update: once a second keeps
            // the bar live without draining the GPU's queue every few steps.
            interval: if mode == Mode::Bar { Duration::from_secs(1) } else { interval },
            deadline: None,
            rate: None,
        }
    }

    /// Shows the rate since the first update in `name` units (e.g. "tok/s"), each unit of
    /// the position being worth `per_unit` of them.
    pub fn show_rate(&mut self, per_unit: f64, name: &str) {
        self.rate = Some((per_unit, name.to_string()));
    }

    /// How progress is shown.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The stage also ends `secs` from now at the latest (a wall-clock cap): the ETA is
    /// the earlier of the two.
    pub fn set_deadline(&mut self, secs: f64) {
        self.deadline = Some(Instant::now() + Duration::from_secs_f64(secs.max(0.0)));
    }

    /// Whether an update now would be shown (a bar redraws a few times a second, plain lines
    /// every interval). The first update is always due, so that the rate can start there.
    pub fn due(&self) -> bool {
        match self.mode {
            Mode::Off => false,
            _ => self.origin.is_none() || self.last_shown.elapsed() >= self.interval,
        }
    }

    /// Moves to `pos` (of the total) with the caller's figures in `msg` (e.g. "loss 5.1234
    /// 1,234 tok/s"); shows it when due.
    pub fn update(&mut self, pos: u64, msg: &str) {
        if self.mode == Mode::Off {
            return;
        }
        let first = self.origin.is_none();
        let origin = *self.origin.get_or_insert((Instant::now(), pos));
        if !first && self.last_shown.elapsed() < self.interval && pos < self.total {
            return;
        }
        self.last_shown = Instant::now();
        let eta = self.eta(origin, pos);
        let mut msg = msg.to_string();
        if let Some((per_unit, name)) = &self.rate {
            // From the first update on; a stage done at its first update, from its start.
            let (since, from) = if pos > origin.1 { origin } else { (self.started, 0) };
            let secs = since.elapsed().as_secs_f64();
            if pos > from && secs > 0.0 {
                let rate = (pos - from) as f64 * per_unit / secs;
                let sep = if msg.is_empty() { "" } else { " " };
                msg = format!("{msg}{sep}{} {name}", fmt_rate(rate));
            }
        }
        let line = self.status(pos, &msg, eta);
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.set_position(pos.min(self.total));
                bar.set_message(line);
            }
            // The first update of a stage is not worth a line of its own.
            (None, Mode::Plain) if !first || pos >= self.total => {
                eprintln!("{}: {} [{}]", self.label, line, fmt_duration(self.started.elapsed().as_secs_f64()));
            }
            _ => {}
        }
    }

    /// Prints a log line above the bar (or as it is without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Ends the stage: the bar is cleared (its last state is in the log lines).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// Seconds left: the remaining units at the rate since the first update, or the
    /// deadline when it comes first.
    fn eta(&self, origin: (Instant, u64), pos: u64) -> Option<f64> {
        if pos >= self.total {
            return Some(0.0);
        }
        let secs = origin.0.elapsed().as_secs_f64();
        let done = pos.saturating_sub(origin.1);
        let by_rate = (done > 0 && secs > 0.0).then(|| self.total.saturating_sub(pos) as f64 * secs / done as f64);
        let by_deadline = self.deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
        match (by_rate, by_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn status(&self, pos: u64, msg: &str, eta: Option<f64>) -> String {
        let pct = if self.total > 0 { 100.0 * pos as f64 / self.total as f64 } else { 100.0 };
        let (p, t) = match self.unit {
            Unit::Count => (pos.to_string(), self.total.to_string()),
            Unit::Bytes => (fmt_bytes(pos), fmt_bytes(self.total)),
        };
        let eta = eta.map_or_else(|| "eta ?".to_string(), |s| format!("eta {}", fmt_duration(s)));
        let sep = if msg.is_empty() { "" } else { " " };
        format!("{p}/{t} ({pct:.0}%){sep}{msg} {eta}")
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `83s` as `1m23s`, `4000s` as `1h06m40s`.
pub fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

pub use crate::units::thousands as group;

/// A rate with thousands separators when large, else 2 or 3 significant digits.
fn fmt_rate(r: f64) -> String {
    if r >= 1000.0 {
        group(r.round() as u64)
    } else if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_bytes_read_well() {
        assert_eq!(fmt_duration(5.2), "5s");
        assert_eq!(fmt_duration(83.0), "1m23s");
        assert_eq!(fmt_duration(4000.0), "1h06m40s");
        assert_eq!(fmt_bytes(3 << 20), "3.0 MiB");
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(12.3), "12");
    }

    #[test]
    fn status_has_position_percent_and_eta() {
        let p = Progress::with_mode(Mode::Off, "train", 200, Unit::Count);
        assert_eq!(p.status(50, "loss 5.0", Some(90.0)), "50/200 (25%) loss 5.0 eta 1m30s");
        assert_eq!(p.status(0, "", None), "0/200 (0%) eta ?");
    }
}

//! A run killed with SIGKILL at random points, several times, and resumed each time from
//! its last checkpoint ends with the same weights as the uninterrupted run, and its
//! metrics.jsonl holds every step once with the same losses.
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use wgolf::init::Rng;

const STEPS: u64 = 8;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wgolf"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    c
}

/// A fresh run of the tiny config into `dir`, checkpointing after every step.
fn fresh(dir: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--config", "configs/tiny.toml", "--checkpoint-every", "1", "--out"]).arg(dir);
    for set in [format!("train.steps={STEPS}"), "train.log_every=1".into(), "train.val_seqs=4".into()] {
        c.args(["--set", &set]);
    }
    c
}

/// The same run continued from its checkpoint.
fn resumed(dir: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--checkpoint-every", "1", "--resume"]).arg(dir);
    c
}

/// Waits for `child` up to `limit`; true when it exited successfully.
fn wait_ok(child: &mut Child, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the training process did not finish within {limit:?}");
}

/// (step, train_loss) of every train event, and the steps of all events.
fn train_events(dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}")))
        .filter(|v| v["event"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["train_loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn killed_and_resumed_runs_end_as_the_uninterrupted_one() {
    let straight = tempfile::tempdir().unwrap();
    assert!(fresh(straight.path()).status().unwrap().success(), "the uninterrupted run failed");

    let dir = tempfile::tempdir().unwrap();
    let ck = wgolf::checkpoint::checkpoint_path(dir.path());
    let mut rng = Rng::new(2026);
    let (mut kills, mut finished) = (0, false);
    for _attempt in 0..12 {
        let mut child = if ck.exists() { resumed(dir.path()) } else { fresh(dir.path()) }.spawn().unwrap();
        if kills < 4 {
            // Anywhere from start-up (adapter, pipelines) through steps, checkpoint writes
            // and the final validation and export.
            let delay = Duration::from_millis(300 + (rng.uniform() * 3500.0) as u64);
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL on Unix
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        if wait_ok(&mut child, Duration::from_secs(300)) && dir.path().join("model.safetensors").exists() {
            finished = true;
            break;
        }
    }
    assert!(finished, "the run never finished");
    assert!(kills >= 2, "only {kills} kills landed: the delays are too long for this machine");

    let (want, got) = (train_events(straight.path()), train_events(dir.path()));
    let steps: Vec<u64> = got.iter().map(|e| e.0).collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>(), "every step once, in order, after {kills} kills");
    assert_eq!(got, want, "the losses must equal the uninterrupted run's bit for bit");
    let a = wgolf::checkpoint::read(&straight.path().join("model.safetensors")).unwrap();
    let b = wgolf::checkpoint::read(&dir.path().join("model.safetensors")).unwrap();
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, (_, v)) in &a.tensors {
        assert_eq!(&b.tensors[name].1, v, "{name} differs after {kills} kills");
    }
}

#[test]
fn events_logged_after_the_last_checkpoint_are_not_repeated() {
    // What a crash between a log line and the next checkpoint leaves: events past the
    // checkpoint's step, and a line cut short. Resuming drops both before logging again.
    let dir = tempfile::tempdir().unwrap();
    let mut first = fresh(dir.path());
    first.args(["--set", "train.steps=4"]);
    assert!(first.status().unwrap().success(), "the first run failed");
    let metrics = dir.path().join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.push_str("{\"event\":\"train\",\"step\":5,\"train_loss\":1.0}\n{\"event\":\"train\",\"step\":6,\"tra");
    std::fs::write(&metrics, text).unwrap();
    let mut resume = resumed(dir.path());
    resume.args(["--set", &format!("train.steps={STEPS}")]);
    assert!(resume.status().unwrap().success(), "the resumed run failed");
    let steps: Vec<u64> = train_events(dir.path()).iter().map(|e| e.0).collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>(), "every step once after resuming");
}

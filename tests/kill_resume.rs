//! A run killed with SIGKILL at random points, several times, and resumed each time from
//! its last checkpoint ends with the same weights as the uninterrupted run, and its
//! metrics.jsonl holds every step once with the same losses.
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use wgolf::init::Rng;

const STEPS: u64 = 10;

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

/// The highest step of a train event in the run's metrics (0 when none).
fn last_logged_step(dir: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) else { return 0 };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "train")
        .filter_map(|v| v["step"].as_u64())
        .max()
        .unwrap_or(0)
}

/// The step of the run's checkpoint (0 when there is none yet).
fn checkpoint_step(dir: &Path) -> u64 {
    let path = wgolf::checkpoint::checkpoint_path(dir);
    wgolf::checkpoint::read(&path).map_or(0, |ck| ck.step().unwrap() as u64)
}

#[test]
fn killed_and_resumed_runs_end_as_the_uninterrupted_one() {
    let straight = tempfile::tempdir().unwrap();
    assert!(fresh(straight.path()).status().unwrap().success(), "the uninterrupted run failed");

    // Kills are placed by progress, not by the clock, so that they land on fast and slow
    // machines alike: the first during start-up (adapter, pipelines, before any checkpoint),
    // the others once a random later step is logged, plus a few random milliseconds (between
    // a step's log line and its checkpoint, inside a checkpoint write, or in the next step).
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(2026);
    let mut kills = 0;
    while kills < 4 {
        let done = checkpoint_step(dir.path());
        let mut child = if done > 0 { resumed(dir.path()) } else { fresh(dir.path()) }.spawn().unwrap();
        let target = if kills == 0 { 0 } else { (done + 1 + (rng.uniform() * 3.0) as u64).min(STEPS - 1) };
        let start = Instant::now();
        while last_logged_step(dir.path()) < target && child.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(300), "no progress to step {target}");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis((rng.uniform() * 40.0) as u64));
        if let Some(status) = child.try_wait().unwrap() {
            // A fast device can finish the last steps within the extra milliseconds.
            assert!(status.success(), "a resumed run failed");
            break;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 2, "only {kills} kills landed before the run finished");
    if !dir.path().join("model.safetensors").exists() || checkpoint_step(dir.path()) < STEPS {
        let mut last = if checkpoint_step(dir.path()) > 0 { resumed(dir.path()) } else { fresh(dir.path()) };
        let mut child = last.spawn().unwrap();
        assert!(wait_ok(&mut child, Duration::from_secs(300)), "the final resumed run failed");
    }

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

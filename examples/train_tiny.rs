//! Building and training a tiny model through the library, without the CLI.
//!
//! Shows the pieces `wgolf train` strings together: a config (the bundled
//! `configs/tiny.toml`, shortened with overrides), the model written as a plan of kernel
//! steps (`model::build_plan`), an executor that replays it (`host::make_executor`: the GPU,
//! or the CPU reference with `--cpu`), the seeded init, the training stream, one optimizer
//! step at a time (`train::train_step`, the learning-rate schedule from the config), the
//! validation score (`eval::evaluate` through a forward-only `eval::Scorer` on the same
//! device, loaded with the run's exported weights) and the weights file (`eval::export::save_export`),
//! which `examples/score_text.rs` loads.
//!
//!     cargo run --release --example train_tiny -- [OUT_DIR] [STEPS]
//!
//! (defaults: runs/example-tiny, 40 steps; about a minute on lavapipe.)
use std::path::{Path, PathBuf};
use wgolf::config::Config;
use wgolf::data::TrainStream;
use wgolf::eval::{self, Scorer, ValData};
use wgolf::host::{Backend, Device};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--cpu");
    let out = PathBuf::from(args.next().unwrap_or_else(|| "runs/example-tiny".into()));
    let steps: usize = args.next().map_or(Ok(40), |s| s.parse())?;
    let backend = if std::env::args().any(|a| a == "--cpu") { Backend::Cpu } else { Backend::Gpu(None) };

    // The config: a file plus `section.key=value` overrides, validated as a whole.
    let overrides = [format!("train.steps={steps}"), format!("train.warmdown_steps={}", steps / 3)];
    let cfg = Config::load(Path::new("configs/tiny.toml"), &overrides)?;

    // The model as a static plan (tensors + forward, backward and optimizer steps), built
    // once; the executor allocates every tensor and pipeline up front.
    let plan = wgolf::model::build_plan(&cfg)?;
    let device = Device::open(&backend)?;
    let mut ex = device.executor(&plan)?;
    println!("{} parameters, {} tokens per step, on {}", plan.param_count(), cfg.step_tokens(), ex.describe());
    wgolf::train::init_state(ex.as_mut(), &plan, cfg.train.seed)?;

    let mut stream = TrainStream::open(&cfg.data.dir, cfg.model.vocab_size)?;
    for step in 0..steps {
        wgolf::train::train_step(ex.as_mut(), &plan, &cfg, &mut stream, step, cfg.lr_scale(step))?;
        if step % 10 == 0 || step + 1 == steps {
            // Reading the loss back waits for the device; the loop reads it only now and then.
            let loss = ex.read(plan.io().loss_total)?[0];
            println!("step {:>3}/{steps}: train loss {loss:.4}", step + 1);
        }
    }

    // Validation on the first 16 sequences of the bundled val shard, in nats and bits per
    // byte (the tokenizer's byte tables turn token losses into bytes).
    let val = ValData::open(&cfg)?;
    let mut scorer = Scorer::whole_sequences(&cfg, &device)?;
    scorer.load_exported(&plan, ex.as_mut())?;
    let acc = eval::evaluate(&mut scorer, &val, 16)?;
    println!("val_loss {:.4} val_bpb {:.4} over {} tokens", acc.val_loss(), acc.val_bpb(), acc.tokens());

    std::fs::create_dir_all(&out)?;
    let weights = out.join("model.safetensors");
    eval::export::save_export(&weights, &plan, &cfg, ex.as_mut())?;
    println!("wrote {} (with its config; score text with examples/score_text.rs)", weights.display());
    Ok(())
}

//! Training-step throughput of a config on the chosen adapter.
//!
//! `cargo bench --bench step -- [--set KEY=VALUE ...] [CONFIG ...]` (default: configs/tiny.toml
//! and configs/sample.toml; `--set` overrides config fields as `wgolf train --set` does, e.g.
//! `--set train.batch_seqs=48 --set train.grad_accum=1`, for every config). For each config:
//! builds the plan and executor, runs `WGOLF_BENCH_WARMUP` (default 3) warm-up steps (the
//! first compiles pipelines in the driver; each one's time goes to stderr), then times
//! `WGOLF_BENCH_STEPS` (default 20) optimizer steps ended by a loss read-back, which waits for
//! the GPU. Then scores `train.val_seqs` validation sequences (at least `eval.batch_seqs`)
//! with the forward-only evaluation plan on the same device, once to warm up and once timed.
//! Prints a markdown row per config: adapter, tokens per step, ms per step, training tokens
//! per second, forward-only evaluation tokens per second. With
//! `WGOLF_BENCH_PROFILE=1` it also runs one micro-batch and optimizer pass step by step,
//! waiting after each dispatch, and prints the time per kernel entry point (this serializes
//! the GPU, so the total exceeds a real step; the shares are what it is for).
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use wgolf::config::Config;
use wgolf::eval::{Scorer, ValData};
use wgolf::exec::Executor;
use wgolf::host::{Backend, Device};
use wgolf::plan::{Phase, Plan};
use wgolf::train::train_step;

fn main() -> anyhow::Result<()> {
    let (mut configs, mut overrides) = (Vec::new(), Vec::new());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--set" {
            overrides.extend(args.next());
        } else if let Some(v) = a.strip_prefix("--set=") {
            overrides.push(v.to_string());
        } else if !a.starts_with("--") {
            // `cargo bench` passes --bench; other flags are not ours either.
            configs.push(a);
        }
    }
    if configs.is_empty() {
        configs = vec!["configs/tiny.toml".to_string(), "configs/sample.toml".to_string()];
    }
    let env_usize =
        |name: &str, default: usize| std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let steps = env_usize("WGOLF_BENCH_STEPS", 20).max(1);
    let warmup = env_usize("WGOLF_BENCH_WARMUP", 3);
    let label = if overrides.is_empty() { String::new() } else { format!(" ({})", overrides.join(", ")) };
    let adapter = std::env::var("WGOLF_ADAPTER").ok();
    println!("| config | adapter | tokens/step | ms/step | tokens/s | forward-only eval tokens/s |");
    println!("|---|---|---|---|---|---|");
    for path in configs {
        let cfg = Config::load(Path::new(&path), &overrides)?;
        let plan = wgolf::model::build_plan(&cfg)?;
        let backend = Backend::Gpu(adapter.clone());
        let device = wgolf::host::Device::open(&backend)?;
        let mut ex = device.executor(&plan)?;
        wgolf::train::init_state(ex.as_mut(), &plan, cfg.train.seed)?;
        let mut stream = wgolf::data::TrainStream::open(&cfg.data.dir, cfg.model.vocab_size)?;
        for step in 0..warmup {
            let t = Instant::now();
            train_step(ex.as_mut(), &plan, &cfg, &mut stream, step, cfg.lr_scale(step))?;
            ex.read(plan.io().loss_total)?;
            eprintln!(
                "{path}{label}: warm-up step {} of {warmup}: {:.1} ms",
                step + 1,
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let t = Instant::now();
        for step in warmup..warmup + steps {
            train_step(ex.as_mut(), &plan, &cfg, &mut stream, step, cfg.lr_scale(step))?;
        }
        ex.read(plan.io().loss_total)?;
        let secs = t.elapsed().as_secs_f64();
        let ms = 1e3 * secs / steps as f64;
        let tok_s = (steps * cfg.step_tokens()) as f64 / secs;
        let eval_tok_s = eval_throughput(&cfg, &device, &plan, ex.as_mut(), &path)?;
        println!(
            "| {path}{label} | {} | {} | {ms:.1} | {tok_s:.0} | {eval_tok_s:.0} |",
            ex.describe(),
            cfg.step_tokens()
        );
        if std::env::var("WGOLF_BENCH_PROFILE").is_ok_and(|v| v == "1") {
            profile(ex.as_mut(), &plan)?;
        }
    }
    Ok(())
}

/// Tokens per second of the forward-only evaluation plan (`eval::Scorer`, `eval.batch_seqs`
/// sequences per batch) on the same device, scoring the trained weights over `train.val_seqs`
/// validation sequences (at least one batch): one warm-up pass, then the timed one.
fn eval_throughput(
    cfg: &Config,
    device: &Device,
    plan: &Plan,
    ex: &mut dyn Executor,
    path: &str,
) -> anyhow::Result<f64> {
    let mut cfg = cfg.clone();
    cfg.train.val_seqs = cfg.train.val_seqs.max(cfg.eval.batch_seqs);
    let val = ValData::open(&cfg)?;
    let mut scorer = Scorer::whole_sequences(&cfg, device)?;
    scorer.load_exported(plan, ex)?;
    let t = Instant::now();
    wgolf::eval::validate(&mut scorer, &cfg, &val, "eval warm-up")?;
    eprintln!("{path}: eval warm-up pass: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let t = Instant::now();
    let acc = wgolf::eval::validate(&mut scorer, &cfg, &val, "eval")?;
    Ok(acc.tokens() as f64 / t.elapsed().as_secs_f64())
}

/// Times every step of one forward, backward and optimizer pass, grouped by entry point.
fn profile(ex: &mut dyn Executor, plan: &Plan) -> anyhow::Result<()> {
    let mut by_kernel: BTreeMap<&'static str, (f64, usize)> = BTreeMap::new();
    for phase in Phase::ALL {
        for (i, step) in plan.steps(phase).iter().enumerate() {
            ex.sync()?;
            let t = Instant::now();
            ex.run(phase, i..i + 1)?;
            ex.sync()?;
            let e = by_kernel.entry(step.op.kernel().entry).or_default();
            e.0 += t.elapsed().as_secs_f64() * 1e3;
            e.1 += 1;
        }
    }
    let total: f64 = by_kernel.values().map(|v| v.0).sum();
    let mut rows: Vec<_> = by_kernel.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("\n| kernel | dispatches | ms | share |\n|---|---|---|---|");
    for (k, (ms, n)) in rows {
        println!("| {k} | {n} | {ms:.2} | {:.1}% |", 100.0 * ms / total);
    }
    println!("| total (serialized) | | {total:.2} | |\n");
    Ok(())
}

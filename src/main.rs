//! The `wgolf` command line: `info`, `train`, `check`, `tokenize`.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use wgolf::config::Config;
use wgolf::exec::{cpu::CpuExecutor, Executor, HostData};
use wgolf::gpu::{GpuContext, GpuExecutor};
use wgolf::plan::{Phase, Role};
use wgolf::train::{Backend, TrainOptions};

/// Train small language models with WGSL compute shaders (wgpu: Vulkan, Metal, DX12).
///
/// wgolf reproduces the OpenAI parameter-golf recipes without CUDA. Start with
/// `wgolf info` to see the adapters, then `wgolf train` to train the bundled sample.
#[derive(Parser)]
#[command(name = "wgolf", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options that pick the GPU adapter.
#[derive(clap::Args, Clone)]
struct AdapterArg {
    /// Adapter to use: an index from `wgolf info` or a substring of its name
    /// (default: the first discrete GPU, else integrated, else any).
    #[arg(long, env = "WGOLF_ADAPTER")]
    adapter: Option<String>,
}

/// Options that pick and adjust a config.
#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// TOML config file (see configs/; every field is documented there).
    #[arg(long, default_value = "configs/sample.toml")]
    config: PathBuf,
    /// Override a config field, e.g. `--set train.steps=50` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// List the Vulkan/Metal/DX12 adapters and show the chosen one's features and limits;
    /// with --config, also the model's parameter count and the memory its plan needs.
    Info {
        #[command(flatten)]
        adapter: AdapterArg,
        /// A config to size (parameters, plan memory).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config field (with --config).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Train a model from a config on the bundled data (the default command).
    Train {
        #[command(flatten)]
        config: ConfigArg,
        /// Output directory for metrics.jsonl, config.toml and model.safetensors
        /// (default: runs/<config name>).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        adapter: AdapterArg,
        /// Run on the CPU reference executor instead of the GPU (slow; for debugging).
        #[arg(long)]
        cpu: bool,
    },
    /// Debug: run one micro-batch through the GPU and the CPU reference executors side by
    /// side and name the first step whose output differs beyond tolerance.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        adapter: AdapterArg,
    },
    /// Turn .jsonl / .txt documents into challenge shards with the sp1024 tokenizer.
    Tokenize(wgolf::data::tokenize::TokenizeArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let command = cli.command.unwrap_or(Command::Train {
        config: ConfigArg {
            config: "configs/sample.toml".into(),
            overrides: vec![],
        },
        out: None,
        adapter: AdapterArg {
            adapter: std::env::var("WGOLF_ADAPTER").ok(),
        },
        cpu: false,
    });
    match command {
        Command::Info {
            adapter,
            config,
            overrides,
        } => info(adapter.adapter.as_deref(), config, &overrides),
        Command::Train {
            config,
            out,
            adapter,
            cpu,
        } => {
            let cfg = Config::load(&config.config, &config.overrides)?;
            let stem = config
                .config
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            let out_dir = out.unwrap_or_else(|| PathBuf::from("runs").join(stem));
            let backend = if cpu {
                Backend::Cpu
            } else {
                Backend::Gpu(adapter.adapter)
            };
            let summary = wgolf::train::train(
                &cfg,
                &TrainOptions {
                    out_dir: out_dir.clone(),
                    backend,
                },
            )?;
            println!(
                "done: {} steps, train_loss {:.4}, val_loss {:.4}, val_bpb {:.4}, {:.0} tok/s, {:.1} ms/step on {}; outputs in {}",
                summary.steps,
                summary.last_train_loss,
                summary.val_loss,
                summary.val_bpb,
                summary.tokens_per_s,
                summary.step_ms,
                summary.adapter,
                out_dir.display()
            );
            Ok(())
        }
        Command::Check { config, adapter } => check(&config, adapter.adapter.as_deref()),
        Command::Tokenize(args) => wgolf::data::tokenize::run(&args),
    }
}

fn info(adapter: Option<&str>, config: Option<PathBuf>, overrides: &[String]) -> Result<()> {
    let adapters = wgolf::gpu::context::list_adapters();
    if adapters.is_empty() {
        return Err(wgolf::gpu::GpuError::NoAdapter.into());
    }
    println!("adapters (Vulkan, Metal, DX12):");
    for a in &adapters {
        println!("  {}", a.one_line());
    }
    let ctx = GpuContext::new(adapter)?;
    println!("chosen: {}", ctx.report.one_line());
    println!("{}", ctx.report.details());
    if let Some(path) = config {
        let cfg = Config::load(&path, overrides)?;
        let plan = wgolf::model::build_plan(&cfg)?;
        let params = plan
            .params
            .iter()
            .map(|s| plan.tensor(s.param).numel())
            .sum::<usize>();
        println!("config {}:", path.display());
        println!("  parameters:           {params}");
        println!(
            "  tokens per step:      {} ({} x {} x {} micro-batches)",
            cfg.step_tokens(),
            cfg.train.batch_seqs,
            cfg.train.seq_len,
            cfg.train.grad_accum
        );
        println!(
            "  plan tensors:         {} ({:.1} MiB)",
            plan.tensors.len(),
            plan.bytes() as f64 / (1 << 20) as f64
        );
        let largest = plan
            .tensors
            .iter()
            .max_by_key(|t| t.numel())
            .expect("plans have tensors");
        println!(
            "  largest tensor:       {} {:?} ({:.1} MiB)",
            largest.name,
            largest.shape,
            (largest.numel() * 4) as f64 / (1 << 20) as f64
        );
        println!(
            "  steps per micro-batch: {} forward, {} backward; {} optimizer",
            plan.steps(Phase::Forward).len(),
            plan.steps(Phase::Backward).len(),
            plan.steps(Phase::Optimizer).len()
        );
    }
    Ok(())
}

fn check(config: &ConfigArg, adapter: Option<&str>) -> Result<()> {
    let cfg = Config::load(&config.config, &config.overrides)?;
    let plan = wgolf::model::build_plan(&cfg)?;
    let ctx = Arc::new(GpuContext::new(adapter)?);
    let mut gpu = GpuExecutor::new(ctx, &plan)?;
    let mut cpu = CpuExecutor::new(&plan);
    let val = wgolf::data::ValSet::open(&cfg.data.dir, cfg.model.vocab_size, cfg.train.seq_len)?;
    let need = cfg.train.batch_seqs.min(val.num_seqs());
    let (mut x, mut y) = val.batch(0..need);
    x.resize(cfg.micro_tokens(), 0);
    y.resize(cfg.micro_tokens(), 0);
    let init = wgolf::init::init_params(&plan, cfg.train.seed);
    let clear = plan.with_role(|r| matches!(r, Role::Grad | Role::ActGrad | Role::Loss));
    for ex in [&mut gpu as &mut dyn Executor, &mut cpu] {
        for (id, v) in &init {
            ex.write(*id, HostData::F32(v));
        }
        ex.write(plan.io().ids, HostData::U32(&x));
        ex.write(plan.io().targets, HostData::U32(&y));
        ex.clear(&clear);
    }
    let tol = wgolf::tolerance::tolerance(wgolf::tolerance::Check::Model);
    eprintln!(
        "comparing {} forward and {} backward steps on {} against the CPU reference...",
        plan.steps(Phase::Forward).len(),
        plan.steps(Phase::Backward).len(),
        gpu.describe()
    );
    match wgolf::exec::compare::compare_steps(
        &plan,
        &[Phase::Forward, Phase::Backward],
        &mut gpu,
        &mut cpu,
        tol,
    ) {
        Some(d) => Err(anyhow::anyhow!("{d}")).context("the GPU and CPU executors disagree"),
        None => {
            println!(
                "all {} steps agree within {tol:?}",
                plan.steps(Phase::Forward).len() + plan.steps(Phase::Backward).len()
            );
            Ok(())
        }
    }
}

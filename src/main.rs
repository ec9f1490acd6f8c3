//! The `wgolf` command line: `info`, `train`, `eval`, `plot`, `export`, `import`, `check`,
//! `tokenize`; with no command, a short orientation.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use wgolf::checkpoint;
use wgolf::config::Config;
use wgolf::eval::{self, ValData};
use wgolf::exec::{cpu::CpuExecutor, Executor};
use wgolf::gpu::{GpuContext, GpuExecutor};
use wgolf::host::{self, Backend};
use wgolf::plan::{Phase, Role};
use wgolf::train::TrainOptions;

/// Train small language models with WGSL compute shaders (wgpu: Vulkan, Metal, DX12).
///
/// wgolf reproduces the OpenAI parameter-golf recipes without CUDA. Start with
/// `wgolf info` to see the adapters, then `wgolf train --config configs/quick.toml` to
/// train on the bundled sample in a few minutes (also on a CPU, through lavapipe).
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
    /// (default: the first discrete GPU, else integrated, else any). With `train
    /// --nproc-per-node N`, a comma-separated list of N gives each local rank its own, in rank
    /// order (default there: rank i takes the i-th discrete GPU; without discrete GPUs every
    /// rank shares the default adapter).
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
    /// with --config, also the model's parameter count and the memory its plan needs; with
    /// --kernels, the plan's kernel accounting instead of the adapters.
    Info {
        #[command(flatten)]
        adapter: AdapterArg,
        /// A config to size (parameters, plan memory).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config field (with --config).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
        /// With --config: per op kind, the dispatches per optimizer step, workgroups per
        /// dispatch, FLOPs and global-memory bytes of the kernels as written, the step's
        /// totals, and the dispatches below 132 workgroups (a large GPU's SMs) with
        /// non-negligible work. Computed from the plan alone: needs no GPU, lists no adapters.
        #[arg(long, requires = "config")]
        kernels: bool,
    },
    /// Train a model from a config on the bundled data, or resume a run from its
    /// checkpoint; writes curves.png and report.md into the run directory at the end.
    Train {
        #[command(flatten)]
        config: ConfigArg,
        /// Output directory for metrics.jsonl, config.toml, checkpoint.safetensors and
        /// model.safetensors (default: runs/<config name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in DIR from DIR/checkpoint.safetensors (its config is used;
        /// --set may change it, e.g. train.steps to run longer).
        #[arg(long, value_name = "DIR", conflicts_with = "out")]
        resume: Option<PathBuf>,
        /// Also write the checkpoint every N steps (default: only at the end).
        #[arg(long, value_name = "N", default_value_t = 0)]
        checkpoint_every: usize,
        #[command(flatten)]
        adapter: AdapterArg,
        /// Run on the CPU reference executor instead of the GPU (slow; for debugging).
        #[arg(long)]
        cpu: bool,
        /// Train with N processes on this node (one per GPU): each runs grad_accum / N of every
        /// step's micro-batches on its span of the data, and the gradients are averaged
        /// through shared memory before each optimizer step. Rank 0 writes the run directory.
        /// Across nodes, start `wgolf train` with `mpirun` instead (a build with `--features
        /// mpi`): the mean is then shared memory within each node and MPI between nodes
        /// (WGOLF_MPI_RANKS_PER_NODE=N makes every N consecutive ranks a node; 1 sends every
        /// mean through MPI). WGOLF_DIST_TIMEOUT_S bounds every wait for another rank (20 s).
        #[arg(long, value_name = "N", default_value_t = 1)]
        nproc_per_node: usize,
    },
    /// Report val_loss and val_bpb of a checkpoint's weights (its EMA when it kept one) or
    /// of a weights file, on the first N validation sequences, or with --stride the
    /// sliding-window score (record-spec.md section 7).
    Eval {
        /// A checkpoint.safetensors, a model.safetensors, or a run directory.
        #[arg(long, required_unless_present = "artifact", conflicts_with = "artifact")]
        checkpoint: Option<PathBuf>,
        /// An artifact from `wgolf pack`: decompressed, dequantized and scored the way the
        /// reference's roundtrip check does (`final_int6_roundtrip`, then the sliding
        /// `final_sliding_s{stride}`), on its own config.
        #[arg(long, value_name = "FILE")]
        artifact: Option<PathBuf>,
        /// Validation sequences to score (default: all; with --artifact, its config's
        /// train.val_seqs, as the end of training scored them).
        #[arg(long)]
        val_seqs: Option<usize>,
        /// The config, for weights files that do not carry one (e.g. from `wgolf import`
        /// sources); by default the file's embedded config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config field (e.g. data.dir).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
        /// Score with the sliding window at this stride instead (window `train.seq_len`;
        /// `eval.max_tokens` limits the targets covered); the config's is `eval.stride`.
        #[arg(long, value_name = "S")]
        stride: Option<usize>,
        /// Print one JSON line: {"val_loss", "val_bpb", "seqs", "seq_len"} (with --stride:
        /// {"val_loss", "val_bpb", "stride", "tokens", "bytes", "seq_len"}).
        #[arg(long)]
        json: bool,
        /// Test-time training before scoring (overrides eval.ttt): "train-then-score" (PR
        /// #317's; NOT valid under the challenge's rules) or "score-first" (the legal kind).
        #[arg(long, value_parser = ["train-then-score", "score-first"])]
        ttt: Option<String>,
        #[command(flatten)]
        adapter: AdapterArg,
    },
    /// Plot train loss, val loss and val_bpb against step, tokens and training time, for one
    /// or more runs overlaid (legend: their directory names).
    Plot {
        /// Run directories (or their metrics.jsonl files).
        #[arg(value_name = "RUN", required = true, num_args = 1..)]
        runs: Vec<PathBuf>,
        /// The image to write: .png or .svg.
        #[arg(long, value_name = "FILE.png|FILE.svg")]
        out: PathBuf,
    },
    /// Write a checkpoint's model weights (the EMA when kept) as safetensors with the
    /// reference's state-dict names and shapes (f32), loadable into the PyTorch model.
    Export {
        /// A checkpoint.safetensors or a run directory.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The safetensors file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Turn reference weights (safetensors with the reference's state-dict names; f32, f16
    /// or bf16) into a wgolf checkpoint at step 0, to evaluate or train further.
    Import {
        /// The safetensors file to read.
        #[arg(long)]
        weights: PathBuf,
        /// The config describing the model.
        #[arg(long)]
        config: PathBuf,
        /// Override a config field.
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
        /// The checkpoint file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Debug: run one micro-batch through the GPU and the CPU reference executors side by
    /// side and name the first step whose output differs beyond tolerance.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        adapter: AdapterArg,
    },
    /// Quantize a run's exported weights (the EMA when kept) into the submission artifact
    /// (weights, config and this binary's sources; see quant::artifact) and print its parts
    /// against the limit; exits non-zero when over it (the file is still written).
    Pack {
        /// A run directory, a checkpoint or a weights file.
        #[arg(long, conflicts_with = "init")]
        checkpoint: Option<PathBuf>,
        /// Pack the seeded init weights of this config instead (to size a model).
        #[arg(long)]
        init: Option<PathBuf>,
        /// The artifact to write.
        #[arg(long)]
        out: PathBuf,
        /// The size limit in bytes.
        #[arg(long, default_value_t = wgolf::quant::artifact::LIMIT)]
        limit: u64,
    },
    /// Restore an artifact's sources (DIR/src/..., buildable with cargo), config
    /// (DIR/config.toml) and dequantized weights (DIR/model.safetensors, reference names, f32).
    Unpack {
        /// The artifact to read.
        file: PathBuf,
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
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

/// What `wgolf` alone prints: what it is and what to run first.
const ORIENTATION: &str = "\
First steps (from the repository root):
  wgolf info                                    the adapters wgolf sees (a GPU, or lavapipe on the CPU)
  wgolf train --config configs/quick.toml       the quick main job: minutes even on a CPU, into runs/quick/
                                                (curves.png, report.md, metrics.jsonl, the weights)
  wgolf train --config configs/sample.toml      the larger sample job (a GPU: minutes; a CPU: an hour or more)
  wgolf plot runs/quick runs/sample --out c.png loss and bpb curves of runs, overlaid
  wgolf eval --checkpoint runs/quick            score a run's weights on the validation set

From a fresh clone, scripts/train-sample.sh builds wgolf and runs the quick job (installing
lavapipe when there is no Vulkan driver); scripts/test.sh runs the tests. The library's own
use is shown in examples/ (cargo run --release --example NAME).

`wgolf help` lists every command, `wgolf <command> --help` its options.";

fn run(cli: Cli) -> Result<()> {
    let Some(command) = cli.command else {
        println!(
            "wgolf {} (commit {}): train small language models with WGSL compute shaders (wgpu: Vulkan, Metal, DX12).\n",
            env!("CARGO_PKG_VERSION"),
            wgolf::report::COMMIT
        );
        println!("{ORIENTATION}");
        return Ok(());
    };
    match command {
        Command::Info { adapter, config, overrides, kernels } => {
            info(adapter.adapter.as_deref(), config, &overrides, kernels)
        }
        Command::Train { config, out, resume, checkpoint_every, adapter, cpu, nproc_per_node } => {
            let backend = if cpu { Backend::Cpu } else { Backend::Gpu(adapter.adapter) };
            match worker_env()? {
                Some(dist) => {
                    let (local_rank, local_world) = local_rank_of(&dist);
                    let backend = match backend {
                        Backend::Gpu(None) => Backend::Gpu(rank_adapter(local_rank, local_world)?),
                        Backend::Gpu(Some(list)) if list.contains(',') => {
                            Backend::Gpu(Some(adapter_of_rank(&list, local_rank, local_world)?))
                        }
                        chosen => chosen,
                    };
                    train(&config, out, resume, checkpoint_every, backend, Some(dist))
                }
                None if nproc_per_node > 1 => {
                    if let Backend::Gpu(Some(list)) = &backend {
                        if list.contains(',') {
                            adapter_of_rank(list, 0, nproc_per_node)?;
                        }
                    }
                    launch(nproc_per_node)
                }
                None => {
                    if let Backend::Gpu(Some(list)) = &backend {
                        anyhow::ensure!(
                            !list.contains(','),
                            "--adapter {list}: a list of adapters is one per process of --nproc-per-node N"
                        );
                    }
                    train(&config, out, resume, checkpoint_every, backend, None)
                }
            }
        }
        Command::Eval { checkpoint, artifact, val_seqs, config, mut overrides, stride, json, ttt, adapter } => {
            overrides.extend(ttt.map(|t| format!("eval.ttt=\"{t}\"")));
            match (checkpoint, artifact) {
                (_, Some(file)) => eval_artifact(&file, val_seqs, &overrides, stride, json, adapter.adapter.as_deref()),
                (Some(path), None) => {
                    eval(&path, val_seqs, config, &overrides, stride, json, adapter.adapter.as_deref())
                }
                (None, None) => anyhow::bail!("eval: give --checkpoint RUN or --artifact FILE"),
            }
        }
        Command::Export { checkpoint: path, out } => {
            let plan = eval::export::export_file(&checkpoint::read(&resolve_checkpoint(&path))?, &out)?;
            println!("wrote {} ({} tensors, {} parameters)", out.display(), plan.params.len(), plan.param_count());
            Ok(())
        }
        Command::Import { weights, config, overrides, out } => {
            let cfg = Config::load(&config, &overrides)?;
            let plan = eval::export::import_weights(&weights, &cfg, &config, &out)?;
            println!("wrote checkpoint {} ({} parameters)", out.display(), plan.param_count());
            Ok(())
        }
        Command::Plot { runs, out } => {
            let logs = runs.iter().map(|r| wgolf::report::RunLog::read(r)).collect::<Result<Vec<_>>>()?;
            wgolf::report::plot::plot_runs(&logs, &out)?;
            println!(
                "wrote {} ({} run(s): {})",
                out.display(),
                logs.len(),
                logs.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
            );
            Ok(())
        }
        Command::Check { config, adapter } => check(&config, adapter.adapter.as_deref()),
        Command::Tokenize(args) => wgolf::data::tokenize::run(&args),
        Command::Pack { checkpoint, init, out, limit } => pack(checkpoint, init, &out, limit),
        Command::Unpack { file, out } => {
            let art = wgolf::quant::artifact::unpack(&file, &out)?;
            println!(
                "unpacked {}: {} source files, config.toml, model.safetensors ({} tensors) into {}",
                file.display(),
                art.sources.len(),
                art.weights.len(),
                out.display()
            );
            Ok(())
        }
    }
}

/// `wgolf pack`: the artifact of a run's weights (or of a config's init weights).
fn pack(checkpoint: Option<PathBuf>, init: Option<PathBuf>, out: &std::path::Path, limit: u64) -> Result<()> {
    let (cfg, plan, weights) = match (checkpoint, init) {
        (Some(path), None) => {
            let file = checkpoint::read(&resolve_checkpoint(&path))?;
            let cfg = file.config()?;
            let plan = wgolf::model::build_plan(&cfg)?;
            let weights = checkpoint::weights_from(&file, &plan)?;
            (cfg, plan, weights)
        }
        (None, Some(config)) => {
            let cfg = Config::load(&config, &[])?;
            let plan = wgolf::model::build_plan(&cfg)?;
            let weights = wgolf::init::init_params(&plan, cfg.train.seed);
            (cfg, plan, weights)
        }
        _ => anyhow::bail!("pack: give --checkpoint RUN or --init CONFIG"),
    };
    let start = std::time::Instant::now();
    let s = wgolf::quant::artifact::write(out, &cfg, &plan, &weights)?;
    let fmt = wgolf::units::thousands;
    println!(
        "wrote {} in {:.1} s ({} parameters)",
        out.display(),
        start.elapsed().as_secs_f64(),
        fmt(plan.param_count() as u64)
    );
    println!("  weights         {:>12} bytes", fmt(s.weights));
    println!("  code            {:>12} bytes", fmt(s.code));
    println!("  header+checksum {:>12} bytes", fmt(s.header));
    println!(
        "  total           {:>12} bytes of {} ({})",
        fmt(s.total),
        fmt(limit),
        if s.total <= limit { "under the limit" } else { "OVER the limit" }
    );
    if s.total > limit {
        anyhow::bail!(
            "{} is {} bytes, over the {}-byte limit by {} (the file was still written)",
            out.display(),
            fmt(s.total),
            fmt(limit),
            fmt(s.total - limit)
        );
    }
    Ok(())
}

/// `wgolf train`: a new run from `config` into `out` (default runs/<config name>), or the
/// run in `resume` continued.
fn train(
    config: &ConfigArg,
    out: Option<PathBuf>,
    resume: Option<PathBuf>,
    checkpoint_every: usize,
    backend: Backend,
    dist: Option<wgolf::train::DistOptions>,
) -> Result<()> {
    let leader = dist.as_ref().is_none_or(|d| d.rank == 0);
    let (cfg, out_dir, resume, config_source) = match resume {
        Some(dir) => {
            let ck = checkpoint::read(&checkpoint::checkpoint_path(&dir))?;
            let mut cfg = ck.config()?;
            if !config.overrides.is_empty() {
                cfg = Config::parse(&toml::to_string(&cfg)?, "the checkpoint's config", &config.overrides)?;
            }
            (cfg, dir, Some(ck), None)
        }
        None => {
            let cfg = Config::load(&config.config, &config.overrides)?;
            let stem =
                config.config.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
            (cfg, out.unwrap_or_else(|| PathBuf::from("runs").join(stem)), None, Some(config.config.clone()))
        }
    };
    let opts = TrainOptions { out_dir: out_dir.clone(), backend, resume, checkpoint_every, config_source, dist };
    let summary = wgolf::train::train(&cfg, opts)?;
    if !leader {
        return Ok(());
    }
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

/// A run directory means its checkpoint.
fn resolve_checkpoint(path: &std::path::Path) -> PathBuf {
    if path.is_dir() {
        checkpoint::checkpoint_path(path)
    } else {
        path.to_path_buf()
    }
}

/// `wgolf eval`: scores a checkpoint's or weights file's weights on the validation set,
/// on the forward-only evaluation plan.
fn eval(
    path: &std::path::Path,
    val_seqs: Option<usize>,
    config: Option<PathBuf>,
    overrides: &[String],
    stride: Option<usize>,
    json: bool,
    adapter: Option<&str>,
) -> Result<()> {
    let file = checkpoint::read(&resolve_checkpoint(path))?;
    let mut overrides = overrides.to_vec();
    if let Some(s) = stride {
        // Through the config, so that its validation (1..=seq_len) applies to the flag too.
        overrides.push(format!("eval.stride={s}"));
    }
    let cfg = match config {
        Some(c) => Config::load(&c, &overrides)?,
        None if overrides.is_empty() => file.config()?,
        None => Config::parse(&toml::to_string(&file.config()?)?, "the file's config", &overrides)?,
    };
    let plan = wgolf::model::build_plan(&cfg)?;
    let weights: Vec<(String, Vec<f32>)> =
        checkpoint::weights_from(&file, &plan)?.into_iter().map(|(id, v)| (plan.tensor(id).name.clone(), v)).collect();
    drop(plan);
    if let Some(s) = stride.filter(|&s| s > cfg.train.seq_len) {
        anyhow::bail!("--stride {s}: expected at most the window, train.seq_len = {}", cfg.train.seq_len);
    }
    let opts = eval::pipeline::ScoreOptions {
        whole_seqs: stride.is_none().then_some(val_seqs.unwrap_or(0)),
        sliding: stride.is_some(),
    };
    score_and_print(&cfg, &weights, opts, json, adapter, "val")
}

/// `wgolf eval --artifact FILE`: the roundtrip check (decompress, dequantize, load, score
/// whole sequences) and the sliding score (unless `eval.sliding` is off; `--stride` sets its
/// stride).
fn eval_artifact(
    file: &std::path::Path,
    val_seqs: Option<usize>,
    overrides: &[String],
    stride: Option<usize>,
    json: bool,
    adapter: Option<&str>,
) -> Result<()> {
    let art = wgolf::quant::artifact::read(file)?;
    let mut overrides = overrides.to_vec();
    overrides.extend(stride.map(|s| format!("eval.stride={s}")));
    let cfg = if overrides.is_empty() {
        art.config.clone()
    } else {
        Config::parse(&art.config_text, &format!("{} (its config)", file.display()), &overrides)?
    };
    let weights: Vec<(String, Vec<f32>)> = art.weights.into_iter().map(|w| (w.name, w.values)).collect();
    // By default the sequences the end of training scored (`train.val_seqs`), so the numbers
    // match its `final_int6_roundtrip` line; the sliding pass when the config keeps it
    // (`--set eval.sliding=false` skips it).
    let opts = eval::pipeline::ScoreOptions {
        whole_seqs: Some(val_seqs.unwrap_or(cfg.train.val_seqs)),
        sliding: cfg.eval.sliding,
    };
    score_and_print(&cfg, &weights, opts, json, adapter, "final_int6_roundtrip")
}

/// Scores `weights` and prints the reference's log lines (`{label} val_loss:.. val_bpb:..`,
/// `final_sliding_s{S} ...`), or one JSON line with both.
fn score_and_print(
    cfg: &Config,
    weights: &[(String, Vec<f32>)],
    opts: eval::pipeline::ScoreOptions,
    json: bool,
    adapter: Option<&str>,
    label: &str,
) -> Result<()> {
    let backend = Backend::Gpu(adapter.map(String::from));
    let device = host::Device::open(&backend)?;
    let val = ValData::open(cfg)?;
    let scores = eval::pipeline::score(cfg, &device, &val, &weights.to_vec(), opts)?;
    let stride = cfg.sliding_stride();
    let sliding_label = format!("final_sliding_s{stride}");
    if json {
        let mut out = serde_json::Map::new();
        let entry = |acc: &wgolf::data::BpbAccumulator, secs: f64| serde_json::json!({"val_loss": acc.val_loss(), "val_bpb": acc.val_bpb(), "tokens": acc.tokens(), "bytes": acc.bytes(), "seconds": secs});
        if let Some((acc, secs)) = &scores.whole {
            out.insert(label.into(), entry(acc, *secs));
            // The fields of the plain pass at the top level too (earlier scripts read them).
            out.insert("val_loss".into(), acc.val_loss().into());
            out.insert("val_bpb".into(), acc.val_bpb().into());
            out.insert("seqs".into(), val.scored(opts.whole_seqs.unwrap_or(0)).into());
        }
        if let Some((acc, secs)) = &scores.sliding {
            out.insert(sliding_label.clone(), entry(acc, *secs));
            out.insert("stride".into(), stride.into());
        }
        out.insert("seq_len".into(), cfg.train.seq_len.into());
        out.insert("ttt".into(), scores.ttt_label().into());
        println!("{}", serde_json::Value::Object(out));
        return Ok(());
    }
    // The TTT kind rides on every result line, so no number is read without it.
    let note = |sliding| scores.ttt_label_of(sliding).map(|n| format!(" ({n})")).unwrap_or_default();
    if let Some((acc, secs)) = &scores.whole {
        println!("{label} val_loss:{:.8} val_bpb:{:.8}{}", acc.val_loss(), acc.val_bpb(), note(false));
        println!(
            "  {} sequences of {} ({} tokens, {} bytes), {secs:.1} s",
            val.scored(opts.whole_seqs.unwrap_or(0)),
            cfg.train.seq_len,
            acc.tokens(),
            acc.bytes()
        );
    }
    if let Some((acc, secs)) = &scores.sliding {
        println!("{sliding_label} val_loss:{:.8} val_bpb:{:.8}{}", acc.val_loss(), acc.val_bpb(), note(true));
        println!(
            "  {} scored targets over {} tokens ({} bytes), window {}, {secs:.1} s ({:.3} ms per scored token)",
            acc.tokens(),
            val.covered(cfg.eval_max_tokens()),
            acc.bytes(),
            cfg.train.seq_len,
            1e3 * secs / acc.tokens().max(1) as f64
        );
    }
    Ok(())
}

fn info(adapter: Option<&str>, config: Option<PathBuf>, overrides: &[String], kernels: bool) -> Result<()> {
    if !kernels {
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
    }
    if let Some(path) = config {
        let cfg = Config::load(&path, overrides)?;
        let plan = wgolf::model::build_plan(&cfg)?;
        let params = plan.params.iter().map(|s| plan.tensor(s.param).numel()).sum::<usize>();
        println!("config {}:", path.display());
        println!("  parameters:           {params}");
        println!(
            "  tokens per step:      {} ({} x {} x {} micro-batches)",
            cfg.step_tokens(),
            cfg.train.batch_seqs,
            cfg.train.seq_len,
            cfg.train.grad_accum
        );
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        println!(
            "  plan tensors:         {} ({:.1} MiB, each in its own buffer)",
            plan.tensors.len(),
            mib(plan.bytes_without_reuse())
        );
        let memory = plan.memory();
        let (peak, at) = memory.peak();
        let (phase, index) = wgolf::plan::memory::position(&plan, at);
        println!(
            "  plan memory:          {:.1} MiB in {} buffers with reuse; {:.1} MiB live at the peak ({})",
            mib(plan.bytes()),
            memory.slot_lens().len(),
            mib(peak),
            plan.step_name(phase, index)
        );
        let live = wgolf::plan::memory::live_at(&plan, at);
        let live_bytes = |pred: &dyn Fn(&Role) -> bool| -> usize {
            live.iter().filter(|&&t| pred(&plan.tensor(t).role)).map(|&t| plan.tensor(t).numel() * 4).sum()
        };
        println!(
            "  live at the peak:     {} reused tensors: {:.1} MiB activations, {:.1} MiB activation gradients, {:.1} MiB scratch; {:.1} MiB in buffers of their own",
            live.len(),
            mib(live_bytes(&|r| matches!(r, Role::Activation))),
            mib(live_bytes(&|r| matches!(r, Role::ActGrad))),
            mib(live_bytes(&|r| matches!(r, Role::Scratch))),
            mib(peak - live_bytes(&|_| true)),
        );
        // Grouped by name with the block index left out (`blocks.*.mlp.h x 11`).
        let mut groups: Vec<(String, usize, usize)> = Vec::new();
        for &t in &live {
            let name = plan.tensor(t).name.split('.').map(|p| if p.parse::<usize>().is_ok() { "*" } else { p });
            let name = name.collect::<Vec<_>>().join(".");
            match groups.iter_mut().find(|g| g.0 == name) {
                Some(g) => (g.1, g.2) = (g.1 + 1, g.2 + plan.tensor(t).numel() * 4),
                None => groups.push((name, 1, plan.tensor(t).numel() * 4)),
            }
        }
        groups.sort_by_key(|g| std::cmp::Reverse(g.2));
        let largest: Vec<String> =
            groups.iter().take(8).map(|(name, n, b)| format!("{name} x {n} {:.1} MiB", mib(*b))).collect();
        println!("  largest live there:   {}", largest.join(", "));
        let (mut clears, mut cleared) = (0, 0);
        for phase in [Phase::Forward, Phase::Backward] {
            for i in 0..plan.steps(phase).len() {
                clears += plan.clears_before(phase, i).len();
                cleared += plan.clears_before(phase, i).iter().map(|&t| plan.tensor(t).numel() * 4).sum::<usize>();
            }
        }
        println!(
            "  clears per micro-batch: {clears} ({:.1} MiB zeroed before accumulating first writes)",
            mib(cleared)
        );
        let largest = plan.tensors.iter().max_by_key(|t| t.numel()).expect("plans have tensors");
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
        let b = cfg.eval.batch_seqs;
        let eval_plan = wgolf::model::build_eval_plan(&cfg, b, b * cfg.train.seq_len)?;
        println!(
            "  eval plan:            {} tensors ({:.1} MiB, {:.1} MiB with reuse), {} forward steps per batch of {b} x {}",
            eval_plan.tensors.len(),
            mib(eval_plan.bytes_without_reuse()),
            mib(eval_plan.bytes()),
            eval_plan.steps(Phase::Forward).len(),
            cfg.train.seq_len
        );
        if kernels {
            println!();
            print!("{}", wgolf::plan::cost::account(&plan, cfg.train.grad_accum).markdown());
        }
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

    let clear = plan.with_role(|r| matches!(r, Role::Grad | Role::Loss));
    for ex in [&mut gpu as &mut dyn Executor, &mut cpu] {
        wgolf::train::init_state(ex, &plan, cfg.train.seed)?;
        wgolf::train::write_hypers(ex, &plan, &cfg, 0, 1.0)?;
        host::write_inputs(ex, &plan, &cfg, &x, &y)?;
        ex.clear(&clear)?;
    }
    let tol = wgolf::tolerance::tolerance(wgolf::tolerance::Check::Model);
    eprintln!(
        "comparing {} forward, {} backward and {} optimizer steps on {} against the CPU reference...",
        plan.steps(Phase::Forward).len(),
        plan.steps(Phase::Backward).len(),
        plan.steps(Phase::Optimizer).len(),
        gpu.describe()
    );
    match wgolf::exec::compare::compare_steps(&plan, &Phase::ALL, &mut gpu, &mut cpu, tol)? {
        Some(d) => Err(anyhow::anyhow!("{d}")).context("the GPU and CPU executors disagree"),
        None => {
            println!(
                "all {} steps agree within {tol:?}",
                Phase::ALL.iter().map(|&p| plan.steps(p).len()).sum::<usize>()
            );
            Ok(())
        }
    }
}

/// A worker of `wgolf train --nproc-per-node N`: its rank from the launcher's environment
/// (WORLD_SIZE, RANK, LOCAL_RANK as torchrun sets them, and WGOLF_RUN_ID), or None.
fn worker_env() -> Result<Option<wgolf::train::DistOptions>> {
    let Ok(rank) = std::env::var("RANK") else { return mpi_worker_env() };
    let var = |k: &str| -> Result<usize> {
        let v =
            std::env::var(k).map_err(|_| anyhow::anyhow!("RANK is set, so {k} must be too (a launcher's worker)"))?;
        v.trim().parse().map_err(|_| anyhow::anyhow!("{k}={v}: expected a non-negative integer"))
    };
    let rank: usize =
        rank.trim().parse().map_err(|_| anyhow::anyhow!("RANK={rank}: expected a non-negative integer"))?;
    let world = var("WORLD_SIZE")?;
    let local = var("LOCAL_RANK")?;
    anyhow::ensure!(
        local == rank,
        "LOCAL_RANK {local} differs from RANK {rank}: multi-node runs are not supported yet"
    );
    // The segment's name: the launcher's, or torchrun's run id; equal on every rank, unique per launch.
    let run_id = std::env::var("WGOLF_RUN_ID").or_else(|_| std::env::var("TORCHELASTIC_RUN_ID")).map_err(|_| {
        anyhow::anyhow!("RANK is set, so WGOLF_RUN_ID must be too (the same on every rank of a launch)")
    })?;
    Ok(Some(wgolf::train::DistOptions { rank, world, run_id, timeout: dist_timeout()?, mpi: None }))
}

/// `WGOLF_DIST_TIMEOUT_S`, the bound on every wait for another rank (default 20 s).
fn dist_timeout() -> Result<std::time::Duration> {
    let secs = match std::env::var("WGOLF_DIST_TIMEOUT_S") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .ok_or_else(|| anyhow::anyhow!("WGOLF_DIST_TIMEOUT_S={v}: expected positive seconds"))?,
        Err(_) => 20.0,
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// A rank started by `mpirun` (OpenMPI's `OMPI_COMM_WORLD_*`, or the PMI variables of MPICH
/// and Intel MPI), or None. Its collectives go through MPI (feature `mpi`; without it the run
/// is refused when the group forms, rather than training every rank alone).
fn mpi_worker_env() -> Result<Option<wgolf::train::DistOptions>> {
    let pairs = [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE")];
    let Some((rank_var, size_var)) = pairs.into_iter().find(|(r, _)| std::env::var(r).is_ok()) else {
        return Ok(None);
    };
    let var = |k: &str| -> Result<usize> {
        let v =
            std::env::var(k).map_err(|_| anyhow::anyhow!("{rank_var} is set, so {k} must be too (an MPI launch)"))?;
        v.trim().parse().map_err(|_| anyhow::anyhow!("{k}={v}: expected a non-negative integer"))
    };
    let (rank, world) = (var(rank_var)?, var(size_var)?);
    if world <= 1 {
        return Ok(None);
    }
    let run_id = format!("mpi-{}", std::env::var("OMPI_MCA_orte_ess_jobid").unwrap_or_default());
    let nodes = mpi_nodes()?;
    Ok(Some(wgolf::train::DistOptions { rank, world, run_id, timeout: dist_timeout()?, mpi: Some(nodes) }))
}

/// `WGOLF_MPI_RANKS_PER_NODE`: unset, the nodes MPI finds (the ranks that share memory);
/// N, every N consecutive ranks form a node (1: every mean through MPI alone).
fn mpi_nodes() -> Result<wgolf::dist::MpiNodes> {
    match std::env::var("WGOLF_MPI_RANKS_PER_NODE") {
        Err(_) => Ok(wgolf::dist::MpiNodes::Shared),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(wgolf::dist::MpiNodes::Consecutive(n)),
            _ => anyhow::bail!("WGOLF_MPI_RANKS_PER_NODE={v}: expected a positive number of ranks"),
        },
    }
}

/// `wgolf train --nproc-per-node N`: runs N copies of this command, rank 0 first, with the
/// launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK, WGOLF_RUN_ID), and waits for them.
/// Ranks other than 0 keep stderr (their errors) and lose stdout; when one fails, the others
/// fail on their own within their timeout (the group's errors name the rank) and are killed
/// if they have not after 30 s.
fn launch(nproc: usize) -> Result<()> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
    let exe = std::env::current_exe()?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let run_id = format!("train-{}-{millis}", std::process::id());
    let mut children = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env("WORLD_SIZE", nproc.to_string())
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("WGOLF_RUN_ID", &run_id);
        if rank > 0 {
            cmd.env("WGOLF_PROGRESS", "off").stdout(Stdio::null());
        }
        children.push(cmd.spawn().map_err(|e| anyhow::anyhow!("starting rank {rank} ({}): {e}", exe.display()))?);
    }
    let mut failed: Option<(usize, std::process::ExitStatus, Instant)> = None;
    let mut done = vec![false; nproc];
    loop {
        for (rank, child) in children.iter_mut().enumerate() {
            if done[rank] {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                done[rank] = true;
                if !status.success() && failed.is_none() {
                    failed = Some((rank, status, Instant::now()));
                }
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        if let Some((_, _, at)) = failed {
            if at.elapsed() > Duration::from_secs(30) {
                for (rank, child) in children.iter_mut().enumerate() {
                    if !done[rank] {
                        eprintln!("wgolf train: rank {rank} still running 30 s after another failed; killing it");
                        let _ = child.kill();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match failed {
        Some((rank, status, _)) if killed_by_signal(&status) => {
            anyhow::bail!("rank {rank} of {nproc} was killed ({status}); the other ranks' errors are above")
        }
        Some((rank, status, _)) => anyhow::bail!("rank {rank} of {nproc} failed ({status}); its error is above"),
        None => Ok(()),
    }
}

#[cfg(unix)]
fn killed_by_signal(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal().is_some()
}

#[cfg(not(unix))]
fn killed_by_signal(_: &std::process::ExitStatus) -> bool {
    false
}

/// This process's rank among the ranks on its node and their number: `LOCAL_RANK` and
/// `LOCAL_WORLD_SIZE` (torchrun), OpenMPI's `OMPI_COMM_WORLD_LOCAL_RANK` and `_LOCAL_SIZE`, or
/// else the global rank and world (one node).
fn local_rank_of(dist: &wgolf::train::DistOptions) -> (usize, usize) {
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    let pairs = [("LOCAL_RANK", "LOCAL_WORLD_SIZE"), ("OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE")];
    pairs
        .into_iter()
        .find_map(|(r, w)| Some((num(r)?, num(w)?)))
        .filter(|(r, w)| r < w)
        .unwrap_or((dist.rank, dist.world))
}

/// The adapter of local rank `rank` from `--adapter A,B,..`: one entry per process on this
/// node, in rank order.
fn adapter_of_rank(list: &str, rank: usize, local_world: usize) -> Result<String> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    anyhow::ensure!(
        entries.iter().all(|e| !e.is_empty()),
        "--adapter {list}: an empty entry (expected {local_world} adapters, an index or a name each)"
    );
    anyhow::ensure!(
        entries.len() == local_world,
        "--adapter {list}: {} adapters for {local_world} processes on this node (one per local rank, in rank order)",
        entries.len()
    );
    Ok(entries[rank].to_string())
}

/// The adapter of local rank `rank` when none was chosen: the rank-th discrete GPU, or the
/// default adapter for every rank when there is no discrete GPU (lavapipe, tests).
fn rank_adapter(rank: usize, world: usize) -> Result<Option<String>> {
    let discrete: Vec<usize> = wgolf::gpu::context::list_adapters()
        .iter()
        .filter(|a| a.info.device_type == wgpu::DeviceType::DiscreteGpu)
        .map(|a| a.index)
        .collect();
    match discrete.get(rank) {
        Some(index) => Ok(Some(index.to_string())),
        None if discrete.is_empty() => Ok(None),
        None => anyhow::bail!(
            "rank {rank} of {world}: only {} discrete GPUs for {world} processes (one each); \
             pass --adapter to put every rank on one adapter",
            discrete.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::adapter_of_rank;

    #[test]
    fn an_adapter_list_gives_each_local_rank_its_own() {
        assert_eq!(adapter_of_rank("0, 2,NVIDIA", 1, 3).unwrap(), "2");
        assert_eq!(adapter_of_rank("0,2,NVIDIA", 2, 3).unwrap(), "NVIDIA");
        let err = adapter_of_rank("0,1", 0, 4).unwrap_err().to_string();
        assert!(err.contains("2 adapters for 4 processes"), "{err}");
        let err = adapter_of_rank("0,,1", 0, 3).unwrap_err().to_string();
        assert!(err.contains("an empty entry"), "{err}");
    }
}

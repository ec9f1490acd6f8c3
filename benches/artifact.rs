//! Which weight layout compresses best: the artifact's weights under each candidate layout
//! (`quant::artifact::layout_sizes`: tensor order or byte planes, zstd-22 with or without
//! long-distance matching), with the time each takes. No GPU.
//!
//! `cargo bench --bench artifact -- [--checkpoint RUN | --config CONFIG] [--weights init|gaussian]`
//!
//! Weights: a run's exported weights (`--checkpoint`, its EMA when kept), or for a config
//! (default `configs/record.toml`) its seeded init (`init`: OrthoInit, most rows on the int6
//! path's fixed 1/31 grid, so far more compressible than trained weights) or `gaussian`
//! (default): every matrix row drawn from N(0, s^2) with a per-row s spread over a factor of
//! four, the vectors from the init, which fills the int6 and int8 grids the way trained
//! weights do. Prints a markdown table (layout, bytes, share of the uncompressed planes).
use std::path::PathBuf;
use std::time::Instant;
use wgolf::config::Config;
use wgolf::init::Rng;

fn main() -> anyhow::Result<()> {
    let (mut checkpoint, mut config, mut kind) = (None, PathBuf::from("configs/record.toml"), "gaussian".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--checkpoint" => checkpoint = args.next().map(PathBuf::from),
            "--config" => config = args.next().map(PathBuf::from).unwrap_or(config),
            "--weights" => kind = args.next().unwrap_or(kind),
            "--bench" => {}
            other => anyhow::bail!("unknown argument `{other}` (see the doc comment of benches/artifact.rs)"),
        }
    }
    let (plan, weights, what) = match &checkpoint {
        Some(run) => {
            let path = if run.is_dir() { wgolf::checkpoint::checkpoint_path(run) } else { run.clone() };
            let file = wgolf::checkpoint::read(&path)?;
            let plan = wgolf::model::build_plan(&file.config()?)?;
            let weights = wgolf::checkpoint::weights_from(&file, &plan)?;
            (plan, weights, format!("{} (trained)", path.display()))
        }
        None => {
            let cfg = Config::load(&config, &[])?;
            let plan = wgolf::model::build_plan(&cfg)?;
            let mut weights = wgolf::init::init_params(&plan, cfg.train.seed);
            match kind.as_str() {
                "init" => {}
                "gaussian" => gaussian_rows(&plan, &mut weights),
                other => anyhow::bail!("--weights {other}: expected init or gaussian"),
            }
            (plan, weights, format!("{} ({kind} weights)", config.display()))
        }
    };
    println!("{what}: {} parameters\n", plan.param_count());
    println!("| layout | bytes | of uncompressed |");
    println!("|---|---:|---:|");
    let start = Instant::now();
    let sizes = wgolf::quant::artifact::layout_sizes(&plan, &weights)?;
    let uncompressed = sizes[0].1 as f64;
    for (name, bytes) in sizes {
        println!("| {name} | {bytes} | {:.1}% |", 100.0 * bytes as f64 / uncompressed);
    }
    println!("\n{:.1} s for the four compressions", start.elapsed().as_secs_f64());
    Ok(())
}

/// Matrices row by row from N(0, s^2), s = 0.02 x 2^u with u uniform in [-1, 1] per row.
fn gaussian_rows(plan: &wgolf::plan::Plan, weights: &mut [(wgolf::plan::TensorId, Vec<f32>)]) {
    let mut rng = Rng::new(20261202);
    for (id, values) in weights.iter_mut() {
        let shape = &plan.tensor(*id).shape;
        if shape.len() < 2 {
            continue;
        }
        let cols = values.len() / shape[0];
        for row in values.chunks_mut(cols) {
            let s = 0.02 * 2f64.powf(2.0 * rng.uniform() - 1.0);
            row.iter_mut().for_each(|v| *v = (s * rng.normal()) as f32);
        }
    }
}

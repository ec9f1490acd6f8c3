//! Loading a run's weights and scoring a text file in bits per byte.
//!
//! Shows the evaluation path on text of your own: the weights file a run wrote
//! (`RUN/model.safetensors`, which carries its config) is loaded into the model's plan, the
//! text is tokenized with the run's sp1024 tokenizer (`[BOS] + ids`, as the shards hold
//! documents), cut into the model's sequence windows and scored by the same forward-only
//! scorer as `wgolf eval` (`eval::Scorer`, weights loaded by name); the tokenizer's byte tables turn the token losses into bits per byte of
//! the (normalized) text.
//!
//!     cargo run --release --example score_text -- RUN_OR_WEIGHTS [TEXT_FILE]
//!
//! (TEXT_FILE defaults to README.md; a run from `wgolf train` or examples/train_tiny.rs.)
use std::path::{Path, PathBuf};
use wgolf::data::{ByteLuts, Tokenizer, ValSet};
use wgolf::eval::{self, Scorer, ValData};
use wgolf::host::{Backend, Device};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(run) = args.next().map(PathBuf::from) else {
        anyhow::bail!("usage: score_text RUN_DIR_OR_WEIGHTS [TEXT_FILE]");
    };
    let text_path = PathBuf::from(args.next().unwrap_or_else(|| "README.md".into()));
    let weights_path = if run.is_dir() { run.join("model.safetensors") } else { run };

    // The weights and the config they were trained with.
    let file = wgolf::checkpoint::read(&weights_path)?;
    let cfg = file.config()?;
    let plan = wgolf::model::build_plan(&cfg)?;
    let weights: Vec<(String, Vec<f32>)> = wgolf::checkpoint::weights_from(&file, &plan)?
        .into_iter()
        .map(|(id, v)| (plan.tensor(id).name.clone(), v))
        .collect();
    let mut scorer = Scorer::whole_sequences(&cfg, &Device::open(&Backend::Gpu(None))?)?;
    scorer.load_weights(&weights)?;

    // The text as one document, tokenized like the shards: [BOS] + ids.
    let text = std::fs::read_to_string(&text_path)?;
    let tokenizer = Tokenizer::load(&cfg.data.tokenizer)?;
    let bos = tokenizer.bos_id().ok_or_else(|| anyhow::anyhow!("the tokenizer has no BOS"))?;
    let tokens: Vec<u16> = std::iter::once(bos).chain(tokenizer.encode(&text)).map(|t| t as u16).collect();
    let n_tokens = tokens.len();
    let set = ValSet::from_tokens(Path::new(&text_path), tokens, cfg.train.seq_len)?;
    let luts = ByteLuts::from_tokenizer(&tokenizer, cfg.model.vocab_size);
    let val = ValData { set, luts };

    // Whole windows of seq_len are scored (the tail shorter than a window is not).
    let acc = eval::evaluate(&mut scorer, &val, 0)?;
    println!(
        "{}: {} bytes, {n_tokens} tokens; scored {} tokens ({} bytes) in {} windows of {}: loss {:.4} nats, {:.4} bits per byte",
        text_path.display(),
        text.len(),
        acc.tokens(),
        acc.bytes(),
        val.set.num_seqs(),
        cfg.train.seq_len,
        acc.val_loss(),
        acc.val_bpb()
    );
    Ok(())
}

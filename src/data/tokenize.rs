//! `wgolf tokenize`: documents to challenge shards, exactly as the challenge's exporter
//! writes them.
//!
//! Each document becomes `[BOS] + ids` (no EOS). Documents are concatenated in input order;
//! the first `--val-docs` go to the val split, the rest to train. Each split is cut into
//! shards of `--shard-tokens` tokens (10^8 by default; the last one shorter), named
//! `fineweb_{val,train}_%06d.bin`; a document may straddle two shards.
//!
//! Inputs are `.jsonl` files, one `{"text": ...}` object per line (blank lines are skipped),
//! or `.txt` files, each of which is one document.
//!
//! Writes are atomic as a whole: shards are first written to a hidden staging directory and
//! only moved into `--out` once every document has been encoded, so an interrupted run leaves
//! nothing under a shard name. When `--out` does not exist yet the staging directory itself is
//! renamed into place in one step.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;

use super::bpb::ByteLuts;
use super::shard::{list_shards, write_shard, Split, MAX_SHARD_TOKENS};
use super::tokenizer::{EncodeScratch, Tokenizer};
use super::DataError;

/// Arguments of `wgolf tokenize`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenizeArgs {
    /// SentencePiece model (`.model`) to encode with.
    #[arg(long, value_name = "FILE")]
    pub tokenizer: PathBuf,

    /// Input documents: `.jsonl` (one {"text": ...} per line) or `.txt` (the whole file is
    /// one document). Read in the order given.
    #[arg(long, value_name = "PATH", num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,

    /// Directory to write the shards into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// How many leading documents form the validation split (the challenge uses 50,000).
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub val_docs: u64,

    /// Tokens per shard (the last shard of each split may be shorter).
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    pub shard_tokens: usize,

    /// Replace shards already in --out (otherwise their presence is an error).
    #[arg(long)]
    pub force: bool,

    /// Encoding threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Counts reported at the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizeStats {
    /// Documents in the val split.
    pub docs_val: u64,
    /// Documents in the train split.
    pub docs_train: u64,
    /// Tokens (BOS included) in the val split.
    pub tokens_val: u64,
    /// Tokens (BOS included) in the train split.
    pub tokens_train: u64,
    /// Shard files written for val.
    pub files_val: u64,
    /// Shard files written for train.
    pub files_train: u64,
    /// UTF-8 bytes of the documents as read.
    pub text_bytes: u64,
    /// UTF-8 bytes after SentencePiece normalization, as the bpb byte tables count them.
    pub normalized_bytes: u64,
}

impl TokenizeStats {
    /// All documents.
    pub fn docs(&self) -> u64 {
        self.docs_val + self.docs_train
    }

    /// All tokens.
    pub fn tokens(&self) -> u64 {
        self.tokens_val + self.tokens_train
    }
}

/// Runs `wgolf tokenize`.
pub fn run(args: &TokenizeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let stats = tokenize(args)?;
    let secs = started.elapsed().as_secs_f64();
    print_summary(args, &stats, secs);
    Ok(())
}

/// The work of `wgolf tokenize` without the summary: encodes the inputs and writes the
/// shards, returning the counts.
pub fn tokenize(args: &TokenizeArgs) -> anyhow::Result<TokenizeStats> {
    if args.shard_tokens == 0 || args.shard_tokens > MAX_SHARD_TOKENS {
        bail!("--shard-tokens must be between 1 and {MAX_SHARD_TOKENS}, got {}", args.shard_tokens);
    }
    let tok = Tokenizer::load(&args.tokenizer)?;
    if tok.vocab_size() > 1 << 16 {
        bail!("{}: vocabulary of {} ids does not fit uint16 shards", args.tokenizer.display(), tok.vocab_size());
    }
    let Some(bos) = tok.bos_id() else {
        bail!("{}: the model has no BOS (<s>) control piece", args.tokenizer.display());
    };
    let luts = ByteLuts::from_tokenizer(&tok, tok.vocab_size());

    let mut total_bytes = 0u64;
    for input in &args.input {
        input_kind(input)?;
        total_bytes += std::fs::metadata(input).map_err(|e| DataError::io(input, "read input", e))?.len();
    }

    // Existing shards are an error unless --force.
    let out = &args.out;
    let out_existed = out.exists();
    if out_existed {
        let existing = existing_shards(out)?;
        if !existing.is_empty() && !args.force {
            bail!(
                "{}: already holds {} shard(s) (e.g. {}); pass --force to replace them",
                out.display(),
                existing.len(),
                existing[0].file_name().unwrap_or_default().to_string_lossy()
            );
        }
    }

    // Stage inside --out when it exists, else beside it (then the whole directory moves).
    let staging = if out_existed {
        out.join(format!(".wgolf-tokenize-{}.tmp", std::process::id()))
    } else {
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        out.with_file_name(format!(".{name}.wgolf-tokenize-{}.tmp", std::process::id()))
    };
    if let Some(parent) = staging.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, "create directory", e))?;
        }
    }
    std::fs::create_dir(&staging).map_err(|e| DataError::io(&staging, "create directory", e))?;

    let result = (|| {
        let stats = encode_all(args, &tok, bos, &luts, &staging, total_bytes)?;
        publish(&staging, out, out_existed, args.force)?;
        Ok(stats)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// The shard files (either split) already in `dir`.
fn existing_shards(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut all = Vec::new();
    for split in [Split::Val, Split::Train] {
        match list_shards(dir, split) {
            Ok(v) => all.extend(v),
            Err(DataError::NoShards { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(all)
}

/// Moves the staged shards into `out`, then syncs the directories the renames changed.
fn publish(staging: &Path, out: &Path, out_existed: bool, force: bool) -> anyhow::Result<()> {
    let sync = |dir: &Path| crate::fsutil::sync_dir(dir).map_err(|e| DataError::io(dir, "sync directory", e));
    if !out_existed {
        // The staged shards' own directory was synced as each was written.
        std::fs::rename(staging, out).map_err(|e| DataError::io(out, "rename into place", e))?;
        sync(crate::fsutil::parent_dir(out))?;
        return Ok(());
    }
    if force {
        for old in existing_shards(out)? {
            std::fs::remove_file(&old).map_err(|e| DataError::io(&old, "remove old shard", e))?;
        }
    }
    let mut staged: Vec<PathBuf> = Vec::new();
    for split in [Split::Val, Split::Train] {
        if let Ok(v) = list_shards(staging, split) {
            staged.extend(v);
        }
    }
    for from in staged {
        let to = out.join(from.file_name().expect("a shard file name"));
        std::fs::rename(&from, &to).map_err(|e| DataError::io(&to, "rename into place", e))?;
    }
    std::fs::remove_dir(staging).map_err(|e| DataError::io(staging, "remove staging dir", e))?;
    sync(out)?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum InputKind {
    Jsonl,
    Txt,
}

fn input_kind(path: &Path) -> anyhow::Result<InputKind> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => Ok(InputKind::Jsonl),
        Some("txt") => Ok(InputKind::Txt),
        _ => Err(DataError::BadInput {
            path: path.to_path_buf(),
            line: 0,
            problem: "unsupported input: expected a .jsonl or .txt file".into(),
        }
        .into()),
    }
}

/// One JSONL record; fields other than `text` are ignored.
#[derive(serde::Deserialize)]
struct JsonDoc {
    text: String,
}

/// Reads documents in order, in batches for parallel encoding.
struct DocReader<'a> {
    inputs: &'a [PathBuf],
    next_input: usize,
    current: Option<(PathBuf, BufReader<File>, u64)>,
}

impl<'a> DocReader<'a> {
    fn new(inputs: &'a [PathBuf]) -> Self {
        DocReader { inputs, next_input: 0, current: None }
    }

    /// Appends up to `max_docs` documents (or about `max_bytes` of text) to `docs`; returns
    /// the input bytes consumed (for the progress bar). Leaves `docs` empty at the end.
    fn fill(&mut self, docs: &mut Vec<String>, max_docs: usize, max_bytes: usize) -> anyhow::Result<u64> {
        let mut consumed = 0u64;
        let mut batch_bytes = 0usize;
        let mut line = String::new();
        while docs.len() < max_docs && batch_bytes < max_bytes {
            if self.current.is_none() {
                let Some(path) = self.inputs.get(self.next_input) else {
                    break;
                };
                self.next_input += 1;
                let file = File::open(path).map_err(|e| DataError::io(path, "open input", e))?;
                if input_kind(path)? == InputKind::Txt {
                    let mut text = String::new();
                    BufReader::new(file).read_to_string(&mut text).map_err(|e| DataError::BadInput {
                        path: path.clone(),
                        line: 0,
                        problem: format!("cannot read as UTF-8 text: {e}"),
                    })?;
                    consumed += text.len() as u64;
                    batch_bytes += text.len();
                    docs.push(text);
                    continue;
                }
                self.current = Some((path.clone(), BufReader::with_capacity(1 << 20, file), 0));
            }
            let (path, reader, line_no) = self.current.as_mut().unwrap();
            line.clear();
            let n = reader.read_line(&mut line).map_err(|e| DataError::BadInput {
                path: path.clone(),
                line: *line_no + 1,
                problem: format!("cannot read line: {e}"),
            })?;
            if n == 0 {
                self.current = None;
                continue;
            }
            *line_no += 1;
            consumed += n as u64;
            if line.trim().is_empty() {
                continue;
            }
            let doc: JsonDoc = serde_json::from_str(&line).map_err(|e| DataError::BadInput {
                path: path.clone(),
                line: *line_no,
                problem: format!("not a JSON object with a string \"text\" field: {e}"),
            })?;
            batch_bytes += doc.text.len();
            docs.push(doc.text);
        }
        Ok(consumed)
    }
}

/// The exporter's shard writer: one buffer, flushed when full or when the split changes.
struct ShardWriter<'a> {
    dir: &'a Path,
    shard_tokens: usize,
    buf: Vec<u16>,
    split: Split,
    next_index: [usize; 2],
}

impl ShardWriter<'_> {
    fn flush(&mut self, stats: &mut TokenizeStats) -> Result<(), DataError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let slot = (self.split == Split::Train) as usize;
        let name = self.split.shard_name(self.next_index[slot]);
        write_shard(&self.dir.join(name), &self.buf)?;
        self.next_index[slot] += 1;
        match self.split {
            Split::Val => stats.files_val += 1,
            Split::Train => stats.files_train += 1,
        }
        self.buf.clear();
        Ok(())
    }

    fn push_doc(&mut self, tokens: &[u16], stats: &mut TokenizeStats) -> Result<(), DataError> {
        let mut rest = tokens;
        while !rest.is_empty() {
            let take = (self.shard_tokens - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == self.shard_tokens {
                self.flush(stats)?;
            }
        }
        Ok(())
    }
}

/// One encoded document: `[BOS] + ids` and its normalized byte count.
struct Encoded {
    tokens: Vec<u16>,
    normalized_bytes: u64,
}

fn encode_doc(
    tok: &Tokenizer,
    luts: &ByteLuts,
    bos: u32,
    text: &str,
    scratch: &mut EncodeScratch,
    ids: &mut Vec<u32>,
) -> Encoded {
    ids.clear();
    ids.push(bos);
    tok.encode_with(text, scratch, ids);
    let normalized_bytes = ids.windows(2).map(|w| luts.target_bytes(w[0], w[1])).sum();
    // Ids are below the vocabulary size, which was checked to fit uint16.
    Encoded { tokens: ids.iter().map(|&t| t as u16).collect(), normalized_bytes }
}

fn encode_all(
    args: &TokenizeArgs,
    tok: &Tokenizer,
    bos: u32,
    luts: &ByteLuts,
    staging: &Path,
    total_bytes: u64,
) -> anyhow::Result<TokenizeStats> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let mut progress = if args.quiet {
        crate::progress::Progress::hidden()
    } else {
        crate::progress::Progress::new("tokenize", total_bytes, crate::progress::Unit::Bytes)
    };
    progress.show_rate(1e-6, "MB/s");
    let mut read_bytes = 0u64;

    let mut stats = TokenizeStats::default();
    let mut writer = ShardWriter {
        dir: staging,
        shard_tokens: args.shard_tokens,
        buf: Vec::new(),
        split: Split::Val,
        next_index: [0, 0],
    };
    let mut reader = DocReader::new(&args.input);
    let mut docs = Vec::new();
    let mut scratches: Vec<(EncodeScratch, Vec<u32>)> = (0..threads).map(|_| Default::default()).collect();
    loop {
        docs.clear();
        let consumed = reader.fill(&mut docs, 4096, 16 << 20)?;
        read_bytes += consumed;
        if docs.is_empty() {
            break;
        }
        // Encode the batch in `threads` contiguous parts, keeping document order.
        let per = docs.len().div_ceil(threads);
        let encoded: Vec<Encoded> = std::thread::scope(|s| {
            let handles: Vec<_> = docs
                .chunks(per)
                .zip(scratches.iter_mut())
                .map(|(part, (scratch, ids))| {
                    s.spawn(move || {
                        part.iter().map(|text| encode_doc(tok, luts, bos, text, scratch, ids)).collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("an encoding thread panicked")).collect()
        });
        for (text, enc) in docs.iter().zip(&encoded) {
            let split = if stats.docs() < args.val_docs { Split::Val } else { Split::Train };
            if split != writer.split {
                writer.flush(&mut stats)?;
                writer.split = split;
            }
            if writer.buf.capacity() == 0 {
                writer.buf.reserve_exact(args.shard_tokens.min(1 << 27));
            }
            writer.push_doc(&enc.tokens, &mut stats)?;
            let n = enc.tokens.len() as u64;
            match split {
                Split::Val => {
                    stats.docs_val += 1;
                    stats.tokens_val += n;
                }
                Split::Train => {
                    stats.docs_train += 1;
                    stats.tokens_train += n;
                }
            }
            stats.text_bytes += text.len() as u64;
            stats.normalized_bytes += enc.normalized_bytes;
        }
        if progress.due() {
            progress.update(read_bytes, &format!("{} docs, {} tokens", stats.docs(), stats.tokens()));
        }
    }
    writer.flush(&mut stats)?;
    progress.finish();
    Ok(stats)
}

fn print_summary(args: &TokenizeArgs, s: &TokenizeStats, secs: f64) {
    let tpb = s.tokens() as f64 / s.normalized_bytes.max(1) as f64;
    println!(
        "documents: {} ({} val, {} train) from {} input file(s)",
        group(s.docs()),
        group(s.docs_val),
        group(s.docs_train),
        args.input.len()
    );
    println!(
        "tokens:    {} ({} val, {} train), BOS included",
        group(s.tokens()),
        group(s.tokens_val),
        group(s.tokens_train)
    );
    println!(
        "bytes:     {} of text, {} after normalization (what bpb counts)",
        group(s.text_bytes),
        group(s.normalized_bytes)
    );
    println!("tokens per byte: {tpb:.5} (normalized bytes)");
    println!("shards:    {} val + {} train in {}", s.files_val, s.files_train, args.out.display());
    println!("time:      {secs:.2} s ({:.2} MB/s of text)", s.text_bytes as f64 / 1e6 / secs.max(1e-9));
}

/// `1234567` -> `1,234,567`.
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

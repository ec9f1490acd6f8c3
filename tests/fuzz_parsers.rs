//! Deterministic mutation fuzzing of every parser of outside input: configs (TOML text and
//! `--set` overrides), shards, the SentencePiece tokenizer model, and safetensors
//! checkpoints and weight files (including what is read out of them: the embedded config,
//! the metadata, the weights against a plan).
//!
//! Each parser gets a few thousand inputs made from real seeds by a small seeded mutator
//! (truncations, bit flips, length fields set to huge values, random bytes, deleted and
//! duplicated ranges, whole random inputs, and format-aware edits such as a TOML value
//! replaced by `nan` or a safetensors header with a shape of 2^32). Every case must end in
//! `Ok` or in an `Err` whose message names the file; a panic, an error that does not name
//! the file, or a single allocation larger than the input justifies fails the test, listing
//! the first cases (each is reproducible from its parser and case number, and its input is
//! saved under the system temp directory in `wgolf-fuzz-failures/`).
//!
//! A summary line per parser (`fuzz <parser>: N cases, 0 panics, ...`) goes straight to the
//! process's stdout, so it shows in `cargo test` output without `--nocapture`.
//! `WGOLF_FUZZ_SCALE=10` runs ten times as many cases. Coverage-guided fuzzing of the same
//! entry points: `fuzz/` (cargo-fuzz, nightly).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use wgolf::config::Config;
use wgolf::data::{check_shard_bytes, read_shard, ByteLuts, TrainStream};
use wgolf::init::Rng;

// ---------------------------------------------------------------------------------------
// Allocation guard: the largest single allocation of the current case, per thread.

struct Tracking;

/// Above this an allocation is reported and the process stopped, before the allocator's
/// own failure (an abort without a word) can hide which case asked for it.
const HARD_CAP: usize = 1 << 30;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static CASE: Cell<(&'static str, u64)> = const { Cell::new(("", 0)) };
}

fn note(size: usize) {
    if size > HARD_CAP {
        let (parser, case) = CASE.try_with(|c| c.get()).unwrap_or(("?", 0));
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = case;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut err = std::io::stderr();
        let _ = err.write_all(b"fuzz_parsers: more than 1 GiB requested in one allocation by parser ");
        let _ = err.write_all(parser.as_bytes());
        let _ = err.write_all(b", case ");
        let _ = err.write_all(&digits[i..]);
        let _ = err.write_all(b"\n");
        std::process::abort();
    }
    let _ = PEAK.try_with(|p| {
        if size > p.get() {
            p.set(size)
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// The most one allocation may take while parsing `len` bytes: a small multiple of the
/// input (f16 tensors double in f32, hash maps and vectors round up) plus a fixed allowance.
fn budget(len: usize) -> usize {
    8 * len + (4 << 20)
}

// ---------------------------------------------------------------------------------------
// The mutator.

struct Mutator(Rng);

/// Values that break length and count fields.
const HUGE: [u64; 8] =
    [u64::MAX, 1 << 60, 1 << 32, u32::MAX as u64, i32::MAX as u64, 1 << 31, 0x8000_0000_0000_0000, 0];

/// Edge values for TOML fields and `--set`.
const VALUES: [&str; 28] = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "1.0",
    "0.999999",
    "1.0000001",
    "1e309",
    "-1e309",
    "nan",
    "inf",
    "-inf",
    "-0.0",
    "1e-45",
    "9223372036854775807",
    "18446744073709551616",
    "65537",
    "4294967297",
    "\"x\"",
    "\"\"",
    "true",
    "[]",
    "{}",
    "\"wallclock\"",
    "\"muon\"",
    "1979-05-27",
    "0x10",
];

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// A position in `len` bytes, inside `hot` half of the time.
    fn pos(&mut self, len: usize, hot: usize) -> usize {
        if hot > 0 && self.chance(2) {
            self.below(hot.min(len))
        } else {
            self.below(len)
        }
    }

    /// One byte-level mutation of `data`; returns its description.
    fn mutate_once(&mut self, data: &mut Vec<u8>, hot: usize) -> String {
        if data.is_empty() {
            data.push(self.below(256) as u8);
            return "one random byte".into();
        }
        let len = data.len();
        match self.below(10) {
            0 => {
                let n = if self.chance(2) { self.below(hot.max(1).min(len)) } else { self.below(len) };
                data.truncate(n);
                format!("truncate to {n} bytes")
            }
            1 => {
                let k = 1 + self.below(8);
                for _ in 0..k {
                    let p = self.pos(len, hot);
                    data[p] ^= 1 << self.below(8);
                }
                format!("flip {k} bits")
            }
            2 => {
                let p = self.pos(len, hot);
                let v = [0u8, 0xff, 0x7f, 0x80, 0x01, b'0', b'9', b'"', b'\\'][self.below(9)];
                data[p] = v;
                format!("byte {p} = {v:#x}")
            }
            3 => {
                // A length or count field set to a huge value (little-endian u32 or u64).
                let v = HUGE[self.below(HUGE.len())];
                let width = if self.chance(2) { 4 } else { 8 };
                let mut p = self.pos(len, hot);
                if self.chance(2) {
                    p &= !(width - 1);
                }
                let bytes = v.to_le_bytes();
                for (i, b) in bytes[..width].iter().enumerate() {
                    if let Some(d) = data.get_mut(p + i) {
                        *d = *b;
                    }
                }
                format!("{width} bytes at {p} = {v:#x}")
            }
            4 => {
                // A huge protobuf varint (ten bytes with the continuation bit).
                let p = self.pos(len, hot);
                let v: &[u8] = if self.chance(2) {
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
                } else {
                    &[0xff, 0xff, 0xff, 0xff, 0x0f]
                };
                for (i, b) in v.iter().enumerate() {
                    if let Some(d) = data.get_mut(p + i) {
                        *d = *b;
                    }
                }
                format!("varint at {p} = {v:x?}")
            }
            5 => {
                let p = self.pos(len, hot);
                let n = (1 + self.below(32)).min(len - p);
                for d in &mut data[p..p + n] {
                    *d = self.0.next_u64() as u8;
                }
                format!("{n} random bytes at {p}")
            }
            6 => {
                let p = self.pos(len, hot);
                let n = (1 + self.below(64)).min(len - p);
                data.drain(p..p + n);
                format!("delete {n} bytes at {p}")
            }
            7 => {
                let p = self.pos(len, hot);
                let n = 1 + self.below(16);
                let ins: Vec<u8> = (0..n).map(|_| self.0.next_u64() as u8).collect();
                data.splice(p..p, ins);
                format!("insert {n} random bytes at {p}")
            }
            8 => {
                let from = self.pos(len, hot);
                let n = (1 + self.below(128)).min(len - from);
                let chunk = data[from..from + n].to_vec();
                let to = self.pos(len, hot);
                data.splice(to..to, chunk);
                format!("copy {n} bytes from {from} to {to}")
            }
            _ => {
                let n = self.below(2 * hot.max(64));
                *data = (0..n).map(|_| self.0.next_u64() as u8).collect();
                format!("{n} random bytes")
            }
        }
    }

    /// One to four byte-level mutations.
    fn mutate(&mut self, seed: &[u8], hot: usize) -> (Vec<u8>, String) {
        let mut data = seed.to_vec();
        let k = if self.chance(4) { 2 + self.below(3) } else { 1 };
        let what: Vec<String> = (0..k).map(|_| self.mutate_once(&mut data, hot)).collect();
        (data, what.join(", "))
    }

    /// A TOML-aware edit of `text`: a value replaced by an edge value, a key misspelt or
    /// moved, a line deleted or duplicated, a section renamed or added.
    fn mutate_toml(&mut self, text: &str) -> (String, String) {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let keyed: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains('=')).collect();
        let i = keyed[self.below(keyed.len())];
        let (key, _) = lines[i].split_once('=').unwrap();
        let key = key.trim().to_string();
        let what = match self.below(8) {
            0..=2 => {
                let v = VALUES[self.below(VALUES.len())];
                lines[i] = format!("{key} = {v}");
                format!("{key} = {v}")
            }
            3 => {
                let mut k: Vec<char> = key.chars().collect();
                let p = self.below(k.len());
                match self.below(3) {
                    0 => {
                        k.remove(p);
                    }
                    1 => k.insert(p, (b'a' + self.below(26) as u8) as char),
                    _ => k[p] = (b'a' + self.below(26) as u8) as char,
                }
                let k: String = k.into_iter().collect();
                lines[i] = lines[i].replacen(&key, &k, 1);
                format!("key {key} -> {k}")
            }
            4 => {
                lines.remove(i);
                format!("delete {key}")
            }
            5 => {
                let l = lines[i].clone();
                let to = self.below(lines.len());
                lines.insert(to, l);
                format!("copy {key} to line {to}")
            }
            6 => {
                let sections: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with('[')).collect();
                let s = sections[self.below(sections.len())];
                let new = ["[modle]", "[train]", "[data]", "[extra]", "[[model]]", "[model.sub]", "["][self.below(7)];
                let old = std::mem::replace(&mut lines[s], new.to_string());
                format!("section {old} -> {new}")
            }
            _ => {
                let v: String = (0..1 + self.below(12)).map(|_| (32 + self.below(95) as u8) as char).collect();
                lines[i] = format!("{key} = {v}");
                format!("{key} = {v:?}")
            }
        };
        (lines.join("\n"), what)
    }
}

// ---------------------------------------------------------------------------------------
// Running cases and reporting.

/// The outcome of one parser's run.
struct Run {
    parser: &'static str,
    cases: usize,
    ok: usize,
    err: usize,
    largest_alloc: usize,
    problems: Vec<String>,
    started: Instant,
}

impl Run {
    fn new(parser: &'static str) -> Self {
        Run { parser, cases: 0, ok: 0, err: 0, largest_alloc: 0, problems: Vec::new(), started: Instant::now() }
    }

    /// Runs one case: `f` parses `input` and returns `Ok(())` or an error message, which must
    /// contain one of `names`. Panics, unnamed errors and oversized allocations are recorded.
    fn case(&mut self, input: &[u8], what: &str, names: &[&str], f: impl FnOnce() -> Result<(), String>) {
        let case = self.cases;
        self.cases += 1;
        CASE.with(|c| c.set((self.parser, case as u64)));
        PEAK.with(|p| p.set(0));
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let peak = PEAK.with(|p| p.get());
        self.largest_alloc = self.largest_alloc.max(peak);
        let problem = match outcome {
            Ok(Ok(())) => {
                self.ok += 1;
                None
            }
            Ok(Err(msg)) => {
                self.err += 1;
                (!names.iter().any(|n| msg.contains(n))).then(|| format!("error does not name {names:?}: {msg}"))
            }
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Some(format!("PANIC: {msg}"))
            }
        };
        let problem = problem.or_else(|| {
            (peak > budget(input.len()))
                .then(|| format!("allocated {peak} bytes at once for a {}-byte input", input.len()))
        });
        if let Some(p) = problem {
            if self.problems.len() < 8 {
                let dir = std::env::temp_dir().join("wgolf-fuzz-failures");
                let saved = dir.join(format!("{}-{case}.bin", self.parser));
                let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&saved, input));
                self.problems.push(format!("case {case} ({what}; input saved to {}): {p}", saved.display()));
            } else {
                self.problems.push(String::new());
            }
        }
    }

    /// Prints the summary line and fails on any problem.
    fn finish(self) {
        let panics = self.problems.iter().filter(|p| p.contains("PANIC")).count();
        let line = format!(
            "fuzz {}: {} cases, {} panics, {} problems ({} Ok, {} Err), largest allocation {} KiB, {:.2} s",
            self.parser,
            self.cases,
            panics,
            self.problems.len(),
            self.ok,
            self.err,
            self.largest_alloc / 1024,
            self.started.elapsed().as_secs_f64()
        );
        // Straight to the process's stdout: libtest captures only the print macros.
        let _ = writeln!(std::io::stdout(), "{line}");
        let listed: Vec<&String> = self.problems.iter().filter(|p| !p.is_empty()).collect();
        assert!(
            self.problems.is_empty(),
            "{line}\nfirst problems:\n{}",
            listed.iter().map(|p| format!("  {p}\n")).collect::<String>()
        );
    }
}

/// Cases per parser: `base` times `WGOLF_FUZZ_SCALE` (default 1).
fn cases(base: usize) -> usize {
    let scale: usize = std::env::var("WGOLF_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    base * scale.max(1)
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Checks everything the library reads out of a config: the round trip through TOML that
/// checkpoints rely on.
fn exercise_config(cfg: &Config, file: &str) -> Result<(), String> {
    let text = toml::to_string(cfg).map_err(|e| format!("{file}: cannot serialize: {e}"))?;
    let back = Config::parse(&text, file, &[]).map_err(|e| format!("{file}: round trip fails: {e}"))?;
    assert_eq!(&back, cfg, "{file}: the config changes in a round trip");
    let _ = (cfg.head_dim(), cfg.step_tokens(), cfg.effective_rope_base(), cfg.lr_scale(0), cfg.muon_momentum(0));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The parsers.

fn bundled_configs() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(repo("configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 4, "configs/*.toml");
    out
}

#[test]
fn fuzz_config_toml() {
    let seeds = bundled_configs();
    let dir = tempfile::tempdir().unwrap();
    let mut m = Mutator(Rng::new(0xC0_FF16));
    let mut run = Run::new("config");
    for case in 0..cases(3000) {
        let (name, seed) = &seeds[case % seeds.len()];
        let file = format!("fuzz-{name}");
        let (bytes, what) = if m.chance(2) {
            let (t, w) = m.mutate_toml(seed);
            (t.into_bytes(), w)
        } else {
            m.mutate(seed.as_bytes(), seed.len())
        };
        run.case(&bytes, &what, &[&file], || match std::str::from_utf8(&bytes) {
            Ok(text) => {
                let cfg = Config::parse(text, &file, &[]).map_err(|e| e.to_string())?;
                exercise_config(&cfg, &file)
            }
            Err(_) => {
                // Not UTF-8: through the file-reading path, which must say so.
                let path = dir.path().join(&file);
                let _ = std::fs::remove_file(&path);
                std::fs::write(&path, &bytes).unwrap();
                Config::load(&path, &[]).map(|_| ()).map_err(|e| e.to_string())
            }
        });
    }
    run.finish();
}

#[test]
fn fuzz_config_overrides() {
    let seeds = bundled_configs();
    let mut m = Mutator(Rng::new(0x5E7));
    let mut run = Run::new("config --set");
    let keys: Vec<String> = seeds[0]
        .1
        .lines()
        .fold((String::new(), Vec::new()), |(section, mut keys), l| {
            if let Some(s) = l.strip_prefix('[') {
                (s.trim_end_matches(']').to_string(), keys)
            } else {
                if let Some((k, _)) = l.split_once('=') {
                    keys.push(format!("{section}.{}", k.trim()));
                }
                (section, keys)
            }
        })
        .1;
    for case in 0..cases(2000) {
        let (name, seed) = &seeds[case % seeds.len()];
        let file = format!("fuzz-{name}");
        let overrides: Vec<String> = (0..1 + m.below(3))
            .map(|_| {
                let key = &keys[m.below(keys.len())];
                let val = if m.chance(4) {
                    (0..m.below(8)).map(|_| (32 + m.below(95) as u8) as char).collect()
                } else {
                    VALUES[m.below(VALUES.len())].to_string()
                };
                match m.below(6) {
                    0 => {
                        let (b, _) = m.mutate(format!("{key}={val}").as_bytes(), 16);
                        String::from_utf8_lossy(&b).into_owned()
                    }
                    1 => format!("{}={val}", key.replace('.', "")),
                    2 => format!("{key}.x={val}"),
                    3 => format!("{key}{val}"),
                    _ => format!("{key}={val}"),
                }
            })
            .collect();
        let what = format!("--set {overrides:?}");
        // A bad override names its argument (`--set ...`) rather than the file.
        run.case(what.as_bytes(), &what, &[&file, "--set "], || {
            let cfg = Config::parse(seed, &file, &overrides).map_err(|e| e.to_string())?;
            exercise_config(&cfg, &file)
        });
    }
    run.finish();
}

/// The bundled val shard cut to its first 2,000 tokens (header count rewritten).
fn seed_shard() -> Vec<u8> {
    let full = std::fs::read(repo("data/mini_sp1024/fineweb_val_000000.bin")).unwrap();
    let tokens = 2000;
    let mut seed = full[..1024 + 2 * tokens].to_vec();
    seed[8..12].copy_from_slice(&(tokens as i32).to_le_bytes());
    seed
}

#[test]
fn fuzz_shard() {
    let seed = seed_shard();
    check_shard_bytes(Path::new("seed.bin"), &seed, Some(1024)).expect("the seed shard is valid");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fineweb_train_000000.bin");
    let name = "fineweb_train_000000.bin";
    let mut m = Mutator(Rng::new(0x5AAD));
    let mut run = Run::new("shard");
    for case in 0..cases(3000) {
        let (bytes, what) = m.mutate(&seed, 1024);
        // A fresh file each time: rewriting one in place makes ext4 flush it on close.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, &bytes).unwrap();
        let stream = case % 4 == 0;
        run.case(&bytes, &what, &[name], || {
            let from_file = read_shard(&path, Some(1024)).map_err(|e| e.to_string());
            let from_bytes = check_shard_bytes(&path, &bytes, Some(1024)).map_err(|e| e.to_string());
            match (&from_file, &from_bytes) {
                (Ok(s), Ok(n)) => assert_eq!(s.len(), *n, "the file and bytes readers disagree"),
                (Err(a), Err(b)) => assert_eq!(a, b, "the file and bytes readers disagree"),
                _ => panic!("the file and bytes readers disagree: {from_file:?} vs {from_bytes:?}"),
            }
            let shard = from_file?;
            assert!(shard.checked_tokens().map_err(|e| e.to_string())?.iter().all(|&t| t < 1024));
            drop(shard);
            if !stream {
                return Ok(());
            }
            // The training stream over a directory holding just this shard.
            let mut stream = TrainStream::open(dir.path(), 1024).map_err(|e| e.to_string())?;
            for _ in 0..3 {
                let (x, y) = stream.next_batch(64, 16, 2, 1).map_err(|e| e.to_string())?;
                assert_eq!((x.len(), y.len()), (64, 64));
            }
            Ok(())
        });
    }
    run.finish();
}

#[test]
fn fuzz_tokenizer_model() {
    let seed = std::fs::read(repo("data/tokenizers/fineweb_1024_bpe.model")).unwrap();
    let path = Path::new("fuzz/fineweb_1024_bpe.model");
    let name = "fineweb_1024_bpe.model";
    // Text that reaches the normalizer's trie, the whitespace rules, merges and byte fallback.
    let text = "  Hello,  wörld! ＡＢＣ ﬁ \u{301}e\u{0}\t\r\n x² 東京 🎉 ";
    let mut m = Mutator(Rng::new(0x70C));
    let mut run = Run::new("tokenizer");
    for _ in 0..cases(3000) {
        // The pieces come first in the file; the character map fills most of the rest.
        let (bytes, what) = m.mutate(&seed, 16 << 10);
        run.case(&bytes, &what, &[name], || {
            let tok = wgolf::data::Tokenizer::from_file_bytes(path, &bytes).map_err(|e| e.to_string())?;
            let ids = tok.encode(text);
            assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()), "an id past the vocabulary");
            let _ = tok.decode(&ids);
            let _ = tok.normalize(text);
            let luts = ByteLuts::from_tokenizer(&tok, 1024);
            assert!(luts.len() >= tok.vocab_size());
            Ok(())
        });
    }
    run.finish();
}

/// The config of the small plan the safetensors seed holds.
fn small_config() -> Config {
    let overrides = [
        "model.vocab_size=64",
        "model.model_dim=16",
        "model.num_heads=2",
        "model.num_kv_heads=1",
        "model.num_layers=2",
    ]
    .map(String::from);
    Config::load(&repo("configs/tiny.toml"), &overrides).unwrap()
}

/// A checkpoint-like safetensors file of the small plan's parameters (f32), two more
/// tensors in f16 and bf16, and the metadata wgolf writes. Returns the bytes and the length
/// of its header (8-byte length field plus JSON).
fn seed_safetensors(cfg: &Config, plan: &wgolf::plan::Plan) -> (Vec<u8>, usize) {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let mut named: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = plan
        .params
        .iter()
        .map(|s| {
            let d = plan.tensor(s.param);
            let v: Vec<f32> = (0..d.numel()).map(|i| (i % 7) as f32 * 0.1).collect();
            (d.name.clone(), Dtype::F32, d.shape.clone(), bytemuck::cast_slice(&v).to_vec())
        })
        .collect();
    named.push(("extra.f16".into(), Dtype::F16, vec![3, 2], vec![0x3c; 12]));
    named.push(("extra.bf16".into(), Dtype::BF16, vec![4], vec![0x3f; 8]));
    let views: Vec<(String, TensorView)> = named
        .iter()
        .map(|(n, dt, shape, data)| (n.clone(), TensorView::new(*dt, shape.clone(), data).unwrap()))
        .collect();
    let metadata = HashMap::from([
        ("wgolf_format".to_string(), "checkpoint-2".to_string()),
        ("wgolf_config".to_string(), toml::to_string(cfg).unwrap()),
        ("wgolf_step".to_string(), "3".to_string()),
        ("wgolf_elapsed_s".to_string(), "1.5".to_string()),
        (
            "wgolf_stream".to_string(),
            r#"{"shard_index":0,"shard_name":"fineweb_train_000000.bin","offset":10,"tokens_consumed":10}"#.to_string(),
        ),
    ]);
    let bytes = safetensors::serialize(views, Some(metadata)).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // The metadata map's order is the hash map's, which changes from run to run: rewrite the
    // header with sorted keys (serde_json's map), so that every case is reproducible.
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..header]).unwrap();
    let mut text = serde_json::to_string(&json).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[header..]);
    (out, 8 + text.len())
}

/// Rewrites the JSON header of a safetensors file with one number replaced by an edge
/// value, and its length field to match, so that the crate's checks of shapes and offsets
/// (rather than of the length) are what the case reaches.
fn mutate_safetensors_json(m: &mut Mutator, bytes: &[u8], header: usize) -> (Vec<u8>, String) {
    let json = String::from_utf8_lossy(&bytes[8..header]).into_owned();
    let digits: Vec<usize> = json.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
    let start = digits[m.below(digits.len())];
    let end = start + json[start..].find(|c: char| !c.is_ascii_digit()).unwrap_or(json.len() - start);
    let v = [
        "0",
        "1",
        "4294967296",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775807",
        "65536",
        "-1",
        "1e400",
    ][m.below(9)];
    let new = format!("{}{v}{}", &json[..start], &json[end..]);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(new.as_bytes());
    out.extend_from_slice(&bytes[header..]);
    (out, format!("JSON number {:?} at {start} -> {v}", &json[start..end]))
}

#[test]
fn fuzz_safetensors() {
    let cfg = small_config();
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    let (seed, header) = seed_safetensors(&cfg, &plan);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let name = "checkpoint.safetensors";
    {
        let ck = wgolf::checkpoint::read_bytes(&path, &seed).expect("the seed reads");
        assert_eq!(ck.config().unwrap(), cfg);
        wgolf::checkpoint::weights_from(&ck, &plan).expect("the seed holds the plan's weights");
    }
    let mut m = Mutator(Rng::new(0x5AFE));
    let mut run = Run::new("safetensors");
    for case in 0..cases(3000) {
        let (bytes, what) = match m.below(4) {
            0 => mutate_safetensors_json(&mut m, &seed, header),
            _ => m.mutate(&seed, header),
        };
        let through_file = case % 16 == 0;
        if through_file {
            std::fs::write(&path, &bytes).unwrap();
        }
        run.case(&bytes, &what, &[name], || {
            let err = |e: anyhow::Error| format!("{e:#}");
            let ck = if through_file {
                wgolf::checkpoint::read(&path).map_err(err)?
            } else {
                wgolf::checkpoint::read_bytes(&path, &bytes).map_err(err)?
            };
            // Every reader of what a checkpoint holds; each must fail cleanly, alone.
            let results = [
                ck.config().map_err(err).and_then(|c| exercise_config(&c, name)),
                ck.step().map(|_| ()).map_err(err),
                ck.elapsed_s().map(|_| ()).map_err(err),
                ck.stream().map(|_| ()).map_err(err),
                wgolf::checkpoint::weights_from(&ck, &plan).map(|_| ()).map_err(err),
            ];
            let _ = ck.is_checkpoint();
            results.into_iter().find(Result::is_err).unwrap_or(Ok(()))
        });
    }
    run.finish();
}

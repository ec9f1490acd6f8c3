//! `wgolf tokenize`: byte-identical output to the challenge's exporter on the bundled
//! sample, the val/train split and shard cutting, refusal to clobber, atomicity on failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use wgolf::data::tokenize::{tokenize, TokenizeArgs};
use wgolf::data::{list_shards, read_shard, Split};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

fn args(inputs: &[PathBuf], out: &Path, val_docs: u64, shard_tokens: usize) -> TokenizeArgs {
    TokenizeArgs {
        tokenizer: data("tokenizers/fineweb_1024_bpe.model"),
        input: inputs.to_vec(),
        out: out.to_path_buf(),
        val_docs,
        shard_tokens,
        force: false,
        threads: Some(2),
        quiet: true,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn tokens_of(paths: &[PathBuf]) -> Vec<u16> {
    paths.iter().flat_map(|p| read_shard(p, Some(1024)).unwrap().tokens().to_vec()).collect()
}

#[test]
fn binary_writes_the_reference_val_shard() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sp1024");
    let output = Command::new(env!("CARGO_BIN_EXE_wgolf"))
        .arg("tokenize")
        .arg("--tokenizer")
        .arg(data("tokenizers/fineweb_1024_bpe.model"))
        .arg("--input")
        .arg(data("fineweb-samples/pg_verify_docs_200.jsonl"))
        .arg("--out")
        .arg(&out)
        .args(["--val-docs", "200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wgolf tokenize failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.is_dir(), "`wgolf tokenize` wrote nothing (does src/main.rs dispatch the subcommand?): {stdout}");
    assert_eq!(names(&out), ["fineweb_val_000000.bin"]);
    let ours = std::fs::read(out.join("fineweb_val_000000.bin")).unwrap();
    let reference = std::fs::read(data("mini_sp1024/fineweb_val_000000.bin")).unwrap();
    assert!(ours == reference, "the val shard differs from the reference");
    // The summary reports documents, tokens, bytes and tokens per byte.
    for want in ["200", "628,457", "1,489,418", "0.42195"] {
        assert!(stdout.contains(want), "summary lacks {want}: {stdout}");
    }
}

#[test]
fn split_and_small_shards_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let docs = data("fineweb-samples/pg_verify_docs_200.jsonl");
    let stats = tokenize(&args(&[docs], &out, 50, 100_000)).unwrap();
    assert_eq!(stats.docs_val, 50);
    assert_eq!(stats.docs_train, 150);
    assert_eq!(stats.tokens(), 628_457);
    assert_eq!(stats.normalized_bytes, 1_489_418);

    let val = list_shards(&out, Split::Val).unwrap();
    let train = list_shards(&out, Split::Train).unwrap();
    assert_eq!(val.len() as u64, stats.files_val);
    assert_eq!(train.len() as u64, stats.files_train);
    assert_eq!(stats.tokens_val.div_ceil(100_000), stats.files_val);
    assert_eq!(stats.tokens_train.div_ceil(100_000), stats.files_train);
    // Every shard but the last of each split is exactly full.
    for split in [&val, &train] {
        for p in &split[..split.len() - 1] {
            assert_eq!(read_shard(p, None).unwrap().len(), 100_000);
        }
    }
    // The val split ends where the 51st document begins; val + train is the reference.
    let (v, t) = (tokens_of(&val), tokens_of(&train));
    assert_eq!(v.len() as u64, stats.tokens_val);
    assert_eq!(v[0], 1);
    assert_eq!(t[0], 1);
    assert_eq!(v.iter().filter(|&&x| x == 1).count(), 50);
    let reference = read_shard(&data("mini_sp1024/fineweb_val_000000.bin"), None).unwrap();
    assert_eq!([v, t].concat(), reference.tokens());
    // No staging leftovers.
    assert!(names(&out).iter().all(|n| n.starts_with("fineweb_")));
}

#[test]
fn txt_inputs_are_whole_documents_and_all_val_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(&a, "Hello world").unwrap();
    std::fs::write(&b, "  tab\tand\nnewline\n").unwrap();
    let out = dir.path().join("out");
    let stats = tokenize(&args(&[a, b], &out, 0, 1000)).unwrap();
    assert_eq!((stats.docs_val, stats.docs_train), (0, 2));
    let train = list_shards(&out, Split::Train).unwrap();
    assert_eq!(tokens_of(&train), [1, 981, 465, 943, 458, 401, 1, 941, 393, 290, 569, 882]);
    assert!(list_shards(&out, Split::Val).is_err());
}

#[test]
fn existing_shards_need_force() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("doc.txt");
    std::fs::write(&txt, "Hello world").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "not a shard").unwrap();
    tokenize(&args(std::slice::from_ref(&txt), &out, 1, 1000)).unwrap();
    assert_eq!(names(&out), ["fineweb_val_000000.bin", "keep.txt"]);

    let err = tokenize(&args(std::slice::from_ref(&txt), &out, 0, 1000)).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(names(&out), ["fineweb_val_000000.bin", "keep.txt"]);

    let mut forced = args(&[txt], &out, 0, 1000);
    forced.force = true;
    tokenize(&forced).unwrap();
    assert_eq!(names(&out), ["fineweb_train_000000.bin", "keep.txt"]);
}

#[test]
fn failed_run_leaves_no_shards() {
    let dir = tempfile::tempdir().unwrap();
    let good = data("fineweb-samples/pg_verify_docs_200.jsonl");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n\n{\"txt\": \"no text field\"}\n").unwrap();

    // A fresh output directory is never created.
    let out = dir.path().join("fresh");
    let err = tokenize(&args(&[good.clone(), bad.clone()], &out, 10, 50_000)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.jsonl:3") && msg.contains("text"), "{msg}");
    assert!(!out.exists());

    // An existing one is left as it was.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    tokenize(&args(&[good, bad], &existing, 10, 50_000)).unwrap_err();
    assert!(names(&existing).is_empty());
    assert_eq!(names(dir.path()), ["bad.jsonl", "existing"]);
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("docs.csv");
    std::fs::write(&csv, "a,b").unwrap();
    let out = dir.path().join("out");
    let msg = tokenize(&args(&[csv], &out, 0, 1000)).unwrap_err().to_string();
    assert!(msg.contains("docs.csv") && msg.contains(".jsonl or .txt"), "{msg}");

    let missing = dir.path().join("missing.jsonl");
    let msg = tokenize(&args(&[missing], &out, 0, 1000)).unwrap_err().to_string();
    assert!(msg.contains("missing.jsonl"), "{msg}");

    let txt = dir.path().join("a.txt");
    std::fs::write(&txt, "x").unwrap();
    let msg = tokenize(&args(&[txt], &out, 0, 0)).unwrap_err().to_string();
    assert!(msg.contains("--shard-tokens"), "{msg}");
    assert!(!out.exists());
}

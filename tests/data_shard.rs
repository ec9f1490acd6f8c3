//! Shard format: round trips, header and size validation, clear errors for malformed files.

use std::path::{Path, PathBuf};

use wgolf::data::{list_shards, read_shard, write_shard, DataError, Split};

fn bundled(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// A header with the given words 0..3, then `tokens`.
fn raw_shard(magic: i32, version: i32, count: i32, tokens: &[u16]) -> Vec<u8> {
    let mut bytes = vec![0u8; 1024];
    bytes[0..4].copy_from_slice(&magic.to_le_bytes());
    bytes[4..8].copy_from_slice(&version.to_le_bytes());
    bytes[8..12].copy_from_slice(&count.to_le_bytes());
    for t in tokens {
        bytes.extend_from_slice(&t.to_le_bytes());
    }
    bytes
}

/// Writes `bytes` as `name` in `dir` and returns the error of reading it with vocab 1024.
fn read_err(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, DataError) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = read_shard(&path, Some(1024)).expect_err("malformed shard must be rejected");
    (path, err)
}

/// The message names the file and contains every one of `words`.
fn assert_message(err: &DataError, path: &Path, words: &[&str]) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "message {msg:?} does not name {}", path.display());
    for w in words {
        assert!(msg.contains(w), "message {msg:?} does not say {w:?}");
    }
}

#[test]
fn write_then_read_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fineweb_train_000000.bin");
    let tokens: Vec<u16> = (0..5000u32).map(|i| (i * 7 % 1024) as u16).collect();
    write_shard(&path, &tokens).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024 + 2 * tokens.len() as u64);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[0..4], &20240520i32.to_le_bytes());
    assert_eq!(&bytes[4..8], &1i32.to_le_bytes());
    assert_eq!(&bytes[8..12], &5000i32.to_le_bytes());
    assert!(bytes[12..1024].iter().all(|&b| b == 0));
    assert_eq!(&bytes[1024..1026], &tokens[0].to_le_bytes());

    let shard = read_shard(&path, Some(1024)).unwrap();
    assert_eq!(shard.tokens(), &tokens[..]);
    assert_eq!(shard.len(), 5000);
    assert_eq!(shard.path(), path.as_path());
    // Only the shard itself is left: the temporary file was renamed into place.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn write_replaces_an_existing_shard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fineweb_val_000000.bin");
    write_shard(&path, &[1, 2, 3]).unwrap();
    write_shard(&path, &[4, 5]).unwrap();
    assert_eq!(read_shard(&path, None).unwrap().tokens(), &[4, 5]);
}

#[test]
fn bundled_shards_are_valid() {
    let val = read_shard(&bundled("mini_sp1024/fineweb_val_000000.bin"), Some(1024)).unwrap();
    assert_eq!(val.len(), 628_457);
    assert_eq!(val.tokens()[0], 1, "documents start with BOS");
    let train = read_shard(&bundled("mini_sp1024/fineweb_train_000000.bin"), Some(1024)).unwrap();
    assert_eq!(train.len(), 410_644);
}

#[test]
fn wrong_magic_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = read_err(dir.path(), "magic.bin", &raw_shard(12345, 1, 2, &[1, 2]));
    assert!(matches!(err, DataError::BadMagic { found: 12345, .. }), "{err:?}");
    assert_message(&err, &path, &["wrong magic", "12345", "20240520"]);
}

#[test]
fn wrong_version_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = read_err(dir.path(), "version.bin", &raw_shard(20240520, 2, 2, &[1, 2]));
    assert!(matches!(err, DataError::BadVersion { found: 2, .. }), "{err:?}");
    assert_message(&err, &path, &["version", "2", "expected 1"]);
}

#[test]
fn negative_count_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = read_err(dir.path(), "neg.bin", &raw_shard(20240520, 1, -5, &[1, 2]));
    assert!(matches!(err, DataError::BadTokenCount { found: -5, .. }), "{err:?}");
    assert_message(&err, &path, &["token count", "-5"]);
}

#[test]
fn truncated_header_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let full = raw_shard(20240520, 1, 2, &[1, 2]);
    for len in [0usize, 3, 12, 1023] {
        let (path, err) = read_err(dir.path(), &format!("short{len}.bin"), &full[..len]);
        assert!(matches!(err, DataError::HeaderTruncated { .. }), "{err:?}");
        assert_message(&err, &path, &["truncated", &format!("{len} bytes"), "1024"]);
    }
}

#[test]
fn truncated_tokens_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = raw_shard(20240520, 1, 10, &[7; 10]);
    bytes.truncate(1024 + 2 * 10 - 3);
    let (path, err) = read_err(dir.path(), "cut.bin", &bytes);
    assert!(matches!(err, DataError::SizeMismatch { tokens: 10, expected: 1044, actual: 1041, .. }), "{err:?}");
    assert_message(&err, &path, &["truncated", "10 tokens", "1044", "1041"]);
}

#[test]
fn trailing_bytes_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = raw_shard(20240520, 1, 2, &[7, 8]);
    bytes.push(0);
    let (path, err) = read_err(dir.path(), "long.bin", &bytes);
    assert!(matches!(err, DataError::SizeMismatch { .. }), "{err:?}");
    assert_message(&err, &path, &["trailing bytes", "1028", "1029"]);
}

#[test]
fn empty_shard_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (path, err) = read_err(dir.path(), "empty.bin", &raw_shard(20240520, 1, 0, &[]));
    assert!(matches!(err, DataError::EmptyShard { .. }), "{err:?}");
    assert_message(&err, &path, &["empty", "0 tokens"]);
}

#[test]
fn token_out_of_vocabulary_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut tokens = vec![5u16; 10_000];
    tokens[9_001] = 1024;
    tokens[9_500] = 60_000;
    let (path, err) = read_err(dir.path(), "oov.bin", &raw_shard(20240520, 1, 10_000, &tokens));
    assert!(matches!(err, DataError::TokenOutOfRange { index: 9_001, token: 1024, vocab_size: 1024, .. }), "{err:?}");
    assert_message(&err, &path, &["out of range", "9001", "1024"]);
    // Without a vocabulary the same file reads fine.
    assert_eq!(read_shard(&path, None).unwrap().len(), 10_000);
}

#[test]
fn missing_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.bin");
    let err = read_shard(&path, None).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_message(&err, &path, &["cannot open"]);
}

#[test]
fn list_shards_sorts_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in [
        "fineweb_train_000002.bin",
        "fineweb_train_000000.bin",
        "fineweb_train_000010.bin",
        "fineweb_val_000000.bin",
        ".fineweb_train_000003.bin.123-0.tmp",
        "fineweb_train_000004.bin.tmp",
        "other.bin",
    ] {
        std::fs::write(d.join(name), b"x").unwrap();
    }
    let train = list_shards(d, Split::Train).unwrap();
    let names: Vec<_> = train.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["fineweb_train_000000.bin", "fineweb_train_000002.bin", "fineweb_train_000010.bin"]);
    assert_eq!(train[0], d.join("fineweb_train_000000.bin"));
    assert_eq!(list_shards(d, Split::Val).unwrap().len(), 1);
}

#[test]
fn list_shards_without_matches_names_dir_and_pattern() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fineweb_train_000000.bin"), b"x").unwrap();
    let err = list_shards(dir.path(), Split::Val).unwrap_err();
    assert!(matches!(err, DataError::NoShards { .. }), "{err:?}");
    assert_message(&err, dir.path(), &["no shards", "fineweb_val_*.bin"]);

    let missing = dir.path().join("missing");
    let err = list_shards(&missing, Split::Train).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_message(&err, &missing, &["cannot list directory"]);
}

#[test]
fn shard_names_follow_the_challenge() {
    assert_eq!(Split::Train.shard_name(3), "fineweb_train_000003.bin");
    assert_eq!(Split::Val.shard_name(0), "fineweb_val_000000.bin");
    assert_eq!(Split::Val.pattern(), "fineweb_val_*.bin");
}

#[test]
fn atomic_writes_leave_no_temporary_and_sync_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.json");
    wgolf::fsutil::write_atomic(&path, b"one").unwrap();
    wgolf::fsutil::write_atomic(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["file.json"]);
    wgolf::fsutil::sync_dir(dir.path()).unwrap();
    assert_eq!(wgolf::fsutil::parent_dir(Path::new("bare.txt")), Path::new("."));
    assert_eq!(wgolf::fsutil::parent_dir(&path), dir.path());
    // A directory that does not exist is an error, not a silent success.
    #[cfg(unix)]
    assert!(wgolf::fsutil::sync_dir(&dir.path().join("missing")).is_err());
}

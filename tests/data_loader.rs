//! Loader windows against hand-computed expectations: the training stream for several world
//! sizes and gradient-accumulation counts, checkpoint positions, and the validation split.

use std::path::Path;

use wgolf::data::{write_shard, DataError, Split, StreamPosition, TrainStream, ValSet};

const VOCAB: usize = 1 << 16;

/// Writes `shards` as the train (or val) split of a fresh directory.
fn make_dir(split: Split, shards: &[Vec<u16>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, tokens) in shards.iter().enumerate() {
        write_shard(&dir.path().join(split.shard_name(i)), tokens).unwrap();
    }
    dir
}

fn u32s(v: &[u16]) -> Vec<u32> {
    v.iter().map(|&t| t as u32).collect()
}

#[test]
fn tiny_stream_by_hand() {
    // Shards [10..=14] and [20, 21, 22]; local_tokens 2, seq_len 1, two ranks: each step takes
    // 2 x 3 = 6 tokens.
    let dir = make_dir(Split::Train, &[vec![10, 11, 12, 13, 14], vec![20, 21, 22]]);
    let mut s0 = TrainStream::open(dir.path(), VOCAB).unwrap();
    let mut s1 = TrainStream::open(dir.path(), VOCAB).unwrap();

    // Step 1 takes 10 11 12 13 14 20.
    assert_eq!(s0.next_batch(2, 1, 2, 0).unwrap(), (vec![10, 11], vec![11, 12]));
    assert_eq!(s1.next_batch(2, 1, 2, 1).unwrap(), (vec![13, 14], vec![14, 20]));
    // Step 2 takes 21 22, wraps, then 10 11 12 13.
    assert_eq!(s0.next_batch(2, 1, 2, 0).unwrap(), (vec![21, 22], vec![22, 10]));
    assert_eq!(s1.next_batch(2, 1, 2, 1).unwrap(), (vec![11, 12], vec![12, 13]));
    // Step 3 takes 14 20 21 22 10 11.
    assert_eq!(s0.next_batch(2, 1, 2, 0).unwrap(), (vec![14, 20], vec![20, 21]));
    assert_eq!(s1.next_batch(2, 1, 2, 1).unwrap(), (vec![22, 10], vec![10, 11]));
    assert_eq!(s0.position(), s1.position());
    assert_eq!(s0.position().tokens_consumed, 18);
}

#[test]
fn rows_are_row_major_sequences() {
    let tokens: Vec<u16> = (100..200).collect();
    let dir = make_dir(Split::Train, &[tokens]);
    let mut s = TrainStream::open(dir.path(), VOCAB).unwrap();
    // local 12 = 3 rows of 4; rank 1 of 2 takes span [13, 26).
    let (x, y) = s.next_batch(12, 4, 2, 1).unwrap();
    assert_eq!(x, (113..125).collect::<Vec<u32>>());
    assert_eq!(y, (114..126).collect::<Vec<u32>>());
    // Row r of the (3, 4) matrix is x[4r..4r+4]; targets are one token on.
    assert_eq!(&x[4..8], &[117, 118, 119, 120]);
    assert_eq!(&y[4..8], &[118, 119, 120, 121]);
}

/// The expected windows: with `w x a = 8` GPUs-times-micro-batches and a global batch of
/// `8 x local` tokens, span `k` (global micro-batch index `m x w + r` within a step) is
/// stream tokens `[k (local + 1), (k + 1)(local + 1))`, counting on from previous steps.
#[test]
fn same_windows_for_any_world_size_and_accumulation() {
    // Three shards of awkward lengths with distinct tokens, so every token is identifiable.
    let shards: Vec<Vec<u16>> = vec![(0..1000).collect(), (1000..1037).collect(), (2000..2555).collect()];
    let stream: Vec<u16> = shards.concat();
    let dir = make_dir(Split::Train, &shards);

    let seq_len = 16;
    let global_tokens = 8 * 64; // 8 micro-spans of 64 tokens per step
    let steps = 9; // 9 x 8 x 65 = 4680 tokens: wraps the 1592-token stream twice
    for (world, accum) in [(1, 8), (2, 4), (4, 2), (8, 1)] {
        let local = global_tokens / (world * accum);
        assert_eq!(local, 64);
        let mut ranks: Vec<TrainStream> = (0..world).map(|_| TrainStream::open(dir.path(), VOCAB).unwrap()).collect();
        for step in 0..steps {
            for m in 0..accum {
                for (r, s) in ranks.iter_mut().enumerate() {
                    let (x, y) = s.next_batch(local, seq_len, world, r).unwrap();
                    let k = step * 8 + m * world + r;
                    let span: Vec<u16> = (0..=local).map(|i| stream[(k * (local + 1) + i) % stream.len()]).collect();
                    assert_eq!(x, u32s(&span[..local]), "world {world} accum {accum} step {step} micro {m} rank {r}");
                    assert_eq!(y, u32s(&span[1..]), "world {world} accum {accum} step {step} micro {m} rank {r}");
                }
            }
        }
        let consumed = (steps * 8 * (local + 1)) as u64;
        for s in &ranks {
            assert_eq!(s.position().tokens_consumed, consumed);
        }
    }
}

#[test]
fn shard_is_advanced_lazily_like_the_reference() {
    // Taking exactly to the end of a shard leaves the stream there (offset == length); the
    // next shard is opened only when more tokens are needed.
    let dir = make_dir(Split::Train, &[vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9]]);
    let mut s = TrainStream::open(dir.path(), VOCAB).unwrap();
    s.next_batch(2, 2, 2, 0).unwrap(); // takes 6 tokens
    let p = s.position();
    assert_eq!((p.shard_index, p.offset), (0, 6));
    assert_eq!(p.shard_name, "fineweb_train_000000.bin");
    let (x, _) = s.next_batch(2, 2, 1, 0).unwrap();
    assert_eq!(x, vec![7, 8]);
    let p = s.position();
    assert_eq!((p.shard_index, p.offset), (1, 3));
}

#[test]
fn position_round_trips_through_seek() {
    let shards: Vec<Vec<u16>> = vec![(0..300).collect(), (300..450).collect()];
    let dir = make_dir(Split::Train, &shards);
    let mut a = TrainStream::open(dir.path(), VOCAB).unwrap();
    for _ in 0..7 {
        a.next_batch(32, 8, 2, 1).unwrap();
    }
    let saved = serde_json::to_string(&a.position()).unwrap();
    let pos: StreamPosition = serde_json::from_str(&saved).unwrap();

    let mut b = TrainStream::open(dir.path(), VOCAB).unwrap();
    b.seek(&pos).unwrap();
    assert_eq!(b.position(), a.position());
    for _ in 0..10 {
        assert_eq!(a.next_batch(32, 8, 2, 0).unwrap(), b.next_batch(32, 8, 2, 0).unwrap());
    }
}

#[test]
fn seek_rejects_positions_that_do_not_fit() {
    let dir = make_dir(Split::Train, &[vec![1; 10], vec![2; 5]]);
    let mut s = TrainStream::open(dir.path(), VOCAB).unwrap();
    let good = StreamPosition {
        shard_index: 1,
        shard_name: "fineweb_train_000001.bin".into(),
        offset: 5,
        tokens_consumed: 15,
    };
    s.seek(&good).unwrap();

    let past = StreamPosition { offset: 6, ..good.clone() };
    let msg = s.seek(&past).unwrap_err().to_string();
    assert!(msg.contains("fineweb_train_000001.bin") && msg.contains("past the end"), "{msg}");

    let renamed = StreamPosition { shard_name: "fineweb_train_000007.bin".into(), ..good.clone() };
    let msg = s.seek(&renamed).unwrap_err().to_string();
    assert!(msg.contains(&dir.path().display().to_string()) && msg.contains("fineweb_train_000007.bin"), "{msg}");

    let beyond = StreamPosition { shard_index: 2, ..good };
    let msg = s.seek(&beyond).unwrap_err().to_string();
    assert!(msg.contains("only 2 train shards"), "{msg}");
}

#[test]
fn bad_batch_requests_are_errors() {
    let dir = make_dir(Split::Train, &[vec![1; 100]]);
    let mut s = TrainStream::open(dir.path(), VOCAB).unwrap();
    let d = dir.path().display().to_string();
    for (local, seq, world, rank, words) in [
        (10, 4, 1, 0, "not a multiple"),
        (8, 4, 2, 2, "outside a world"),
        (8, 4, 0, 0, "outside a world"),
        (0, 4, 1, 0, "must be positive"),
        (8, 0, 1, 0, "must be positive"),
    ] {
        let err = s.next_batch(local, seq, world, rank).unwrap_err();
        assert!(matches!(err, DataError::BadRequest { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&d) && msg.contains(words), "{msg}");
    }
    // Nothing was consumed by the rejected requests.
    assert_eq!(s.position().tokens_consumed, 0);
}

#[test]
fn stream_checks_tokens_against_vocab() {
    let dir = make_dir(Split::Train, &[vec![1, 2, 3], vec![4, 5000, 6]]);
    let mut s = TrainStream::open(dir.path(), 1024).unwrap();
    let err = s.next_batch(4, 4, 1, 0).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("fineweb_train_000001.bin") && msg.contains("5000"), "{msg}");
}

#[test]
fn open_without_train_shards_fails() {
    let dir = make_dir(Split::Val, &[vec![1, 2, 3]]);
    let msg = TrainStream::open(dir.path(), VOCAB).unwrap_err().to_string();
    assert!(msg.contains("fineweb_train_*.bin"), "{msg}");
}

#[test]
fn val_set_concatenates_truncates_and_splits() {
    // 23 + 20 = 43 tokens; seq_len 5 -> (43 - 1) / 5 = 8 sequences, 41 tokens kept.
    let shards: Vec<Vec<u16>> = vec![(0..23).collect(), (100..120).collect()];
    let all: Vec<u16> = shards.concat();
    let dir = make_dir(Split::Val, &shards);
    // A train shard in the same directory is ignored.
    write_shard(&dir.path().join("fineweb_train_000000.bin"), &[9; 50]).unwrap();

    let val = ValSet::open(dir.path(), VOCAB, 5).unwrap();
    assert_eq!(val.num_seqs(), 8);
    assert_eq!(val.seq_len(), 5);
    assert_eq!(val.num_targets(), 40);
    assert_eq!(val.tokens(), &all[..41]);

    let (x, y) = val.sequence(0);
    assert_eq!(x, vec![0, 1, 2, 3, 4]);
    assert_eq!(y, vec![1, 2, 3, 4, 5]);
    let (x, y) = val.sequence(4); // tokens 20..26 straddle the two shards
    assert_eq!(x, vec![20, 21, 22, 100, 101]);
    assert_eq!(y, vec![21, 22, 100, 101, 102]);
    let (x, y) = val.sequence(7);
    assert_eq!(x, u32s(&all[35..40]));
    assert_eq!(y, u32s(&all[36..41]));

    let (bx, by) = val.batch(2..5);
    assert_eq!(bx, u32s(&all[10..25]));
    assert_eq!(by, u32s(&all[11..26]));

    // Ranks split the 8 sequences contiguously: floor(8 r / w) .. floor(8 (r + 1) / w).
    assert_eq!(val.rank_range(1, 0), 0..8);
    assert_eq!((0..3).map(|r| val.rank_range(3, r)).collect::<Vec<_>>(), vec![0..2, 2..5, 5..8]);
    assert_eq!((0..5).map(|r| val.rank_range(5, r)).collect::<Vec<_>>(), vec![0..1, 1..3, 3..4, 4..6, 6..8]);
    for w in 1..=12 {
        let mut next = 0;
        for r in 0..w {
            let range = val.rank_range(w, r);
            assert_eq!(range.start, next);
            next = range.end;
        }
        assert_eq!(next, 8);
    }
    assert_eq!(val.rank_range(3, 3), 0..0);
}

#[test]
fn val_set_too_short_is_an_error() {
    let dir = make_dir(Split::Val, &[vec![1, 2, 3, 4]]);
    let err = ValSet::open(dir.path(), VOCAB, 4).unwrap_err();
    assert!(matches!(err, DataError::ValTooShort { tokens: 4, seq_len: 4, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()) && msg.contains("too short"), "{msg}");
    // Exactly seq_len + 1 tokens is one sequence.
    assert_eq!(ValSet::open(dir.path(), VOCAB, 3).unwrap().num_seqs(), 1);
}

#[test]
fn bundled_sample_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mini_sp1024");
    let val = ValSet::open(&dir, 1024, 1024).unwrap();
    // (628,457 - 1) / 1024 = 613 sequences.
    assert_eq!(val.num_seqs(), 613);
    assert_eq!(val.tokens().len(), 613 * 1024 + 1);
    let mut train = TrainStream::open(&dir, 1024).unwrap();
    let (x, y) = train.next_batch(2048, 1024, 1, 0).unwrap();
    assert_eq!(x.len(), 2048);
    assert_eq!(x[0], 1, "the train shard starts with BOS");
    assert_eq!(&x[1..], &y[..2047]);
}

/// Reads a training batch after the shard under the stream was changed: an error naming the
/// shard and saying what changed, never a SIGBUS from reading a truncated map.
fn batch_after(change: impl FnOnce(&Path), words: &str) {
    let tokens: Vec<u16> = (0..200_000u32).map(|i| (i % 1000) as u16).collect();
    let dir = make_dir(Split::Train, &[tokens]);
    let path = dir.path().join(Split::Train.shard_name(0));
    let mut s = TrainStream::open(dir.path(), VOCAB).unwrap();
    s.next_batch(1024, 128, 1, 0).unwrap();
    change(&path);
    let err = s.next_batch(1024, 128, 1, 0).expect_err("a changed shard must be an error");
    assert!(matches!(err, DataError::ShardChanged { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains(words), "{msg}");
}

#[test]
fn shard_truncated_under_the_stream_is_an_error() {
    // Cut to 100 tokens: the stream's next tokens are on pages the truncation removed.
    batch_after(
        |p| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(1024 + 200).unwrap(),
        "is 1224 bytes, but was 401024",
    );
}

#[test]
fn shard_rewritten_in_place_is_an_error() {
    // Same size, new modification time (as an in-place rewrite leaves it).
    batch_after(
        |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
        },
        "was modified",
    );
}

#[test]
fn shard_replaced_or_removed_is_an_error() {
    batch_after(|p| write_shard(p, &[1, 2, 3]).unwrap(), "the file at this path is 1030 bytes");
    batch_after(|p| std::fs::remove_file(p).unwrap(), "cannot be found");
}

#[test]
fn unchanged_shards_pass_the_check() {
    let dir = make_dir(Split::Val, &[vec![1, 2, 3, 4, 5]]);
    let shard = wgolf::data::read_shard(&dir.path().join(Split::Val.shard_name(0)), None).unwrap();
    assert_eq!(shard.checked_tokens().unwrap(), &[1, 2, 3, 4, 5]);
    assert_eq!(ValSet::open(dir.path(), VOCAB, 2).unwrap().num_seqs(), 2);
}

//! The sp1024 tokenizer: model loading, parity with SentencePiece on the 200 sample
//! documents, the bpb byte tables and the accumulator.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wgolf::data::{read_shard, BpbAccumulator, ByteLuts, DataError, PieceType, Tokenizer};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

fn sp1024() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::load(&data("tokenizers/fineweb_1024_bpe.model")).unwrap())
}

fn sample_docs() -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        text: String,
    }
    std::fs::read_to_string(data("fineweb-samples/pg_verify_docs_200.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Doc>(l).unwrap().text)
        .collect()
}

#[test]
fn model_layout() {
    let t = sp1024();
    assert_eq!(t.vocab_size(), 1024);
    assert_eq!(t.normalizer_name(), "nmt_nfkc");
    assert_eq!(t.pad_id(), Some(0));
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.unk_id(), 3);
    let kinds: Vec<PieceType> = t.pieces().iter().map(|p| p.kind).collect();
    assert!(kinds[0..3].iter().all(|&k| k == PieceType::Control));
    assert_eq!(kinds[3], PieceType::Unknown);
    assert!(kinds[4..260].iter().all(|&k| k == PieceType::Byte));
    assert!(kinds[260..].iter().all(|&k| k == PieceType::Normal));
    assert_eq!(t.piece(1).unwrap().piece, "<s>");
    assert_eq!(t.piece(4).unwrap().piece, "<0x00>");
    assert_eq!(t.piece(259).unwrap().piece, "<0xFF>");
    assert_eq!(t.piece(939).unwrap().piece, "\u{2581}");
    let with_space = t.pieces()[260..].iter().filter(|p| p.piece.starts_with('\u{2581}')).count();
    assert_eq!(with_space, 325);
    // BPE scores: minus the merge rank, so they decrease along the vocabulary.
    assert!(t.piece(260).unwrap().score > t.piece(600).unwrap().score);
}

#[test]
fn encodes_like_sentencepiece() {
    // Ids from the reference SentencePiece (python `sentencepiece` 0.2.3) for this model.
    let t = sp1024();
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[981, 465, 943, 458, 401]),
        ("  leading and  double  spaces  ", &[294, 335, 280, 290, 293, 273, 890, 592, 331, 276]),
        ("tab\tand\nnewline", &[941, 393, 290, 569, 882]),
        ("a\u{0}b", &[942, 4, 959]),
        ("\u{ff76}\u{ff9e}", &[231, 134, 176]), // halfwidth KA + voiced mark -> one char
        ("e\u{0301}", &[199, 173]),             // e + combining acute -> é, byte fallback
        ("\u{1F600}", &[244, 163, 156, 132]),   // emoji: four byte pieces
        ("\u{fb01} \u{2460}", &[956, 944, 939, 972]),
        ("2026-03-18", &[976, 970, 976, 1003, 968, 970, 994, 968, 972, 1002]),
        ("", &[]),
        ("   \t\n ", &[]),
    ];
    for (text, ids) in cases {
        assert_eq!(&t.encode(text), ids, "text {text:?}");
    }
    assert_eq!(t.normalize("  a \t b  "), "a\u{2581}b");
}

#[test]
fn sample_docs_reproduce_the_reference_shard() {
    let t = sp1024();
    let reference = read_shard(&data("mini_sp1024/fineweb_val_000000.bin"), Some(1024)).unwrap();
    let mut ours = Vec::with_capacity(reference.len());
    let mut scratch = wgolf::data::EncodeScratch::default();
    let docs = sample_docs();
    assert_eq!(docs.len(), 200);
    for doc in &docs {
        ours.push(1u32);
        t.encode_with(doc, &mut scratch, &mut ours);
    }
    let reference: Vec<u32> = reference.tokens().iter().map(|&x| x as u32).collect();
    assert_eq!(ours.len(), reference.len());
    if let Some(i) = ours.iter().zip(&reference).position(|(a, b)| a != b) {
        panic!(
            "first difference at token {i}: ours {:?}, reference {:?}",
            &ours[i.saturating_sub(3)..(i + 5).min(ours.len())],
            &reference[i.saturating_sub(3)..(i + 5).min(reference.len())]
        );
    }
    // A fresh scratch (empty word cache) and the plain API agree.
    assert_eq!(t.encode(&docs[17]), {
        let mut v = Vec::new();
        t.encode_with(&docs[17], &mut scratch, &mut v);
        v
    });
}

#[test]
fn byte_tables_follow_the_spec() {
    let t = sp1024();
    let luts = ByteLuts::from_tokenizer(t, 1030);
    assert_eq!(luts.len(), 1030);
    for id in [0u32, 1, 2, 3, 1024, 1029] {
        assert!(luts.is_boundary()[id as usize], "id {id}");
        assert_eq!(luts.base_bytes()[id as usize], 0);
    }
    for id in 4u32..260 {
        assert!(!luts.is_boundary()[id as usize]);
        assert_eq!(luts.base_bytes()[id as usize], 1);
        assert!(!luts.has_leading_space()[id as usize]);
    }
    // The lone `▁`: 0 base bytes, plus the space unless after a boundary.
    assert_eq!(luts.base_bytes()[939], 0);
    assert!(luts.has_leading_space()[939]);
    assert_eq!(luts.target_bytes(100, 939), 1);
    assert_eq!(luts.target_bytes(1, 939), 0);
    // Every normal piece: base = UTF-8 length without the leading `▁`.
    for (id, p) in t.pieces().iter().enumerate().skip(260) {
        let stripped = p.piece.strip_prefix('\u{2581}');
        assert_eq!(luts.has_leading_space()[id], stripped.is_some());
        assert_eq!(luts.base_bytes()[id] as usize, stripped.unwrap_or(&p.piece).len());
    }
    // Out-of-range ids count as boundaries with no bytes.
    assert_eq!(luts.target_bytes(5000, 5000), 0);
}

#[test]
fn sample_val_shard_has_1_489_418_bytes() {
    let t = sp1024();
    let luts = ByteLuts::from_tokenizer(t, 1024);
    let shard = read_shard(&data("mini_sp1024/fineweb_val_000000.bin"), Some(1024)).unwrap();
    let tokens: Vec<u32> = shard.tokens().iter().map(|&x| x as u32).collect();
    let bytes = luts.batch_bytes(&tokens[..tokens.len() - 1], &tokens[1..]);
    assert_eq!(bytes, 1_489_418);
    // ... which is the UTF-8 length of the normalized text, spaces counted as one byte.
    let normalized: usize = sample_docs().iter().map(|d| t.normalize(d).replace('\u{2581}', " ").len()).sum();
    assert_eq!(normalized, 1_489_418);
}

#[test]
fn bpb_accumulator() {
    let t = sp1024();
    let luts = ByteLuts::from_tokenizer(t, 1024);
    let ids: Vec<u32> = std::iter::once(1).chain(t.encode("Hello world")).collect();
    let (x, y) = (&ids[..ids.len() - 1], &ids[1..]);
    let bytes = luts.batch_bytes(x, y);
    assert_eq!(bytes, 11);

    let mut per_token = BpbAccumulator::new();
    for (&p, &q) in x.iter().zip(y) {
        per_token.add(&luts, p, q, 2.0);
    }
    assert_eq!(per_token.tokens(), 5);
    assert_eq!(per_token.bytes(), 11);
    assert!((per_token.val_loss() - 2.0).abs() < 1e-12);
    let expected_bpb = 2.0 / std::f64::consts::LN_2 * 5.0 / 11.0;
    assert!((per_token.val_bpb() - expected_bpb).abs() < 1e-12);

    let mut batch = BpbAccumulator::new();
    batch.add_batch(&luts, x, y, &[2.0; 5]);
    assert_eq!(batch, per_token);
    let mut mean = BpbAccumulator::new();
    mean.add_batch_mean(&luts, x, y, 2.0);
    assert_eq!(mean, per_token);

    // Merging two ranks' halves equals accumulating everything on one.
    let (mut a, mut b) = (BpbAccumulator::new(), BpbAccumulator::new());
    a.add_batch(&luts, &x[..2], &y[..2], &[1.0, 3.0]);
    b.add_batch(&luts, &x[2..], &y[2..], &[2.0, 2.0, 2.0]);
    a.merge(&b);
    assert_eq!(a, per_token);

    assert!(BpbAccumulator::new().val_bpb().is_nan());
}

#[test]
fn bad_model_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.model");
    std::fs::write(&garbage, [0xffu8; 64]).unwrap();
    let err = Tokenizer::load(&garbage).unwrap_err();
    assert!(matches!(err, DataError::BadModel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("garbage.model") && msg.contains("bad tokenizer model"), "{msg}");

    let truncated = dir.path().join("truncated.model");
    let bytes = std::fs::read(data("tokenizers/fineweb_1024_bpe.model")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let msg = Tokenizer::load(&truncated).unwrap_err().to_string();
    assert!(msg.contains("truncated.model") && msg.contains("past the end"), "{msg}");

    let missing = dir.path().join("missing.model");
    let msg = Tokenizer::load(&missing).unwrap_err().to_string();
    assert!(msg.contains("missing.model") && msg.contains("cannot read"), "{msg}");
}

#[test]
fn decode_inverts_encode_for_plain_text() {
    let t = sp1024();
    let text = "The quick brown fox, caf\u{e9} \u{1F600} 42.";
    assert_eq!(t.decode(&t.encode(text)), text);
    assert_eq!(t.decode(&[1, 981, 465, 943, 458, 401, 2]), "Hello world");
}

/// Tokenizer throughput on the 200 sample documents, single thread. Ignored by default; run
/// `cargo test --release --test data_tokenizer -- --ignored --nocapture` for the number.
/// "cold" is the first pass with an empty word cache, "warm" a later pass with a filled one.
#[test]
#[ignore = "a measurement, not a check; run in release"]
fn tokenizer_throughput() {
    let t = sp1024();
    let docs = sample_docs();
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let mut scratch = wgolf::data::EncodeScratch::default();
    let mut ids = Vec::new();
    for pass in 0..5 {
        let start = std::time::Instant::now();
        for d in &docs {
            ids.clear();
            t.encode_with(d, &mut scratch, &mut ids);
        }
        let secs = start.elapsed().as_secs_f64();
        let label = if pass == 0 { "cold" } else { "warm" };
        println!("pass {pass} ({label}): {:.1} MB/s ({bytes} bytes in {:.3} s)", bytes as f64 / 1e6 / secs, secs);
    }
}

//! The SentencePiece BPE tokenizer (the challenge's `fineweb_1024_bpe.model`), in Rust.
//!
//! [`Tokenizer::load`] decodes the `.model` protobuf: the pieces with their scores and types,
//! the trainer's special ids, and the normalizer spec with its precompiled character map.
//! [`Tokenizer::encode`] then reproduces SentencePiece's `encode(text, out_type=int)` step for
//! step: normalization by the model's own character map (see `normalizer`), the BPE merge
//! loop (highest score first, leftmost on ties, stale pairs skipped), and byte fallback for
//! characters that are not pieces (`<0xNN>` per UTF-8 byte). Only BPE models are supported;
//! others are rejected on load.
//!
//! Speed: when no piece has a `▁` after its first character (true of sp1024), no merge can
//! cross the start of a `▁`-word, so each word is segmented on its own and the result is
//! cached in the caller's [`EncodeScratch`]; the ids are the same as for the whole text.

mod normalizer;
mod proto;

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use self::normalizer::{utf8_len, Normalizer, SPACE_SYMBOL};
use self::proto::Reader;
use super::DataError;

/// The kind of a vocabulary entry (SentencePiece's `SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PieceType {
    /// An ordinary piece of text, produced by merges.
    Normal,
    /// The unknown token (`<unk>`).
    Unknown,
    /// A control token such as `<s>`, `</s>` or `<pad>`: never produced from text.
    Control,
    /// A user-defined symbol, always kept as one piece.
    UserDefined,
    /// A piece that exists but is never emitted (split back into its parts).
    Unused,
    /// A byte-fallback piece `<0xNN>` standing for one raw byte.
    Byte,
}

impl PieceType {
    fn from_proto(v: u64) -> Option<Self> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone)]
pub struct Piece {
    /// The piece's text, with spaces written as `▁` (U+2581); `<0xNN>` for byte pieces.
    pub piece: String,
    /// Its score; for BPE, minus the merge rank (higher merges first).
    pub score: f32,
    /// Its kind.
    pub kind: PieceType,
}

/// A fast hasher for the tokenizer's small-key maps (FxHash's multiply-rotate), so that the
/// merge loop does not pay for SipHash. Keys come from the model and the text being encoded;
/// hash flooding is not a concern for a local tokenizer.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A SentencePiece BPE model, ready to encode text exactly as SentencePiece does.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    pieces: Vec<Piece>,
    /// Text -> id for the pieces BPE may form (normal, user-defined and unused ones).
    piece_ids: FxMap<Box<[u8]>, u32>,
    /// Text -> id for the reserved pieces (control, unknown, byte).
    reserved_ids: FxMap<Box<[u8]>, u32>,
    /// (left id, right id) -> merged id, for every split of a mergeable piece into two
    /// mergeable pieces: the merge loop's fast path.
    pair_ids: FxMap<u64, u32>,
    /// Per id, the id SentencePiece reports for that piece's text (a reserved piece of the
    /// same text takes precedence).
    emit_id: Vec<u32>,
    /// Id of each `<0xNN>` byte piece.
    byte_ids: [Option<u32>; 256],
    unk_id: u32,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
    byte_fallback: bool,
    has_unused: bool,
    /// Whether `▁`-delimited words can be encoded independently (and cached): true when no
    /// mergeable piece has a `▁` after its first character, so no merge crosses a word start.
    word_split: bool,
    /// Identifies this model (and its clones) to the word caches in [`EncodeScratch`].
    uid: u64,
    normalizer: Normalizer,
    normalizer_name: String,
}

/// One symbol of the merge loop: a span of the normalized text.
#[derive(Clone, Copy)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
    /// The id in `piece_ids` of the span's text, if it is a mergeable piece.
    id: Option<u32>,
    /// User-defined symbols never merge.
    freeze: bool,
}

/// A candidate merge in the agenda.
#[derive(Clone, Copy, PartialEq)]
struct Candidate {
    score: f32,
    left: u32,
    right: u32,
    /// Byte length of the merged span, to detect stale candidates.
    size: u32,
    merged: u32,
}

impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Longest word (in bytes) kept in the word cache.
const MAX_CACHED_WORD: usize = 64;
/// Words cached per [`EncodeScratch`] before the cache is emptied and refilled.
const MAX_CACHED_WORDS: usize = 1 << 18;

/// Reusable buffers for [`Tokenizer::encode_with`], including a cache of encoded words; one
/// per thread avoids allocating per document and re-encoding frequent words.
#[derive(Default)]
pub struct EncodeScratch {
    normalized: Vec<u8>,
    symbols: Vec<Symbol>,
    agenda: BinaryHeap<Candidate>,
    /// `uid` of the tokenizer the cache belongs to.
    cache_owner: u64,
    cache: FxMap<Box<[u8]>, Box<[u32]>>,
}

impl Tokenizer {
    /// Loads a SentencePiece `.model` file. Fails with [`DataError::BadModel`] naming the file
    /// when it is not a decodable model, is not BPE, or lacks an unknown piece.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read", e))?;
        Self::from_file_bytes(path, &bytes)
    }

    /// [`Tokenizer::load`] of a file's bytes already in memory (`path` names it in errors).
    pub fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Self, DataError> {
        Self::from_bytes(bytes).map_err(|problem| DataError::BadModel { path: path.to_path_buf(), problem })
    }

    /// Decodes a model from the bytes of a `.model` file; errors are plain descriptions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut trainer: Option<&[u8]> = None;
        let mut normalizer_spec: Option<&[u8]> = None;
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.next_field()? {
            match field {
                1 => pieces.push(parse_piece(value.as_bytes("ModelProto.pieces")?)?),
                2 => trainer = Some(value.as_bytes("ModelProto.trainer_spec")?),
                3 => normalizer_spec = Some(value.as_bytes("ModelProto.normalizer_spec")?),
                _ => {}
            }
        }
        if pieces.is_empty() {
            return Err("no pieces (is this a SentencePiece .model file?)".into());
        }
        if pieces.len() > u32::MAX as usize / 2 {
            return Err(format!("{} pieces is too many", pieces.len()));
        }

        let TrainerSpec { byte_fallback, bos, eos, pad } = TrainerSpec::parse(trainer)?;
        let NormalizerSpec { name, charsmap, dummy, extra_ws, escape_ws } = NormalizerSpec::parse(normalizer_spec)?;
        let PieceMaps { piece_ids, reserved_ids, byte_ids, unk_id, user_defined, has_unused } =
            PieceMaps::build(&pieces, byte_fallback)?;
        let special = |id: i32| {
            (id >= 0 && (id as usize) < pieces.len() && pieces[id as usize].kind == PieceType::Control)
                .then_some(id as u32)
        };
        let pair_ids = merge_pairs(&piece_ids);
        let emit_id = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| reserved_ids.get(p.piece.as_bytes()).copied().unwrap_or(i as u32))
            .collect();

        let word_split = byte_fallback
            && !has_unused
            && user_defined.is_empty()
            && escape_ws
            && piece_ids.keys().all(|p| !p[1..].windows(3).any(|w| w == SPACE_SYMBOL.as_bytes()));
        static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let uid = NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);

        let normalizer = Normalizer::new(charsmap, user_defined, dummy, extra_ws, escape_ws)?;
        Ok(Tokenizer {
            word_split,
            uid,
            bos_id: special(bos),
            eos_id: special(eos),
            pad_id: special(pad),
            pieces,
            piece_ids,
            reserved_ids,
            pair_ids,
            emit_id,
            byte_ids,
            unk_id,
            byte_fallback,
            has_unused,
            normalizer,
            normalizer_name: name,
        })
    }

    /// Number of pieces (1024 for sp1024).
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// All pieces, indexed by id.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The piece with id `id`, if any.
    pub fn piece(&self, id: u32) -> Option<&Piece> {
        self.pieces.get(id as usize)
    }

    /// The id of the unknown piece.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// The beginning-of-sequence id (`<s>`, 1 for sp1024), prepended to every document.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The end-of-sequence id (`</s>`), if the model has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The padding id (`<pad>`), if the model has one.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// The normalizer's name from the model (`nmt_nfkc` for sp1024).
    pub fn normalizer_name(&self) -> &str {
        &self.normalizer_name
    }

    /// Normalizes `text` as SentencePiece does before segmenting it, with spaces shown as
    /// `▁` (U+2581). Its UTF-8 length, counting each `▁` as one byte, is the byte count
    /// bits-per-byte is measured against.
    pub fn normalize(&self, text: &str) -> String {
        let mut out = Vec::new();
        self.normalizer.normalize_into(text, &mut out);
        String::from_utf8(out).expect("normalization keeps UTF-8 valid")
    }

    /// Encodes `text` to piece ids, identically to SentencePiece's
    /// `encode(text, out_type=int)` (no BOS or EOS added).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_with(text, &mut EncodeScratch::default(), &mut out);
        out
    }

    /// [`Tokenizer::encode`], appending the ids to `out` and reusing `scratch`'s buffers.
    pub fn encode_with(&self, text: &str, scratch: &mut EncodeScratch, out: &mut Vec<u32>) {
        let mut normalized = std::mem::take(&mut scratch.normalized);
        self.normalizer.normalize_into(text, &mut normalized);
        if !self.word_split {
            self.bpe(&normalized, scratch, out);
        } else {
            if scratch.cache_owner != self.uid {
                scratch.cache.clear();
                scratch.cache_owner = self.uid;
            }
            // Words start at each `▁`; merges never cross a word start (see `word_split`),
            // so each word encodes on its own exactly as inside the whole text.
            let space = SPACE_SYMBOL.as_bytes();
            let mut start = 0;
            while start < normalized.len() {
                let mut end = start + 1;
                while end < normalized.len() && !normalized[end..].starts_with(space) {
                    end += 1;
                }
                let word = &normalized[start..end];
                if let Some(ids) = scratch.cache.get(word) {
                    out.extend_from_slice(ids);
                } else {
                    let first = out.len();
                    self.bpe(word, scratch, out);
                    if word.len() <= MAX_CACHED_WORD {
                        if scratch.cache.len() >= MAX_CACHED_WORDS {
                            scratch.cache.clear();
                        }
                        scratch.cache.insert(word.into(), out[first..].into());
                    }
                }
                start = end;
            }
        }
        scratch.normalized = normalized;
    }

    /// SentencePiece's BPE `Model::Encode` plus the processor's byte fallback, over
    /// normalized text.
    fn bpe(&self, text: &[u8], scratch: &mut EncodeScratch, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        if text.len() > i32::MAX as usize {
            // Symbol links are 32-bit (as in SentencePiece): segment a text of more than
            // 2 GiB in two halves, cut at a character boundary.
            let mut cut = text.len() / 2;
            while cut > 0 && (text[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            self.bpe(&text[..cut], scratch, out);
            self.bpe(&text[cut..], scratch, out);
            return;
        }
        let EncodeScratch { symbols, agenda, .. } = scratch;

        // Split into characters (user-defined symbols whole and frozen).
        symbols.clear();
        agenda.clear();
        let mut pos = 0usize;
        while pos < text.len() {
            let rest = &text[pos..];
            let (len, freeze) = match self.normalizer.user_defined_prefix(rest) {
                Some(n) => (n, true),
                None => (utf8_len(rest[0]).min(rest.len()), false),
            };
            let idx = symbols.len() as i32;
            symbols.push(Symbol {
                start: pos as u32,
                len: len as u32,
                prev: idx - 1,
                next: if pos + len < text.len() { idx + 1 } else { -1 },
                id: self.piece_ids.get(&rest[..len]).copied(),
                freeze,
            });
            pos += len;
        }

        // Unused pieces are split back into the parts they were formed from.
        let mut rev_merge: FxMap<Box<[u8]>, (Span, Span)> = FxMap::default();

        for i in 1..symbols.len() {
            self.push_candidate(text, symbols, agenda, &mut rev_merge, i as i32 - 1, i as i32);
        }

        while let Some(top) = agenda.pop() {
            let (l, r) = (top.left as usize, top.right as usize);
            let (ls, rs) = (symbols[l], symbols[r]);
            if ls.len == 0 || rs.len == 0 || ls.len + rs.len != top.size {
                continue;
            }
            symbols[l].len += rs.len;
            symbols[l].id = Some(top.merged);
            symbols[l].next = rs.next;
            if rs.next >= 0 {
                symbols[rs.next as usize].prev = l as i32;
            }
            symbols[r].len = 0;
            let prev = symbols[l].prev;
            self.push_candidate(text, symbols, agenda, &mut rev_merge, prev, l as i32);
            let next = symbols[l].next;
            self.push_candidate(text, symbols, agenda, &mut rev_merge, l as i32, next);
        }

        // Emit, with byte fallback for unknown symbols.
        let mut prev_unk = false;
        let mut i = 0i32;
        while i >= 0 {
            let s = symbols[i as usize];
            let span = (s.start as usize, s.len as usize);
            if self.has_unused && !rev_merge.is_empty() {
                self.resegment(text, span, &rev_merge, out, &mut prev_unk);
            } else {
                self.emit(text, span, s.id, out, &mut prev_unk);
            }
            i = s.next;
        }
    }

    /// SentencePiece's `MaybeAddNewSymbolPair`.
    fn push_candidate(
        &self,
        text: &[u8],
        symbols: &[Symbol],
        agenda: &mut BinaryHeap<Candidate>,
        rev_merge: &mut FxMap<Box<[u8]>, (Span, Span)>,
        left: i32,
        right: i32,
    ) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (&symbols[left as usize], &symbols[right as usize]);
        if l.freeze || r.freeze {
            return;
        }
        let merged = match (l.id, r.id) {
            (Some(a), Some(b)) => self.pair_ids.get(&pair_key(a, b)).copied(),
            // A span that is not itself a piece: look the text up directly.
            _ => {
                let s = l.start as usize;
                self.piece_ids.get(&text[s..s + (l.len + r.len) as usize]).copied()
            }
        };
        let Some(merged) = merged else { return };
        let piece = &self.pieces[merged as usize];
        agenda.push(Candidate {
            score: piece.score,
            left: left as u32,
            right: right as u32,
            size: l.len + r.len,
            merged,
        });
        if piece.kind == PieceType::Unused {
            rev_merge.insert(
                piece.piece.as_bytes().into(),
                ((l.start as usize, l.len as usize), (r.start as usize, r.len as usize)),
            );
        }
    }

    /// SentencePiece's `resegment`: unused pieces are replaced by the pair they came from.
    fn resegment(
        &self,
        text: &[u8],
        span: Span,
        rev_merge: &FxMap<Box<[u8]>, (Span, Span)>,
        out: &mut Vec<u32>,
        prev_unk: &mut bool,
    ) {
        let w = &text[span.0..span.0 + span.1];
        let id = self.piece_ids.get(w).copied();
        if let Some(id) = id {
            if self.pieces[id as usize].kind == PieceType::Unused {
                if let Some(&(a, b)) = rev_merge.get(w) {
                    self.resegment(text, a, rev_merge, out, prev_unk);
                    self.resegment(text, b, rev_merge, out, prev_unk);
                    return;
                }
            }
        }
        self.emit(text, span, id, out, prev_unk);
    }

    /// Appends the id of one final symbol: its piece id, or its bytes' `<0xNN>` ids when it
    /// is unknown and byte fallback is on, or one `<unk>` per run of unknown symbols.
    fn emit(&self, text: &[u8], span: Span, id: Option<u32>, out: &mut Vec<u32>, prev_unk: &mut bool) {
        let w = &text[span.0..span.0 + span.1];
        let id = match id {
            Some(id) => self.emit_id[id as usize],
            None => self.reserved_ids.get(w).copied().unwrap_or(self.unk_id),
        };
        if id != self.unk_id {
            out.push(id);
            *prev_unk = false;
        } else if self.byte_fallback {
            out.extend(w.iter().map(|&b| self.byte_ids[b as usize].unwrap_or(self.unk_id)));
            *prev_unk = false;
        } else {
            if !*prev_unk {
                out.push(id);
            }
            *prev_unk = true;
        }
    }

    /// Turns ids back into text, for display: pieces joined with `▁` shown as spaces, byte
    /// pieces reassembled into UTF-8 (invalid sequences become U+FFFD), control pieces
    /// dropped and `<unk>` shown as ` ⁇ `. Ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(p) = self.pieces.get(id as usize) else {
                continue;
            };
            match p.kind {
                PieceType::Control => {}
                PieceType::Unknown => bytes.extend_from_slice(" \u{2047} ".as_bytes()),
                PieceType::Byte => bytes.push(parse_byte_piece(&p.piece).unwrap_or(b'?')),
                _ => bytes.extend_from_slice(p.piece.replace(SPACE_SYMBOL, " ").as_bytes()),
            }
        }
        let mut s = String::from_utf8_lossy(&bytes).into_owned();
        if self.normalizer.add_dummy_prefix && s.starts_with(' ') {
            s.remove(0);
        }
        s
    }
}

/// A span `(start, byte length)` of the normalized text.
type Span = (usize, usize);

/// What the tokenizer needs of a model's TrainerSpec (BPE is checked here).
struct TrainerSpec {
    byte_fallback: bool,
    bos: i32,
    eos: i32,
    pad: i32,
}

impl TrainerSpec {
    /// The spec's fields, SentencePiece's defaults where a field is absent.
    fn parse(spec: Option<&[u8]>) -> Result<Self, String> {
        let (mut model_type, mut byte_fallback) = (1u64, false);
        let (mut bos, mut eos, mut pad) = (1i32, 2i32, -1i32);
        if let Some(t) = spec {
            let mut r = Reader::new(t);
            while let Some((field, v)) = r.next_field()? {
                match field {
                    3 => model_type = v.as_varint("TrainerSpec.model_type")?,
                    35 => byte_fallback = v.as_bool("TrainerSpec.byte_fallback")?,
                    41 => bos = v.as_i32("TrainerSpec.bos_id")?,
                    42 => eos = v.as_i32("TrainerSpec.eos_id")?,
                    43 => pad = v.as_i32("TrainerSpec.pad_id")?,
                    _ => {}
                }
            }
        }
        if model_type != 2 {
            let name = match model_type {
                1 => "UNIGRAM",
                3 => "WORD",
                4 => "CHAR",
                _ => "unknown",
            };
            return Err(format!("model type is {name} ({model_type}); only BPE (2) is supported"));
        }
        Ok(TrainerSpec { byte_fallback, bos, eos, pad })
    }
}

/// A model's NormalizerSpec.
struct NormalizerSpec<'a> {
    name: String,
    charsmap: &'a [u8],
    dummy: bool,
    extra_ws: bool,
    escape_ws: bool,
}

impl<'a> NormalizerSpec<'a> {
    fn parse(spec: Option<&'a [u8]>) -> Result<Self, String> {
        let (mut name, mut charsmap): (String, &[u8]) = (String::new(), &[]);
        let (mut dummy, mut extra_ws, mut escape_ws) = (true, true, true);
        if let Some(n) = spec {
            let mut r = Reader::new(n);
            while let Some((field, v)) = r.next_field()? {
                match field {
                    1 => name = v.as_str("NormalizerSpec.name")?.to_owned(),
                    2 => charsmap = v.as_bytes("NormalizerSpec.precompiled_charsmap")?,
                    3 => dummy = v.as_bool("NormalizerSpec.add_dummy_prefix")?,
                    4 => extra_ws = v.as_bool("NormalizerSpec.remove_extra_whitespaces")?,
                    5 => escape_ws = v.as_bool("NormalizerSpec.escape_whitespaces")?,
                    _ => {}
                }
            }
        }
        Ok(NormalizerSpec { name, charsmap, dummy, extra_ws, escape_ws })
    }
}

/// The piece lookups, as SentencePiece's ModelInterface builds them.
struct PieceMaps {
    piece_ids: FxMap<Box<[u8]>, u32>,
    reserved_ids: FxMap<Box<[u8]>, u32>,
    byte_ids: [Option<u32>; 256],
    unk_id: u32,
    user_defined: Vec<Vec<u8>>,
    has_unused: bool,
}

impl PieceMaps {
    fn build(pieces: &[Piece], byte_fallback: bool) -> Result<Self, String> {
        let mut piece_ids: FxMap<Box<[u8]>, u32> = FxMap::default();
        let mut reserved_ids: FxMap<Box<[u8]>, u32> = FxMap::default();
        let mut byte_ids = [None; 256];
        let mut unk_id = None;
        let mut user_defined = Vec::new();
        let mut has_unused = false;
        for (i, p) in pieces.iter().enumerate() {
            let id = i as u32;
            if p.piece.is_empty() {
                return Err(format!("piece {id} is empty"));
            }
            let mergeable = matches!(p.kind, PieceType::Normal | PieceType::UserDefined | PieceType::Unused);
            let map = if mergeable { &mut piece_ids } else { &mut reserved_ids };
            if map.insert(p.piece.as_bytes().into(), id).is_some() {
                return Err(format!("piece {:?} is defined twice", p.piece));
            }
            match p.kind {
                PieceType::UserDefined => user_defined.push(p.piece.as_bytes().to_vec()),
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Unused => has_unused = true,
                PieceType::Byte => {
                    if !byte_fallback {
                        return Err("byte pieces present but byte_fallback is off".into());
                    }
                    let b = parse_byte_piece(&p.piece).ok_or_else(|| format!("byte piece {id} is {:?}", p.piece))?;
                    byte_ids[b as usize] = Some(id);
                }
                _ => {}
            }
        }
        // As in SentencePiece, the unknown id is that of the UNKNOWN piece, whatever
        // trainer_spec.unk_id says.
        let unk_id = unk_id.ok_or("no <unk> piece")?;
        Ok(PieceMaps { piece_ids, reserved_ids, byte_ids, unk_id, user_defined, has_unused })
    }
}

/// (left, right) -> merged, over every two-part split of every mergeable piece.
fn merge_pairs(piece_ids: &FxMap<Box<[u8]>, u32>) -> FxMap<u64, u32> {
    let mut pair_ids: FxMap<u64, u32> = FxMap::default();
    for (text, &id) in piece_ids {
        let s = std::str::from_utf8(text).expect("pieces are strings");
        for (cut, _) in s.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (piece_ids.get(&s.as_bytes()[..cut]), piece_ids.get(&s.as_bytes()[cut..])) {
                pair_ids.insert(pair_key(l, r), id);
            }
        }
    }
    pair_ids
}

fn pair_key(l: u32, r: u32) -> u64 {
    ((l as u64) << 32) | r as u64
}

/// Decodes one `ModelProto.SentencePiece` message.
fn parse_piece(msg: &[u8]) -> Result<Piece, String> {
    let mut piece = String::new();
    let mut score = 0.0f32;
    let mut kind = PieceType::Normal;
    let mut r = Reader::new(msg);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => piece = v.as_str("SentencePiece.piece")?.to_owned(),
            2 => score = v.as_f32("SentencePiece.score")?,
            3 => {
                let t = v.as_varint("SentencePiece.type")?;
                kind = PieceType::from_proto(t).ok_or_else(|| format!("piece {piece:?} has unknown type {t}"))?;
            }
            _ => {}
        }
    }
    Ok(Piece { piece, score, kind })
}

/// `<0xNN>` -> NN.
fn parse_byte_piece(s: &str) -> Option<u8> {
    let hex = s.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

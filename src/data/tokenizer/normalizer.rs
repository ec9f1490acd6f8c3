//! SentencePiece's text normalizer, driven by the model's own precompiled character map.
//!
//! The map (`NormalizerSpec.precompiled_charsmap`) is a little-endian u32 byte count, a
//! Darts-clone double-array trie of that many bytes whose keys are UTF-8 input sequences,
//! and a blob of NUL-terminated replacement strings the trie's values point into. At each
//! position the longest key that prefixes the remaining input is replaced; input matching no
//! key is copied one character at a time. On top of that come the spec's whitespace rules:
//! leading, trailing and repeated spaces removed, spaces written as U+2581 `▁`, and an
//! optional `▁` prefix. Because the map holds SentencePiece's multi-character rules (NFKC
//! compositions, the NMT control-character rules), walking it reproduces SentencePiece
//! exactly where a generic Unicode normalizer would not.

/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space.
pub(super) const SPACE_SYMBOL: &str = "\u{2581}";

/// How many trie matches SentencePiece keeps per position (its `kMaxTrieResultsSize`).
const MAX_TRIE_RESULTS: usize = 32;

/// The normalizer of one model.
#[derive(Debug, Clone)]
pub(super) struct Normalizer {
    /// Darts-clone units; empty when the model has no character map (identity).
    trie: Vec<u32>,
    /// NUL-terminated replacement strings.
    replacements: Vec<u8>,
    /// User-defined pieces, matched before the map and kept verbatim.
    user_defined: Vec<Vec<u8>>,
    pub(super) add_dummy_prefix: bool,
    pub(super) remove_extra_whitespaces: bool,
    pub(super) escape_whitespaces: bool,
}

impl Normalizer {
    /// Builds a normalizer from a precompiled character map (empty for none).
    pub(super) fn new(
        charsmap: &[u8],
        user_defined: Vec<Vec<u8>>,
        add_dummy_prefix: bool,
        remove_extra_whitespaces: bool,
        escape_whitespaces: bool,
    ) -> Result<Self, String> {
        let (trie, replacements) = if charsmap.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            if charsmap.len() < 4 {
                return Err("precompiled_charsmap shorter than its 4-byte size prefix".into());
            }
            let trie_len = u32::from_le_bytes(charsmap[..4].try_into().unwrap()) as usize;
            if !trie_len.is_multiple_of(4) || trie_len == 0 || 4 + trie_len > charsmap.len() {
                return Err(format!(
                    "precompiled_charsmap: trie size {trie_len} does not fit the {}-byte map",
                    charsmap.len()
                ));
            }
            let trie =
                charsmap[4..4 + trie_len].chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
            (trie, charsmap[4 + trie_len..].to_vec())
        };
        Ok(Normalizer {
            trie,
            replacements,
            user_defined,
            add_dummy_prefix,
            remove_extra_whitespaces,
            escape_whitespaces,
        })
    }

    /// Darts-clone `commonPrefixSearch`: the longest key (among the first 32 matches) that
    /// prefixes `key`, as `(byte length, value)`.
    fn longest_match(&self, key: &[u8]) -> Option<(usize, usize)> {
        let units = &self.trie;
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let label = |u: u32| u & ((1 << 31) | 0xFF);
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let value = |u: u32| (u & ((1u32 << 31) - 1)) as usize;

        let mut node = offset(*units.first()?);
        let mut found = 0usize;
        let mut best = None;
        for (i, &b) in key.iter().enumerate() {
            node ^= b as usize;
            let Some(&unit) = units.get(node) else {
                break;
            };
            if label(unit) != b as u32 {
                break;
            }
            node ^= offset(unit);
            if has_leaf(unit) {
                if found < MAX_TRIE_RESULTS {
                    let Some(&leaf) = units.get(node) else {
                        break;
                    };
                    best = Some((i + 1, value(leaf)));
                }
                found += 1;
            }
        }
        best
    }

    /// The replacement string starting at `offset` in the blob (up to its NUL).
    fn replacement(&self, offset: usize) -> &[u8] {
        let tail = self.replacements.get(offset..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    /// Normalizes the longest prefix of `input` that forms one unit: returns the normalized
    /// bytes and how many input bytes they replace (SentencePiece's `NormalizePrefix`).
    /// `input` is valid UTF-8 and not empty.
    fn normalize_prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        if let Some(len) = self.user_defined_prefix(input) {
            return (&input[..len], len);
        }
        if let Some((len, value)) = self.longest_match(input) {
            let replacement = self.replacement(value);
            // A valid map's keys are whole characters and its replacements UTF-8; a corrupt
            // one could match part of a character or replace it with invalid bytes. Such a
            // match is ignored, so that the output stays UTF-8 whatever the model holds.
            if input.get(len).is_none_or(|&b| b & 0xC0 != 0x80) && std::str::from_utf8(replacement).is_ok() {
                return (replacement, len);
            }
        }
        let len = utf8_len(input[0]).min(input.len());
        (&input[..len], len)
    }

    /// Length of the longest user-defined piece that prefixes `input`.
    pub(super) fn user_defined_prefix(&self, input: &[u8]) -> Option<usize> {
        self.user_defined.iter().filter(|p| !p.is_empty() && input.starts_with(p)).map(|p| p.len()).max()
    }

    /// Normalizes `text` into `out` (cleared first), exactly as SentencePiece's
    /// `Normalizer::Normalize` does.
    pub(super) fn normalize_into(&self, text: &str, out: &mut Vec<u8>) {
        out.clear();
        let mut input = text.as_bytes();
        let space: &[u8] = if self.escape_whitespaces { SPACE_SYMBOL.as_bytes() } else { b" " };

        // Drop leading units that normalize to exactly one space.
        if self.remove_extra_whitespaces {
            while !input.is_empty() {
                let (s, n) = self.normalize_prefix(input);
                if s != b" " {
                    break;
                }
                input = &input[n..];
            }
        }
        if input.is_empty() {
            return;
        }
        out.reserve(input.len() + input.len() / 2);
        if self.add_dummy_prefix {
            out.extend_from_slice(space);
        }

        let mut prev_space = self.remove_extra_whitespaces;
        while !input.is_empty() {
            let (mut s, n) = self.normalize_prefix(input);
            if prev_space {
                while let [b' ', rest @ ..] = s {
                    s = rest;
                }
            }
            if !s.is_empty() {
                for &b in s {
                    if b == b' ' && self.escape_whitespaces {
                        out.extend_from_slice(space);
                    } else {
                        out.push(b);
                    }
                }
                prev_space = s.last() == Some(&b' ');
            }
            input = &input[n..];
            if !self.remove_extra_whitespaces {
                prev_space = false;
            }
        }

        if self.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
    }
}

/// Byte length of the UTF-8 sequence a lead byte starts (1 for stray continuation bytes).
#[inline]
pub(super) fn utf8_len(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

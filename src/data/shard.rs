//! The challenge's shard file format: reading (memory-mapped, validated), writing (atomic)
//! and listing shards of a split in a directory.
//!
//! A shard is a 1024-byte header of 256 little-endian int32 words — word 0 the magic
//! 20240520, word 1 the version 1, word 2 the token count N, the rest zero — followed by N
//! little-endian uint16 token ids. The file size is exactly 1024 + 2N bytes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::DataError;

/// Header word 0 of every shard.
pub const SHARD_MAGIC: i32 = 20240520;
/// Header word 1: the only format version there is.
pub const SHARD_VERSION: i32 = 1;
/// Number of int32 words in the header.
pub const HEADER_WORDS: usize = 256;
/// Header size in bytes (256 x 4).
pub const HEADER_BYTES: usize = HEADER_WORDS * 4;
/// The largest token count a header can hold (the count is stored as an int32).
pub const MAX_SHARD_TOKENS: usize = i32::MAX as usize;

/// Which split a shard belongs to; decides the file-name pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Split {
    /// `fineweb_train_*.bin`
    Train,
    /// `fineweb_val_*.bin`
    Val,
}

impl Split {
    /// The file-name prefix of this split's shards, e.g. `fineweb_train_`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "fineweb_train_",
            Split::Val => "fineweb_val_",
        }
    }

    /// The glob-style pattern of this split's shard names, for messages.
    pub fn pattern(self) -> String {
        format!("{}*.bin", self.prefix())
    }

    /// The canonical name of shard number `index`: `fineweb_{train,val}_%06d.bin`.
    pub fn shard_name(self, index: usize) -> String {
        format!("{}{:06}.bin", self.prefix(), index)
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
        })
    }
}

/// Where the tokens of an open shard live.
enum Storage {
    /// The file mapped read-only; the tokens start at byte 1024 (2-byte aligned, as mappings
    /// are page-aligned).
    #[cfg(target_endian = "little")]
    Mapped(memmap2::Mmap),
    /// Tokens decoded into memory (big-endian hosts only, where the bytes must be swapped).
    #[cfg(not(target_endian = "little"))]
    Owned(Vec<u16>),
}

/// An open, validated shard. The tokens are memory-mapped, so opening even a 200 MB shard
/// costs one pass over it for the vocabulary check and no copy.
///
/// As with any memory map, the file must not be modified while the shard is open: reading a
/// mapped page that a truncation removed kills the process with SIGBUS. So the shard keeps
/// the file's size and modification time from when it was opened, and
/// [`Shard::checked_tokens`] compares them with the file's (the open handle's and the
/// path's) before handing out the tokens, turning a shard changed under a running job into
/// [`DataError::ShardChanged`] rather than a crash. (A change in the instant between that
/// check and the copy that follows it cannot be caught without giving up the map.)
pub struct Shard {
    path: PathBuf,
    storage: Storage,
    /// The open file, for `fstat` of exactly what is mapped.
    file: File,
    /// The file's size in bytes when it was opened.
    len_at_open: u64,
    /// The file's modification time when it was opened (None where the platform has none).
    modified_at_open: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("path", &self.path).field("tokens", &self.len()).finish()
    }
}

impl Shard {
    /// The token ids, in file order.
    pub fn tokens(&self) -> &[u16] {
        match &self.storage {
            #[cfg(target_endian = "little")]
            Storage::Mapped(map) => bytemuck::cast_slice(&map[HEADER_BYTES..]),
            #[cfg(not(target_endian = "little"))]
            Storage::Owned(v) => v,
        }
    }

    /// Number of tokens in the shard.
    pub fn len(&self) -> usize {
        self.tokens().len()
    }

    /// Whether the shard holds no tokens (never true for a shard from [`read_shard`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file this shard was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the file is still the one that was opened: the same size and
    /// modification time, both through the open handle (what the map reads) and through the
    /// path (a replaced or deleted file). Fails with [`DataError::ShardChanged`] naming the
    /// file and what changed.
    pub fn check_unchanged(&self) -> Result<(), DataError> {
        let changed = |what: String| Err(DataError::ShardChanged { path: self.path.clone(), what });
        let handle = self.file.metadata().map_err(|e| DataError::io(&self.path, "stat shard", e))?;
        let on_disk = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => return changed(format!("the file cannot be found any more ({e})")),
        };
        for (meta, which) in [(&handle, "the open file"), (&on_disk, "the file at this path")] {
            if meta.len() != self.len_at_open {
                return changed(format!("{which} is {} bytes, but was {} when opened", meta.len(), self.len_at_open));
            }
            let modified = meta.modified().ok();
            if modified != self.modified_at_open {
                return changed(format!(
                    "{which} was modified (mtime {:?}, was {:?} when opened)",
                    modified, self.modified_at_open
                ));
            }
        }
        Ok(())
    }

    /// The token ids, after [`Shard::check_unchanged`]: what readers that hold a shard for a
    /// long time (the training stream) use.
    pub fn checked_tokens(&self) -> Result<&[u16], DataError> {
        self.check_unchanged()?;
        Ok(self.tokens())
    }
}

/// Parses and checks a shard header against the file size; returns the token count.
fn check_header(path: &Path, header: &[u8], file_len: u64) -> Result<usize, DataError> {
    if header.len() < HEADER_BYTES {
        return Err(DataError::HeaderTruncated {
            path: path.to_path_buf(),
            len: header.len() as u64,
            header: HEADER_BYTES as u64,
        });
    }
    let word = |i: usize| i32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
    let magic = word(0);
    if magic != SHARD_MAGIC {
        return Err(DataError::BadMagic { path: path.to_path_buf(), found: magic, expected: SHARD_MAGIC });
    }
    let version = word(1);
    if version != SHARD_VERSION {
        return Err(DataError::BadVersion { path: path.to_path_buf(), found: version, expected: SHARD_VERSION });
    }
    let count = word(2);
    if count < 0 {
        return Err(DataError::BadTokenCount { path: path.to_path_buf(), found: count });
    }
    let tokens = count as u64;
    let expected = HEADER_BYTES as u64 + 2 * tokens;
    if file_len != expected {
        return Err(DataError::SizeMismatch { path: path.to_path_buf(), tokens, expected, actual: file_len });
    }
    if tokens == 0 {
        return Err(DataError::EmptyShard { path: path.to_path_buf() });
    }
    Ok(tokens as usize)
}

/// Returns the index and value of the first token `>= vocab_size`, if any.
pub(crate) fn first_out_of_range(tokens: &[u16], vocab_size: usize) -> Option<(usize, u16)> {
    if vocab_size > u16::MAX as usize {
        return None;
    }
    let limit = vocab_size as u16;
    // Check whole chunks with a branch-free max first (fast path), then locate the culprit.
    const CHUNK: usize = 4096;
    for (c, chunk) in tokens.chunks(CHUNK).enumerate() {
        let max = chunk.iter().copied().fold(0u16, u16::max);
        if max >= limit {
            let i = chunk.iter().position(|&t| t >= limit).unwrap();
            return Some((c * CHUNK + i, chunk[i]));
        }
    }
    None
}

/// Opens a shard, memory-maps it and validates it: the magic number, the version, a
/// non-negative token count, the exact file size (1024 + 2 x count bytes), a non-zero token
/// count, and — when `vocab_size` is given — that every token id is below it.
///
/// Every failure is a [`DataError`] naming the file and the problem; nothing here panics on
/// a malformed file.
pub fn read_shard(path: &Path, vocab_size: Option<usize>) -> Result<Shard, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, "open shard", e))?;
    let meta = file.metadata().map_err(|e| DataError::io(path, "stat shard", e))?;
    let (file_len, modified_at_open) = (meta.len(), meta.modified().ok());
    if file_len < HEADER_BYTES as u64 {
        return Err(DataError::HeaderTruncated {
            path: path.to_path_buf(),
            len: file_len,
            header: HEADER_BYTES as u64,
        });
    }

    #[cfg(target_endian = "little")]
    let storage = {
        // SAFETY: the map is read-only and private to this process; like every memory map it
        // assumes the file is not truncated or rewritten while it is open, which the shard
        // format's write-once, rename-into-place workflow (see `write_shard`) provides.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, "memory-map shard", e))?;
        // The file may have changed between stat and map: check against what was mapped.
        if (map.len() as u64) < HEADER_BYTES as u64 {
            return Err(DataError::HeaderTruncated {
                path: path.to_path_buf(),
                len: map.len() as u64,
                header: HEADER_BYTES as u64,
            });
        }
        check_header(path, &map[..HEADER_BYTES], map.len() as u64)?;
        if map.len() as u64 != file_len {
            return Err(DataError::ShardChanged {
                path: path.to_path_buf(),
                what: format!("it was {file_len} bytes when opened and {} when mapped", map.len()),
            });
        }
        Storage::Mapped(map)
    };
    #[cfg(not(target_endian = "little"))]
    let storage = {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "read shard", e))?;
        if bytes.len() < HEADER_BYTES {
            return Err(DataError::HeaderTruncated {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
                header: HEADER_BYTES as u64,
            });
        }
        check_header(path, &bytes[..HEADER_BYTES], bytes.len() as u64)?;
        Storage::Owned(bytes[HEADER_BYTES..].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
    };

    let shard = Shard { path: path.to_path_buf(), storage, file, len_at_open: file_len, modified_at_open };
    if let Some(vocab_size) = vocab_size {
        if let Some((index, token)) = first_out_of_range(shard.tokens(), vocab_size) {
            return Err(DataError::TokenOutOfRange {
                path: path.to_path_buf(),
                index: index as u64,
                token: token as u32,
                vocab_size,
            });
        }
    }
    Ok(shard)
}

/// Validates the bytes of a whole shard file exactly as [`read_shard`] validates a file
/// (`path` only names it in errors) and returns its token count: the entry point for
/// fuzzing the format without a file.
pub fn check_shard_bytes(path: &Path, bytes: &[u8], vocab_size: Option<usize>) -> Result<usize, DataError> {
    let header = &bytes[..bytes.len().min(HEADER_BYTES)];
    let tokens = check_header(path, header, bytes.len() as u64)?;
    if let Some(vocab_size) = vocab_size {
        let ids = bytes[HEADER_BYTES..].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if let Some((index, token)) = ids.enumerate().find(|&(_, t)| t as usize >= vocab_size) {
            return Err(DataError::TokenOutOfRange {
                path: path.to_path_buf(),
                index: index as u64,
                token: token as u32,
                vocab_size,
            });
        }
    }
    Ok(tokens)
}

/// The bytes of a shard header for `tokens` tokens.
fn header_bytes(tokens: usize) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..4].copy_from_slice(&SHARD_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&SHARD_VERSION.to_le_bytes());
    header[8..12].copy_from_slice(&(tokens as i32).to_le_bytes());
    header
}

/// A name for a temporary file next to `path`, unique to this process and call, ending in
/// `.tmp` so that no reader pattern (`fineweb_*_*.bin`) ever matches it.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Writes `tokens` as a shard at `path`, atomically: the data goes to a temporary file in the
/// same directory, is flushed to disk, and is then renamed over `path` (and the directory
/// synced, so that the rename survives a power cut). A crash leaves either
/// the old file, or the complete new one, plus at worst a `.tmp` file; never a truncated
/// shard under the final name.
///
/// Fails with [`DataError::TooManyTokens`] above 2^31 - 1 tokens (the header's limit).
/// Writing an empty shard is allowed (the reader rejects it, as the stream cannot use it).
pub fn write_shard(path: &Path, tokens: &[u16]) -> Result<(), DataError> {
    if tokens.len() > MAX_SHARD_TOKENS {
        return Err(DataError::TooManyTokens {
            path: path.to_path_buf(),
            tokens: tokens.len() as u64,
            max: MAX_SHARD_TOKENS as u64,
        });
    }
    let tmp = temp_sibling(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, "create", e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let werr = |e| DataError::io(&tmp, "write", e);
        w.write_all(&header_bytes(tokens.len())).map_err(werr)?;
        #[cfg(target_endian = "little")]
        w.write_all(bytemuck::cast_slice(tokens)).map_err(werr)?;
        #[cfg(not(target_endian = "little"))]
        for t in tokens {
            w.write_all(&t.to_le_bytes()).map_err(werr)?;
        }
        let file = w.into_inner().map_err(|e| DataError::io(&tmp, "write", e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&tmp, "sync", e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, "rename into place", e))?;
        let dir = crate::fsutil::parent_dir(path);
        crate::fsutil::sync_dir(dir).map_err(|e| DataError::io(dir, "sync directory", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Lists the shards of `split` in `dir` (`fineweb_train_*.bin` or `fineweb_val_*.bin`), in
/// sorted file-name order, as the reference's `sorted(glob(...))` does. Hidden and temporary
/// files never match. Fails with [`DataError::NoShards`] naming the directory and the pattern
/// when there is none.
pub fn list_shards(dir: &Path, split: Split) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "list directory", e))?;
    let prefix = split.prefix();
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io(dir, "list directory", e))?;
        let name = entry.file_name();
        // Names that are not UTF-8 cannot match the ASCII pattern.
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(prefix) && name.ends_with(".bin") {
            names.push(name.to_owned());
        }
    }
    if names.is_empty() {
        return Err(DataError::NoShards { dir: dir.to_path_buf(), pattern: split.pattern() });
    }
    // Python sorts str by code point; for UTF-8 that equals byte order, which String's Ord is.
    names.sort();
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

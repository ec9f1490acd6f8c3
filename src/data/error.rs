//! The one error type of the data module.
//!
//! Every variant names the file (or directory) it is about and says what is wrong with it in
//! words, with the expected and found values where there are any, so that a message such as
//! `data/x/fineweb_val_000000.bin: truncated: ...` can be acted on without a debugger.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing shards, loading the tokenizer or
/// assembling batches.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system call on `path` failed (`op` says which: open, read, map, ...).
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What was being attempted, in a word or two.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file is shorter than the 1024-byte shard header.
    #[error(
        "{}: truncated: {len} bytes is shorter than the {header}-byte shard header",
        path.display()
    )]
    HeaderTruncated {
        /// The shard file.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
        /// The header size in bytes (1024).
        header: u64,
    },

    /// Header word 0 is not the challenge's magic number.
    #[error(
        "{}: wrong magic: header[0] is {found}, expected {expected} (not a challenge shard)",
        path.display()
    )]
    BadMagic {
        /// The shard file.
        path: PathBuf,
        /// The value found in header word 0.
        found: i32,
        /// The magic number 20240520.
        expected: i32,
    },

    /// Header word 1 is not a supported format version.
    #[error(
        "{}: unsupported version: header[1] is {found}, expected {expected}",
        path.display()
    )]
    BadVersion {
        /// The shard file.
        path: PathBuf,
        /// The value found in header word 1.
        found: i32,
        /// The supported version (1).
        expected: i32,
    },

    /// Header word 2 (the token count) is negative.
    #[error("{}: bad token count: header[2] is {found}, must be >= 0", path.display())]
    BadTokenCount {
        /// The shard file.
        path: PathBuf,
        /// The value found in header word 2.
        found: i32,
    },

    /// The file size does not equal 1024 + 2 x token count.
    #[error(
        "{}: {}: header says {tokens} tokens, so the file should be {expected} bytes, but it is {actual} bytes",
        path.display(),
        if actual < expected { "truncated" } else { "trailing bytes after the tokens" }
    )]
    SizeMismatch {
        /// The shard file.
        path: PathBuf,
        /// The token count from the header.
        tokens: u64,
        /// The size the header implies, in bytes.
        expected: u64,
        /// The actual size in bytes.
        actual: u64,
    },

    /// The shard holds no tokens. An empty shard would make the training stream spin forever,
    /// so it is rejected when read.
    #[error("{}: empty: the shard holds 0 tokens", path.display())]
    EmptyShard {
        /// The shard file.
        path: PathBuf,
    },

    /// A shard file was truncated, rewritten, replaced or removed while open (reading its
    /// memory map past a truncation would otherwise kill the process with SIGBUS).
    #[error(
        "{}: changed while in use: {what}; a shard must not be modified or replaced while a job reads it",
        path.display()
    )]
    ShardChanged {
        /// The shard file.
        path: PathBuf,
        /// What differs from when it was opened.
        what: String,
    },

    /// A token id is not below the vocabulary size.
    #[error(
        "{}: token out of range: token #{index} is {token}, but the vocabulary has {vocab_size} ids",
        path.display()
    )]
    TokenOutOfRange {
        /// The shard file.
        path: PathBuf,
        /// The position of the first bad token within the shard (0-based).
        index: u64,
        /// The bad token id.
        token: u32,
        /// The vocabulary size it was checked against.
        vocab_size: usize,
    },

    /// Too many tokens for one shard: the header stores the count as an int32.
    #[error(
        "{}: too many tokens for one shard: {tokens} (the header holds at most {max})",
        path.display()
    )]
    TooManyTokens {
        /// The shard file being written.
        path: PathBuf,
        /// The requested token count.
        tokens: u64,
        /// The largest count the header can hold.
        max: u64,
    },

    /// No shard of the requested split exists in a directory.
    #[error("{}: no shards found matching {pattern}", dir.display())]
    NoShards {
        /// The directory searched.
        dir: PathBuf,
        /// The file-name pattern, e.g. `fineweb_val_*.bin`.
        pattern: String,
    },

    /// The validation split is too short to hold one sequence plus the shifted target.
    #[error(
        "{}: validation split too short: {tokens} tokens cannot hold one sequence of {seq_len} plus one",
        dir.display()
    )]
    ValTooShort {
        /// The data directory.
        dir: PathBuf,
        /// The total number of validation tokens.
        tokens: u64,
        /// The requested sequence length.
        seq_len: usize,
    },

    /// A loader was asked for something impossible (a batch that is not a whole number of
    /// sequences, a rank outside the world, a checkpointed position that does not fit the
    /// shards, ...).
    #[error("{}: {problem}", path.display())]
    BadRequest {
        /// The data directory or shard the request was about.
        path: PathBuf,
        /// What is wrong with the request.
        problem: String,
    },

    /// A SentencePiece model file could not be decoded or is of an unsupported kind.
    #[error("{}: bad tokenizer model: {problem}", path.display())]
    BadModel {
        /// The `.model` file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },

    /// An input document file could not be parsed (for `wgolf tokenize`).
    #[error("{}:{line}: {problem}", path.display())]
    BadInput {
        /// The input file.
        path: PathBuf,
        /// The 1-based line number (0 when the problem is not tied to a line).
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), op, source }
    }

    /// Shorthand for [`DataError::BadRequest`].
    pub(crate) fn bad_request(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::BadRequest { path: path.into(), problem: problem.into() }
    }
}

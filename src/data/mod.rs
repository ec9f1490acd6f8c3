//! Data: the challenge's shard format, the training and validation loaders, the sp1024
//! tokenizer and bits-per-byte accounting. Nothing here touches the GPU.
//!
//! - [`shard`]: reading (memory-mapped, validated) and writing (atomic) challenge shards.
//! - [`loader`]: the reference's sequential training stream and the validation set.
//! - [`tokenizer`]: a SentencePiece BPE encoder that matches SentencePiece id for id.
//! - [`bpb`]: the byte tables and the `val_loss` / `val_bpb` accumulator.
//! - [`tokenize`]: the `wgolf tokenize` command (documents to shards).
pub mod bpb;
pub mod error;
pub mod loader;
pub mod shard;
pub mod tokenize;
pub mod tokenizer;

pub use bpb::{BpbAccumulator, ByteLuts};
pub use error::DataError;
pub use loader::{StreamPosition, TrainStream, ValSet};
pub use shard::{check_shard_bytes, list_shards, read_shard, write_shard, Shard, Split};
pub use tokenizer::{EncodeScratch, Piece, PieceType, Tokenizer};

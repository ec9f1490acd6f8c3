//! One file per kernel family: the op structs and their [`OpDef`](super::op::OpDef)
//! implementations (bindings, shape checks, kernel call, CPU reference call, test shapes).
mod attention;
mod elementwise;
mod embedding;
mod loss;
mod matmul;
mod norm;
mod optimizer;
mod record;

pub use attention::{AttentionBwdKv, AttentionBwdQ, AttentionFwd};
pub use elementwise::{
    AddInto, ChannelDot, ChannelDotPartial, ChannelSum, MixBwd, MixFwd, Relu2Bwd, Relu2Fwd, ScaleBwd, ScaleFwd,
    ScaledAddBwd, ScaledAddFwd,
};
pub use embedding::{EmbeddingBwd, EmbeddingFwd};
pub use loss::{CrossEntropy, SumRows};
pub use matmul::{
    emit_batched_matmul, emit_matmul, split_k, tile_edge, BatchedMatmul, Matmul, MatmulPartial, MatmulSplitSum,
    MAX_PRESCALE_EXP,
};
pub use norm::{RmsNormBwd, RmsNormFwd, Rope};
pub use optimizer::{
    AdamW, ClipCoef, Ema, EmaGroup, GradSumSq, MuonApply, MuonMomentum, MuonNormalize, MuonSumSq, ScaleCopy, Sgd,
    EMAS_PER_GROUP, GRADS_PER_SUM,
};
pub use record::{SmearBwd, SmearFwd, SmearGrad, XsaBwd, XsaFwd};

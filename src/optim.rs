//! Plan emitters for the record's optimizer pieces beyond AdamW (record spec section 5):
//! global grad-norm clipping ([`emit_clip`]), Muon ([`emit_muon`]) and the weight EMA
//! ([`emit_ema`]). Each declares the state tensors it needs and pushes its steps into
//! [`Phase::Optimizer`], in the order it is called: the spec's per-step order is clip, then
//! the optimizers (tok-Adam, Muon, scalar-Adam), then the EMA, so a model calls them in
//! that order around its AdamW steps. Nothing is read back to the host.
use crate::ops::clip::sum_sq_chunks;
use crate::ops::matmul::Layout;
use crate::ops::muon::{muon_chunks, shape_scale, stack_shape, NS_COEFFS};
use crate::plan::defs::*;
use crate::plan::{DType, MuonShard, ParamSlot, Phase, PlanBuilder, PlanError, Role, TensorId};

fn numel(g: &PlanBuilder, t: TensorId) -> usize {
    g.shape(t).iter().product()
}

/// Clips the global norm of `grads` to `max_norm`, as PyTorch's `clip_grad_norm_`, in two
/// deterministic stages: [`GradSumSq`] dispatches over up to [`GRADS_PER_SUM`] gradients
/// each (one workgroup per 1024-element chunk) write every chunk's sum of squares into
/// `clip.partials` (the gradients' chunks in order), then one [`ClipCoef`] workgroup adds the
/// partials in a fixed order into the coefficient `min(1, max_norm / (total norm + 1e-6))`
/// `clip.coef [1]` (both `Role::Scratch`). Returns the coefficient, which the optimizer
/// steps bind and multiply every gradient element by as they read it (the gradients are not
/// scaled in place: a pass over all of them, one dispatch per gradient, saved). Without
/// clipping (`max_norm <= 0` or no gradients) it pushes nothing and returns a constant 1,
/// `clip.none`.
pub fn emit_clip(g: &mut PlanBuilder, grads: &[TensorId], max_norm: f32) -> Result<TensorId, PlanError> {
    if grads.is_empty() || max_norm <= 0.0 {
        return Ok(g.constant("clip.none", &[1], vec![1.0]));
    }
    let counts: Vec<usize> = grads.iter().map(|&t| numel(g, t)).collect();
    let parts: usize = counts.iter().map(|&c| sum_sq_chunks(c)).sum();
    let partials = g.tensor("clip.partials", &[parts], DType::F32, Role::Scratch);
    let coef = g.tensor("clip.coef", &[1], DType::F32, Role::Scratch);
    let mut offset = 0;
    for (group, ids) in counts.chunks(GRADS_PER_SUM).zip(grads.chunks(GRADS_PER_SUM)) {
        let op = GradSumSq::new(group, offset, parts);
        // The bindings past the group's gradients repeat its last one (not read).
        let mut args = vec![partials];
        args.extend((0..GRADS_PER_SUM).map(|k| ids[k.min(ids.len() - 1)]));
        g.push(Phase::Optimizer, op, &args)?;
        offset += op.chunks();
    }
    g.push(Phase::Optimizer, ClipCoef { parts, max_norm: max_norm as f64 }, &[coef, partials])?;
    Ok(coef)
}

/// One Muon matrix: its slot, shape and place (shard, index) among its shape's stacks.
struct Member {
    slot: ParamSlot,
    rows: usize,
    cols: usize,
    shard: usize,
    index: usize,
}

/// One stack: the matrices of one shape in one shard, and the tensors Newton-Schulz runs on.
struct Stack {
    a: usize,
    b: usize,
    count: usize,
    cur: TensorId,
    next: TensorId,
    gram: TensorId,
    poly: TensorId,
    partials: TensorId,
}

/// Muon for the 2-D parameters of `slots`, with the [`MuonHyper`](crate::ops::muon::MuonHyper)
/// uniform `hyper` (the caller's `g.hyper(ParamGroup::Matrix)`, written before each optimizer
/// pass), the gradients scaled by `clip` (from [`emit_clip`]) as the momentum reads them,
/// `ns_steps` Newton-Schulz iterations (5 in the record) and the Newton-Schulz work
/// split into `shards` (distributed Muon: the world size, or 1).
///
/// The matrices are grouped by their stack shape `[a, b]` (`(rows, cols)`, or `(cols, rows)`
/// when rows > cols, so a matrix and its transpose's shape share a stack), in order of first
/// appearance; the j-th matrix of a shape goes to shard `j mod shards` (each rank gets an
/// equal share of every shape's work). It creates a momentum buffer `muon_buf.<param name>`
/// per matrix (`Role::OptState`), and per shape and shard two stacks `muon.x0.<a>x<b>`,
/// `muon.x1.<a>x<b>` `[count, a, b]`, two `[count, a, a]` tensors `muon.gram.<a>x<b>`,
/// `muon.poly.<a>x<b>` and the norms' partial sums `muon.norm_partials.<a>x<b>` (all
/// `Role::Scratch`: every step overwrites them before reading; names end in `.s<shard>` when
/// sharded). It pushes: one momentum step per matrix (into its stack), then per shard and
/// shape the normalisation of the stack (partial sums of squares over chunks of every matrix,
/// then the division, each combining its matrix's partials in a fixed order) and per
/// iteration five batched steps ping-ponging between the stacks (`A = X X^T`; `P = b A`;
/// `P += c A A`; `Y = a X`; `Y += P X`), then one apply step per matrix. With several shards
/// it records them ([`PlanBuilder::set_muon_shards`]): every rank runs the momentum steps
/// (so the momentum buffers stay equal on every rank), its own shard's steps, and, once the
/// shards' results are exchanged, every apply step. An error names a parameter that is not
/// 2-D.
pub fn emit_muon(
    g: &mut PlanBuilder,
    slots: &[ParamSlot],
    hyper: TensorId,
    clip: TensorId,
    ns_steps: usize,
    shards: usize,
) -> Result<(), PlanError> {
    let shards = shards.max(1);
    let mut shapes: Vec<((usize, usize), Vec<Member>)> = Vec::new();
    for &slot in slots {
        let desc = g.tensor_desc(slot.param);
        let &[rows, cols] = desc.shape.as_slice() else {
            return Err(PlanError::Other(format!("muon: {} {:?} is not a matrix", desc.name, desc.shape)));
        };
        let key = stack_shape(rows, cols);
        let at = match shapes.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                shapes.push((key, Vec::new()));
                shapes.len() - 1
            }
        };
        let members = &mut shapes[at].1;
        let j = members.len();
        members.push(Member { slot, rows, cols, shard: j % shards, index: j / shards });
    }
    let opt = Phase::Optimizer;
    // stacks[shape][shard], None for a shard without a matrix of that shape.
    let mut stacks: Vec<Vec<Option<Stack>>> = Vec::new();
    for ((a, b), members) in &shapes {
        let (a, b) = (*a, *b);
        let per_shard = (0..shards).map(|s| {
            let count = members.iter().filter(|m| m.shard == s).count();
            (count > 0).then(|| {
                let suffix = if shards > 1 { format!(".s{s}") } else { String::new() };
                let mut state = |name: &str, shape: &[usize]| {
                    g.tensor(format!("muon.{name}.{a}x{b}{suffix}"), shape, DType::F32, Role::Scratch)
                };
                Stack {
                    a,
                    b,
                    count,
                    cur: state("x0", &[count, a, b]),
                    next: state("x1", &[count, a, b]),
                    gram: state("gram", &[count, a, a]),
                    poly: state("poly", &[count, a, a]),
                    partials: state("norm_partials", &[count, muon_chunks(a, b)]),
                }
            })
        });
        stacks.push(per_shard.collect());
    }
    for (s, (_, members)) in shapes.iter().enumerate() {
        for m in members {
            let stack = stacks[s][m.shard].as_ref().expect("a member's shard has its stack");
            let name = format!("muon_buf.{}", g.tensor_desc(m.slot.param).name);
            let buf = g.tensor(name, &[m.rows, m.cols], DType::F32, Role::OptState);
            let op = MuonMomentum { rows: m.rows, cols: m.cols, index: m.index, count: stack.count };
            g.push(opt, op, &[buf, stack.cur, m.slot.grad, clip, hyper])?;
        }
    }
    let mut records = Vec::with_capacity(shards);
    for shard in 0..shards {
        let start = g.optimizer_steps();
        let mut results = Vec::new();
        for stack in stacks.iter_mut().filter_map(|per_shard| per_shard[shard].as_mut()) {
            newton_schulz(g, stack, ns_steps)?;
            results.push(stack.cur);
        }
        records.push(MuonShard { steps: start..g.optimizer_steps(), results });
    }
    for (s, (_, members)) in shapes.iter().enumerate() {
        for m in members {
            let stack = stacks[s][m.shard].as_ref().expect("a member's shard has its stack");
            let op = MuonApply {
                rows: m.rows,
                cols: m.cols,
                index: m.index,
                count: stack.count,
                shape_scale: shape_scale(m.rows, m.cols),
            };
            g.push(opt, op, &[m.slot.param, stack.cur, hyper])?;
        }
    }
    if shards > 1 {
        g.set_muon_shards(records);
    }
    Ok(())
}

/// The normalisation and `ns_steps` Newton-Schulz iterations of one stack, leaving the result
/// in `stack.cur`.
fn newton_schulz(g: &mut PlanBuilder, stack: &mut Stack, ns_steps: usize) -> Result<(), PlanError> {
    let (na, nb, nc) = NS_COEFFS;
    let opt = Phase::Optimizer;
    let Stack { a, b, count, partials, .. } = *stack;
    g.push(opt, MuonSumSq { count, a, b }, &[partials, stack.cur])?;
    g.push(opt, MuonNormalize { count, a, b }, &[stack.cur, partials])?;
    let mm = |m, n, k, layout, alpha: f32, accumulate| BatchedMatmul {
        batch: count,
        m,
        n,
        k,
        layout,
        alpha: alpha as f64,
        accumulate,
    };
    let (gram, poly) = (stack.gram, stack.poly);
    for _ in 0..ns_steps {
        let (cur, next) = (stack.cur, stack.next);
        // A = X X^T
        emit_batched_matmul(g, opt, mm(a, a, b, Layout::Nt, 1.0, false), [gram, cur, cur])?;
        // P = b A + c A A
        g.push(opt, ScaleCopy { count: count * a * a, alpha: nb as f64 }, &[poly, gram])?;
        emit_batched_matmul(g, opt, mm(a, a, a, Layout::Nn, nc, true), [poly, gram, gram])?;
        // X' = a X + P X
        g.push(opt, ScaleCopy { count: count * a * b, alpha: na as f64 }, &[next, cur])?;
        emit_batched_matmul(g, opt, mm(a, b, a, Layout::Nn, 1.0, true), [next, poly, cur])?;
        std::mem::swap(&mut stack.cur, &mut stack.next);
    }
    Ok(())
}

/// An exponential moving average `E <- decay E + (1 - decay) W` of each of `params`: creates
/// `ema.<param name>` (same shape, `Role::OptState`, so zero at start: the caller writes the
/// initial weights into it, as the record starts the EMA from them) and pushes one
/// [`EmaGroup`] step per [`EMAS_PER_GROUP`] parameters, the last one to three in an [`Ema`]
/// step each (the record's 116 weights: 29 dispatches). Returns the `(param, ema)` pairs.
pub fn emit_ema(g: &mut PlanBuilder, params: &[TensorId], decay: f32) -> Result<Vec<(TensorId, TensorId)>, PlanError> {
    let mut pairs = Vec::with_capacity(params.len());
    for &param in params {
        let desc = g.tensor_desc(param).clone();
        let ema = g.tensor(format!("ema.{}", desc.name), &desc.shape, DType::F32, Role::OptState);
        pairs.push((param, ema));
    }
    let decay = decay as f64;
    for group in pairs.chunks(EMAS_PER_GROUP) {
        if let Ok(four) = <&[(TensorId, TensorId); EMAS_PER_GROUP]>::try_from(group) {
            let counts = four.map(|(p, _)| numel(g, p));
            let args: Vec<TensorId> = four.iter().map(|&(_, e)| e).chain(four.iter().map(|&(p, _)| p)).collect();
            g.push(Phase::Optimizer, EmaGroup { counts, decay }, &args)?;
        } else {
            for &(param, ema) in group {
                g.push(Phase::Optimizer, Ema { count: numel(g, param), decay }, &[ema, param])?;
            }
        }
    }
    Ok(pairs)
}

//! A static plan: every tensor the model needs (parameters, gradients, optimizer state,
//! activations, inputs) in one table, and the list of steps for the forward pass, the
//! hand-written backward pass and the optimizer. It is built once per config, checked for
//! shapes and aliasing when built, and then replayed by an executor (CPU or GPU) every step.
//! When it is finished, tensors whose lifetimes do not overlap are given shared storage and
//! the clears an accumulation needs are placed ([`memory`]). Nothing here touches wgpu.
pub mod cost;
pub mod defs;
pub mod memory;
pub mod op;

pub use defs::*;
pub use op::{Access, BindingSpec, Cost, DType, Domain, KernelCall, KernelTarget, Op, OpDef, Param};

use std::collections::HashMap;

/// Index of a tensor in [`Plan::tensors`].
pub type TensorId = usize;

/// Which optimizer group (and learning rate) a parameter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ParamGroup {
    /// The tied token embedding.
    Embed,
    /// 2-D block matrices.
    Matrix,
    /// Per-channel and per-head vectors (scales, gains, mixes, skip weights).
    Scalar,
}

impl ParamGroup {
    pub const ALL: [ParamGroup; 3] = [ParamGroup::Embed, ParamGroup::Matrix, ParamGroup::Scalar];
}

/// How a parameter is initialized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Constant(f32),
    /// Normal(0, std).
    Normal {
        std: f32,
    },
    /// Uniform(-bound, bound), PyTorch's default for a Linear (bound = 1/sqrt(fan_in)).
    Uniform {
        bound: f32,
    },
    /// resid_mix: first row ones, second row zeros.
    ResidMix,
    /// An orthogonal matrix times `gain` (PyTorch's `orthogonal_`): orthonormal rows when
    /// rows <= cols, orthonormal columns otherwise.
    Orthogonal {
        gain: f32,
    },
}

/// What a tensor is for; decides when executors clear it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Role {
    Param {
        group: ParamGroup,
        init: Init,
    },
    /// A parameter's gradient: cleared once per optimizer step, accumulated over micro-batches.
    Grad,
    /// An activation, written by the forward pass.
    Activation,
    /// An activation's gradient: zeroed by the executor right before its first write in
    /// each pass when that write accumulates (see [`memory`]).
    ActGrad,
    /// Persistent optimizer state (Adam moments, Muon momentum, the EMA): zero at start,
    /// saved in checkpoints.
    OptState,
    /// Per-pass scratch (Muon's Newton-Schulz stacks and norm partials, the clip's partial
    /// sums, the channel reductions' partials in the backward pass): written before it is read
    /// within each pass (zeroed first, as an activation gradient is, when that write
    /// accumulates), and never saved.
    Scratch,
    /// Written by the host before each micro-batch (token ids, targets).
    Input,
    /// Written once by the host (the RoPE table).
    Constant,
    /// An optimizer group's hyperparameters, written before each optimizer pass.
    Hyper(ParamGroup),
    /// The step's mean loss: cleared once per optimizer step.
    Loss,
}

/// One tensor of the plan.
#[derive(Clone, Debug)]
pub struct TensorDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub role: Role,
}

impl TensorDesc {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One step: an op and the tensors bound to it, in the op's binding order.
#[derive(Clone, Debug)]
pub struct Step {
    pub op: Op,
    pub args: Vec<TensorId>,
}

/// The three phases of a training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Forward,
    Backward,
    Optimizer,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Forward, Phase::Backward, Phase::Optimizer];
    fn index(self) -> usize {
        self as usize
    }
}

/// A trainable parameter with its gradient and Adam moments (in an SGD plan, see
/// [`PlanBuilder::sgd`], `m` and `v` are both its momentum buffer).
#[derive(Clone, Copy, Debug)]
pub struct ParamSlot {
    pub param: TensorId,
    pub grad: TensorId,
    pub m: TensorId,
    pub v: TensorId,
    pub group: ParamGroup,
}

/// The tensors the host reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct PlanIo {
    pub ids: TensorId,
    pub targets: TensorId,
    pub logits: TensorId,
    pub loss_rows: TensorId,
    pub loss_total: TensorId,
    /// BigramHash bucket ids (computed by the host from `ids`), when the model has one.
    pub bigram_ids: Option<TensorId>,
    /// The positions of `ids` grouped by id (`ops::embedding::id_index`, built by the host),
    /// which the token embedding's backward reads; `None` in a forward-only plan.
    pub ids_index: Option<TensorId>,
    /// The same index of `bigram_ids`, for the BigramHash table's backward.
    pub bigram_index: Option<TensorId>,
    /// An evaluation plan's scored positions (rows of the batch, written by the host): the
    /// head, `targets`, `logits` and `loss_rows` cover these rows only. `None`: every
    /// position (the training plan).
    pub scored: Option<TensorId>,
}

/// A plan error: which step (or tensor) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan step {step} ({label}): {problem}")]
    Step { step: usize, label: String, problem: String },
    #[error("plan: {0}")]
    Other(String),
}

/// A checked, immutable plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub tensors: Vec<TensorDesc>,
    steps: [Vec<Step>; 3],
    pub params: Vec<ParamSlot>,
    pub hypers: Vec<(ParamGroup, TensorId)>,
    pub constants: Vec<(TensorId, Vec<f32>)>,
    io: Option<PlanIo>,
    memory: memory::Memory,
    /// Distributed Muon's shares of the Newton-Schulz work, one per rank (empty: every rank
    /// runs all of it); see [`MuonShard`].
    pub muon_shards: Vec<MuonShard>,
}

/// One rank's share of distributed Muon (`optim::emit_muon` with several shards): the
/// optimizer steps `steps` (the normalisation and Newton-Schulz iterations of this rank's
/// stacks) run on this rank alone, and `results` are the stacks holding its orthogonalized
/// updates after them, which the other ranks receive from it before the steps after the
/// last shard's (the updates' application) run on every rank. The optimizer steps before
/// the first shard's run on every rank too. The result stacks keep slots of their own (the
/// host writes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuonShard {
    pub steps: std::ops::Range<usize>,
    pub results: Vec<TensorId>,
}

impl Plan {
    /// A plan of one forward step running `op`, with tensor i bound to binding i (read-write
    /// bindings are activations, read-only ones inputs, a uniform a hyperparameter block).
    /// Kernel tests and benches run single ops through it on any executor.
    pub fn single_op(op: impl Into<Op>) -> Result<Plan, PlanError> {
        let op = op.into();
        let mut g = PlanBuilder::new();
        let mut args = Vec::new();
        for (i, spec) in op.bindings().iter().enumerate() {
            let role = match spec.access {
                Access::ReadWrite => Role::Activation,
                Access::Read => Role::Input,
                Access::Uniform => Role::Hyper(ParamGroup::Scalar),
            };
            args.push(g.tensor(format!("binding{i}"), &[spec.len], spec.dtype, role));
        }
        g.push(Phase::Forward, op, &args)?;
        // Every binding in its own buffer and nothing cleared: the kernel tests write every
        // binding (an accumulating output's old value too) before the step.
        let memory = memory::Memory::separate(&g.tensors, &g.steps);
        Ok(Plan {
            tensors: g.tensors,
            steps: g.steps,
            params: g.params,
            hypers: g.hypers,
            constants: g.constants,
            io: None,
            memory,
            muon_shards: Vec::new(),
        })
    }

    /// The tensors the host reads and writes (every model plan has them).
    pub fn io(&self) -> &PlanIo {
        self.io.as_ref().expect("a model plan has inputs and a loss; single-op plans do not")
    }

    pub fn steps(&self, phase: Phase) -> &[Step] {
        &self.steps[phase.index()]
    }
    /// All steps in execution order, with their phase.
    pub fn all_steps(&self) -> impl Iterator<Item = (Phase, &Step)> {
        Phase::ALL.into_iter().flat_map(move |p| self.steps(p).iter().map(move |s| (p, s)))
    }
    pub fn tensor(&self, id: TensorId) -> &TensorDesc {
        &self.tensors[id]
    }
    /// Tensor ids with a given role predicate.
    pub fn with_role(&self, pred: impl Fn(&Role) -> bool) -> Vec<TensorId> {
        (0..self.tensors.len()).filter(|&i| pred(&self.tensors[i].role)).collect()
    }
    /// Looks a tensor up by name.
    pub fn find(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name)
    }
    /// The bytes an executor allocates: every slot of [`Plan::memory`] (tensors with
    /// disjoint lifetimes share one).
    pub fn bytes(&self) -> usize {
        self.memory.bytes()
    }
    /// The bytes of all tensors, each in its own buffer (what [`Plan::bytes`] would be
    /// without reuse).
    pub fn bytes_without_reuse(&self) -> usize {
        self.tensors.iter().map(|t| t.numel() * 4).sum()
    }
    /// Where every tensor lives and which are zeroed before which step (see [`memory`]).
    pub fn memory(&self) -> &memory::Memory {
        &self.memory
    }
    /// Whether `t` shares storage with other tensors, so that its value lasts only from the
    /// step that writes it to the next step that writes another tensor of its slot.
    pub fn is_shared(&self, t: TensorId) -> bool {
        self.memory.is_shared(t)
    }
    /// The tensors an executor zeroes right before step `index` of `phase`: those whose
    /// first access in the pass accumulates.
    pub fn clears_before(&self, phase: Phase, index: usize) -> &[TensorId] {
        self.memory.clears(phase.index(), index)
    }
    /// The same plan with every tensor in its own buffer (the same clears), for tests that
    /// read activations or scratch after a pass.
    pub fn without_reuse(mut self) -> Plan {
        self.memory = self.memory.without_reuse(&self.tensors);
        self
    }
    /// The same plan with the slots given (`slot_of[t]` for every tensor), checked by
    /// [`memory::verify`]: tests of the check build deliberately wrong assignments with it.
    pub fn with_slots(mut self, slot_of: Vec<usize>) -> Result<Plan, PlanError> {
        if slot_of.len() != self.tensors.len() {
            return Err(PlanError::Other(format!("{} slots for {} tensors", slot_of.len(), self.tensors.len())));
        }
        let mut memory = memory::Memory::with_slots(&self.tensors, &self.steps, slot_of);
        memory.keep_clears(&self.memory);
        memory::verify(&self.tensors, &self.steps, &memory)?;
        self.memory = memory;
        Ok(self)
    }
    /// Every parameter tensor, trainable or frozen (a frozen one has no [`ParamSlot`]), in
    /// declaration order: what weights are copied through by name.
    pub fn weights(&self) -> Vec<TensorId> {
        self.with_role(|r| matches!(r, Role::Param { .. }))
    }
    /// Number of trainable parameter values.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| self.tensors[p.param].numel()).sum()
    }
    /// A short readable name for a step, e.g. `backward#12 matmul[..] -> d.blocks.0.attn.c_q.weight`.
    pub fn step_name(&self, phase: Phase, index: usize) -> String {
        let s = &self.steps(phase)[index];
        let outs: Vec<&str> =
            s.op.bindings()
                .iter()
                .zip(&s.args)
                .filter(|(b, _)| b.access == Access::ReadWrite)
                .map(|(_, &t)| self.tensors[t].name.as_str())
                .collect();
        format!("{phase:?}#{index} {} -> {}", s.op.kernel().label(), outs.join(", "))
    }
}

/// Builds a plan: tensors are declared, steps pushed per phase (each checked at once).
#[derive(Default)]
pub struct PlanBuilder {
    tensors: Vec<TensorDesc>,
    steps: [Vec<Step>; 3],
    grads: HashMap<TensorId, TensorId>,
    params: Vec<ParamSlot>,
    hypers: Vec<(ParamGroup, TensorId)>,
    constants: Vec<(TensorId, Vec<f32>)>,
    /// Parameters get no gradient, no Adam moments and no [`ParamSlot`] (evaluation plans).
    forward_only: bool,
    /// Parameters whose names start with one of these are frozen (see [`PlanBuilder::sgd`]).
    frozen_prefixes: Vec<String>,
    /// Momentum buffers instead of Adam moments (see [`PlanBuilder::sgd`]).
    sgd: bool,
    /// Placeholder gradients of frozen parameters: steps writing only these are dropped, and
    /// the tensors are removed from the table when the plan is finished.
    discard: std::collections::HashSet<TensorId>,
    /// The factor the loss's gradient carries into the backward (see
    /// [`PlanBuilder::set_grad_scale`]); 1 until set.
    grad_scale: Option<f64>,
    /// See [`Plan::muon_shards`].
    muon_shards: Vec<MuonShard>,
}

impl PlanBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for a forward-only plan: [`PlanBuilder::param`] declares the parameter
    /// tensor alone, so the plan allocates no gradient or optimizer state, and
    /// [`Plan::params`] stays empty (find parameters by [`Role::Param`]).
    pub fn forward_only() -> Self {
        PlanBuilder { forward_only: true, ..Self::default() }
    }

    /// A builder for an SGD plan (test-time training) with the parameters named
    /// `<prefix>...` for any of `frozen_prefixes` frozen. A frozen parameter is an ordinary
    /// `Role::Param` tensor (written and read by name) but not a [`ParamSlot`]: it has no
    /// gradient, moments or momentum. Its gradient requests ([`PlanBuilder::grad`]) return a
    /// placeholder, a step whose every written binding is a placeholder is dropped (the
    /// activation gradients a backward writes are separate steps, so they still flow through
    /// the frozen layers), and the placeholders leave the table at [`PlanBuilder::finish`].
    /// Trainable parameters get one momentum buffer `sgd_buf.<name>` (`m` and `v` of the slot).
    /// The model's backward code is the same as in training: freezing is decided here.
    pub fn sgd(frozen_prefixes: Vec<String>) -> Self {
        PlanBuilder { frozen_prefixes, sgd: true, ..Self::default() }
    }

    /// Records that every activation gradient of the backward carries the factor `scale`
    /// (the loss is a mean over `1/scale` tokens per optimizer step), for
    /// [`PlanBuilder::grad_prescale_exp`].
    pub fn set_grad_scale(&mut self, scale: f64) {
        self.grad_scale = Some(scale);
    }

    /// Records distributed Muon's shards (see [`Plan::muon_shards`]), pushed by
    /// `optim::emit_muon`.
    pub fn set_muon_shards(&mut self, shards: Vec<MuonShard>) {
        self.muon_shards = shards;
    }

    /// The number of optimizer steps pushed so far.
    pub fn optimizer_steps(&self) -> usize {
        self.steps[Phase::Optimizer.index()].len()
    }

    /// The `a_prescale_exp` of a backward [`Matmul`] whose `a` is a gradient: the power of two
    /// nearest `1/scale`, so that `2^e * scale` lies in [0.7, 1.42] and a gradient staged in
    /// f16 keeps the magnitude of one token's loss gradient (at most 1 in the logits) instead
    /// of 1/tokens of it: at the record's 786,432 tokens per step `scale` is 1.3e-6, below
    /// f16's smallest normal (6.1e-5), and a softmax probability times it flushes to zero.
    /// 0 before [`PlanBuilder::set_grad_scale`].
    pub fn grad_prescale_exp(&self) -> i32 {
        match self.grad_scale {
            Some(s) if s > 0.0 => {
                (-s.log2()).round().clamp(-f64::from(MAX_PRESCALE_EXP), f64::from(MAX_PRESCALE_EXP)) as i32
            }
            _ => 0,
        }
    }

    fn is_frozen(&self, name: &str) -> bool {
        self.frozen_prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    pub fn tensor(&mut self, name: impl Into<String>, shape: &[usize], dtype: DType, role: Role) -> TensorId {
        self.tensors.push(TensorDesc { name: name.into(), shape: shape.to_vec(), dtype, role });
        self.tensors.len() - 1
    }

    /// A trainable parameter, with its gradient and Adam moments (the tensor alone in a
    /// forward-only builder; a frozen one, or one with a momentum buffer, in an SGD plan).
    pub fn param(&mut self, name: &str, shape: &[usize], group: ParamGroup, init: Init) -> TensorId {
        let param = self.tensor(name, shape, DType::F32, Role::Param { group, init });
        if self.forward_only {
            return param;
        }
        if self.is_frozen(name) {
            let placeholder = self.tensor(format!("d.{name}"), shape, DType::F32, Role::Grad);
            self.grads.insert(param, placeholder);
            self.discard.insert(placeholder);
            return param;
        }
        let grad = self.tensor(format!("d.{name}"), shape, DType::F32, Role::Grad);
        if self.sgd {
            let buf = self.tensor(format!("sgd_buf.{name}"), shape, DType::F32, Role::OptState);
            self.grads.insert(param, grad);
            self.params.push(ParamSlot { param, grad, m: buf, v: buf, group });
            return param;
        }
        let m = self.tensor(format!("adam_m.{name}"), shape, DType::F32, Role::OptState);
        let v = self.tensor(format!("adam_v.{name}"), shape, DType::F32, Role::OptState);
        self.grads.insert(param, grad);
        self.params.push(ParamSlot { param, grad, m, v, group });
        param
    }

    pub fn activation(&mut self, name: impl Into<String>, shape: &[usize]) -> TensorId {
        self.tensor(name, shape, DType::F32, Role::Activation)
    }

    /// A constant tensor filled once by the host.
    pub fn constant(&mut self, name: &str, shape: &[usize], data: Vec<f32>) -> TensorId {
        let id = self.tensor(name, shape, DType::F32, Role::Constant);
        self.constants.push((id, data));
        id
    }

    /// The hyperparameter uniform of an optimizer group (created on first use).
    pub fn hyper(&mut self, group: ParamGroup) -> TensorId {
        if let Some(&(_, id)) = self.hypers.iter().find(|(g, _)| *g == group) {
            return id;
        }
        let id = self.tensor(format!("hyper.{group:?}"), &[op::HYPER_LEN], DType::F32, Role::Hyper(group));
        self.hypers.push((group, id));
        id
    }

    /// The gradient tensor of `t` (created on first use; an activation's gradient is an
    /// `ActGrad`, a parameter's was created with it).
    pub fn grad(&mut self, t: TensorId) -> TensorId {
        if let Some(&g) = self.grads.get(&t) {
            return g;
        }
        let desc = self.tensors[t].clone();
        let g = self.tensor(format!("d.{}", desc.name), &desc.shape, DType::F32, Role::ActGrad);
        self.grads.insert(t, g);
        g
    }

    /// A `Role::Scratch` tensor shared by every caller asking for `name` (created by the
    /// first with `shape`; a later caller's shape must be the same). For partial sums that
    /// each step overwrites and the next step consumes, so one tensor serves every site.
    pub fn shared_scratch(&mut self, name: &str, shape: &[usize]) -> Result<TensorId, PlanError> {
        match self.tensors.iter().position(|t| t.name == name) {
            Some(id) if matches!(self.tensors[id].role, Role::Scratch) && self.tensors[id].shape == shape => Ok(id),
            Some(id) => Err(PlanError::Other(format!(
                "scratch {name} {shape:?} asked for, but the plan's {name} is {:?} {:?}",
                self.tensors[id].role, self.tensors[id].shape
            ))),
            None => Ok(self.tensor(name, shape, DType::F32, Role::Scratch)),
        }
    }

    /// Whether the plan keeps `t`: false for a frozen parameter's gradient placeholder, whose
    /// steps are dropped (so a caller can skip the steps that would only feed them).
    pub fn keeps(&self, t: TensorId) -> bool {
        !self.discard.contains(&t)
    }

    /// The parameters declared so far.
    pub fn params(&self) -> &[ParamSlot] {
        &self.params
    }

    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.tensors[t].shape
    }

    /// A tensor declared so far (name, shape, role).
    pub fn tensor_desc(&self, t: TensorId) -> &TensorDesc {
        &self.tensors[t]
    }

    /// Appends a step to a phase after checking it against the op's binding table.
    pub fn push(&mut self, phase: Phase, op: impl Into<Op>, args: &[TensorId]) -> Result<(), PlanError> {
        let op = op.into();
        let step_index = self.steps.iter().map(Vec::len).sum::<usize>();
        let fail = |problem: String| PlanError::Step { step: step_index, label: op.kernel().label(), problem };
        op.check().map_err(fail)?;
        let specs = op.bindings();
        if specs.len() != args.len() {
            return Err(fail(format!("{} bindings expected, {} given", specs.len(), args.len())));
        }
        if !self.discard.is_empty() {
            // A frozen parameter's gradient: drop the step when that is all it writes.
            let discarded = |t: &TensorId| self.discard.contains(t);
            let mut written = specs.iter().zip(args).filter(|(s, _)| s.access == Access::ReadWrite);
            if written.all(|(_, t)| discarded(t)) {
                return Ok(());
            }
            // Anything else may not bind one (a step writing a live tensor beside it, or one
            // reading it, would need the gradient that is not kept).
            if let Some(&t) = args.iter().find(|t| discarded(t)) {
                let name = &self.tensors[t].name;
                return Err(fail(format!("{name} is a frozen parameter's gradient, which is not kept")));
            }
        }
        for (i, (spec, &t)) in specs.iter().zip(args).enumerate() {
            let desc = &self.tensors[t];
            if desc.numel() != spec.len {
                return Err(fail(format!(
                    "binding {i} ({}) has {} elements {:?}, the op needs {}",
                    desc.name,
                    desc.numel(),
                    desc.shape,
                    spec.len
                )));
            }
            if desc.dtype != spec.dtype {
                return Err(fail(format!(
                    "binding {i} ({}) is {:?}, the op needs {:?}",
                    desc.name, desc.dtype, spec.dtype
                )));
            }
            let is_hyper = matches!(desc.role, Role::Hyper(_));
            if is_hyper != (spec.access == Access::Uniform) {
                return Err(fail(format!("binding {i} ({}) must be a uniform exactly when the op says so", desc.name)));
            }
            if spec.access == Access::ReadWrite {
                if matches!(desc.role, Role::Input | Role::Constant) {
                    return Err(fail(format!("binding {i} writes the read-only tensor {}", desc.name)));
                }
                if args.iter().filter(|&&a| a == t).count() > 1 {
                    return Err(fail(format!("{} is written and bound again in the same step", desc.name)));
                }
            }
        }
        self.steps[phase.index()].push(Step { op, args: args.to_vec() });
        Ok(())
    }

    /// A plan without host inputs or loss (e.g. an optimizer-only plan in tests);
    /// [`Plan::io`] panics on it.
    pub fn finish_without_io(self) -> Result<Plan, PlanError> {
        if self.tensors.iter().any(|t| t.numel() == 0) {
            return Err(PlanError::Other("a tensor has no elements".into()));
        }
        let exchanged: Vec<TensorId> = self.muon_shards.iter().flat_map(|s| s.results.iter().copied()).collect();
        let memory = memory::Memory::plan(&self.tensors, &self.steps, &exchanged)?;
        Ok(Plan {
            tensors: self.tensors,
            steps: self.steps,
            params: self.params,
            hypers: self.hypers,
            constants: self.constants,
            io: None,
            memory,
            muon_shards: self.muon_shards,
        })
    }

    /// Removes the frozen parameters' placeholder gradients from the table (no step binds
    /// them: [`PlanBuilder::push`] dropped those steps) and renumbers every tensor id held.
    fn remove_discarded(&mut self, io: PlanIo) -> PlanIo {
        if self.discard.is_empty() {
            return io;
        }
        let mut new_id = vec![usize::MAX; self.tensors.len()];
        let mut kept = Vec::with_capacity(self.tensors.len());
        for (old, t) in std::mem::take(&mut self.tensors).into_iter().enumerate() {
            if !self.discard.contains(&old) {
                new_id[old] = kept.len();
                kept.push(t);
            }
        }
        self.tensors = kept;
        let map = |t: TensorId| new_id[t];
        for step in self.steps.iter_mut().flatten() {
            step.args.iter_mut().for_each(|a| *a = map(*a));
        }
        for s in &mut self.params {
            *s = ParamSlot { param: map(s.param), grad: map(s.grad), m: map(s.m), v: map(s.v), group: s.group };
        }
        self.hypers.iter_mut().for_each(|(_, t)| *t = map(*t));
        self.constants.iter_mut().for_each(|(t, _)| *t = map(*t));
        for shard in &mut self.muon_shards {
            shard.results.iter_mut().for_each(|t| *t = map(*t));
        }
        self.discard.clear();
        PlanIo {
            ids: map(io.ids),
            targets: map(io.targets),
            logits: map(io.logits),
            loss_rows: map(io.loss_rows),
            loss_total: map(io.loss_total),
            bigram_ids: io.bigram_ids.map(map),
            ids_index: io.ids_index.map(map),
            bigram_index: io.bigram_index.map(map),
            scored: io.scored.map(map),
        }
    }

    pub fn finish(mut self, io: PlanIo) -> Result<Plan, PlanError> {
        if self.tensors.iter().any(|t| t.numel() == 0) {
            return Err(PlanError::Other("a tensor has no elements".into()));
        }
        let io = self.remove_discarded(io);
        let host: Vec<TensorId> = [io.ids, io.targets, io.logits, io.loss_rows, io.loss_total]
            .into_iter()
            .chain([io.bigram_ids, io.ids_index, io.bigram_index, io.scored].into_iter().flatten())
            .collect();
        let exchanged = self.muon_shards.iter().flat_map(|s| s.results.iter().copied());
        let host: Vec<TensorId> = host.into_iter().chain(exchanged).collect();
        let memory = memory::Memory::plan(&self.tensors, &self.steps, &host)?;
        Ok(Plan {
            tensors: self.tensors,
            steps: self.steps,
            params: self.params,
            hypers: self.hypers,
            constants: self.constants,
            io: Some(io),
            memory,
            muon_shards: self.muon_shards,
        })
    }
}

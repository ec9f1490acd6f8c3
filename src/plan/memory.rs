//! Where a plan's tensors live. Most of a training plan's memory is activations and their
//! gradients, and each lives only from its first write to its last read; so tensors whose
//! lifetimes do not overlap share storage ("slots"), decided once when the plan is finished:
//!
//! - **Liveness**: the steps are laid out in the order a training step runs them (forward,
//!   backward, optimizer), and every reusable tensor gets the interval from its first access
//!   to its last, both ends included (a step reading one tensor and writing another binds
//!   both at once, so they may not share). Reusable: `Activation`, `ActGrad` and `Scratch`
//!   f32 tensors that the host never touches (not in [`PlanIo`](super::PlanIo)) and whose
//!   first access is a write, so that nothing flows into them from outside the pass.
//!   Everything else (parameters, gradients, optimizer state, inputs, constants, uniforms,
//!   the loss, the host's tensors) keeps a slot of its own.
//! - **Assignment**: reusable tensors in order of their first access (then larger first,
//!   then by id), each into the free slot (whose occupant's interval has ended) of the
//!   smallest size that holds it, else into the largest free slot grown to fit, else a new
//!   slot. A slot's size is its largest tensor. Deterministic, and simple rather than optimal.
//! - **Clears**: a tensor whose first access is a write that keeps part of the old value
//!   (an accumulation, [`BindingSpec::overwrites`](super::BindingSpec::overwrites) false) is
//!   zeroed right before that step, every time the phase runs: the previous occupant's data
//!   is garbage to it. This is what zeroes activation gradients, once per micro-batch and
//!   only where a gradient accumulates; one first written by an overwrite needs no clear.
//! - **Check** ([`verify`]): the steps are replayed symbolically (two micro-batches then the
//!   optimizer, twice) tracking which tensor last wrote each slot; a step reading a tensor
//!   whose slot another tensor wrote since is a plan error naming both, as is a step binding
//!   two tensors of one slot.
//!
//! What reading an aliased tensor means: its slot holds its value from the step that writes
//! it until the next step that writes another tensor of the slot. Reading it right after its
//! step (what `exec::compare` does) is valid; reading it after the pass generally is not.
//! [`Plan::is_shared`](super::Plan::is_shared) says which tensors share; a test that reads
//! activations after a pass builds with [`Plan::without_reuse`](super::Plan::without_reuse).
use super::{Access, DType, PlanError, Role, Step, TensorDesc, TensorId};

/// A plan's storage: one slot per tensor or group of tensors with disjoint lifetimes, and
/// the clears before steps.
#[derive(Clone, Debug)]
pub struct Memory {
    /// The slot of each tensor.
    slot_of: Vec<usize>,
    /// Each slot's size in elements (its largest tensor's).
    slot_len: Vec<usize>,
    /// How many tensors each slot holds.
    slot_members: Vec<usize>,
    /// Whether each tensor was placed by liveness (else it has a slot of its own).
    reusable: Vec<bool>,
    /// Per phase, per step: the tensors zeroed before the step runs.
    clears: [Vec<Vec<TensorId>>; 3],
    /// The largest number of bytes live at one step (the reusable tensors live there plus
    /// every tensor with a slot of its own), and that step's position in the step order.
    peak: (usize, usize),
}

/// How one step uses one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    Read,
    /// Written whole, old value unread.
    Overwrite,
    /// Written, the old value read or partly kept.
    Update,
}

/// Each binding of a step as (tensor, use).
fn uses(step: &Step) -> impl Iterator<Item = (TensorId, Use)> + '_ {
    step.op.bindings().into_iter().zip(step.args.iter()).map(|(spec, &t)| {
        let u = match (spec.access, spec.overwrites) {
            (Access::ReadWrite, true) => Use::Overwrite,
            (Access::ReadWrite, false) => Use::Update,
            _ => Use::Read,
        };
        (t, u)
    })
}

/// The steps of the three phases in running order, each with its phase index.
fn linear(steps: &[Vec<Step>; 3]) -> Vec<(usize, usize, &Step)> {
    steps.iter().enumerate().flat_map(|(p, list)| list.iter().enumerate().map(move |(i, s)| (p, i, s))).collect()
}

/// Each tensor's first and last access (positions in [`linear`] order) and whether the
/// first is an update.
#[derive(Clone, Copy, Debug)]
struct Interval {
    first: usize,
    last: usize,
    first_use: Use,
}

fn intervals(n_tensors: usize, order: &[(usize, usize, &Step)]) -> Vec<Option<Interval>> {
    let mut out: Vec<Option<Interval>> = vec![None; n_tensors];
    for (pos, (_, _, step)) in order.iter().enumerate() {
        for (t, u) in uses(step) {
            match &mut out[t] {
                Some(iv) => iv.last = pos,
                None => out[t] = Some(Interval { first: pos, last: pos, first_use: u }),
            }
        }
    }
    out
}

/// Whether a tensor's role lets it share storage (before looking at its accesses).
fn reusable_role(t: &TensorDesc) -> bool {
    matches!(t.role, Role::Activation | Role::ActGrad | Role::Scratch) && t.dtype == DType::F32
}

impl Memory {
    /// Every tensor in a slot of its own and no clears (single-op plans, whose tests set
    /// every binding themselves).
    pub(super) fn separate(tensors: &[TensorDesc], steps: &[Vec<Step>; 3]) -> Memory {
        Self::own_slots(tensors, [0, 1, 2].map(|p| vec![Vec::new(); steps[p].len()]), 0)
    }

    /// Liveness, the assignment to slots, the clears, and the check (see the module doc);
    /// `host` are the tensors the host reads or writes.
    pub(super) fn plan(tensors: &[TensorDesc], steps: &[Vec<Step>; 3], host: &[TensorId]) -> Result<Memory, PlanError> {
        let order = linear(steps);
        let live = intervals(tensors.len(), &order);
        let reusable = |t: TensorId| {
            reusable_role(&tensors[t])
                && !host.contains(&t)
                && live[t].is_some_and(|iv| matches!(iv.first_use, Use::Overwrite | Use::Update))
        };
        // Clears: a per-pass tensor first written by an update starts from zero.
        let mut clears = [0, 1, 2].map(|p| vec![Vec::new(); steps[p].len()]);
        for (t, iv) in live.iter().enumerate() {
            if let Some(iv) = iv {
                if reusable_role(&tensors[t]) && iv.first_use == Use::Update {
                    let (p, i, _) = order[iv.first];
                    clears[p][i].push(t);
                }
            }
        }
        // Slots: every kept tensor first, in id order, then the reusable ones.
        let mut slot_of = vec![usize::MAX; tensors.len()];
        let mut slot_len = Vec::new();
        let mut slot_members = Vec::new();
        for t in (0..tensors.len()).filter(|&t| !reusable(t)) {
            slot_of[t] = slot_len.len();
            slot_len.push(tensors[t].numel());
            slot_members.push(1);
        }
        let mut queue: Vec<TensorId> = (0..tensors.len()).filter(|&t| reusable(t)).collect();
        let first = |t: TensorId| live[t].expect("reusable tensors are accessed").first;
        let last = |t: TensorId| live[t].expect("reusable tensors are accessed").last;
        queue.sort_by_key(|&t| (first(t), std::cmp::Reverse(tensors[t].numel()), t));
        // The shared slots: (slot, last position of its current occupant).
        let mut shared: Vec<(usize, usize)> = Vec::new();
        for t in queue {
            let (start, len) = (first(t), tensors[t].numel());
            let free: Vec<(usize, usize)> =
                shared.iter().enumerate().filter(|&(_, &(_, busy))| busy < start).map(|(k, &(s, _))| (k, s)).collect();
            let fitting = free.iter().filter(|&&(_, s)| slot_len[s] >= len).min_by_key(|&&(_, s)| slot_len[s]);
            let chosen = fitting.or_else(|| free.iter().max_by_key(|&&(_, s)| slot_len[s])).map(|&(k, _)| k);
            let k = match chosen {
                Some(k) => k,
                None => {
                    slot_len.push(0);
                    slot_members.push(0);
                    shared.push((slot_len.len() - 1, 0));
                    shared.len() - 1
                }
            };
            let s = shared[k].0;
            slot_len[s] = slot_len[s].max(len);
            slot_members[s] += 1;
            shared[k].1 = last(t);
            slot_of[t] = s;
        }
        let peak = peak(tensors, &live, &reusable, order.len());
        let reusable = (0..tensors.len()).map(reusable).collect();
        let memory = Memory { slot_of, slot_len, slot_members, reusable, clears, peak };
        verify(tensors, steps, &memory)?;
        Ok(memory)
    }

    /// The same clears with every tensor in a slot of its own.
    pub(super) fn without_reuse(&self, tensors: &[TensorDesc]) -> Memory {
        Self::own_slots(tensors, self.clears.clone(), self.peak.1)
    }

    /// Every tensor in a slot of its own, with `clears`; the peak is then everything, at
    /// `peak_step`.
    fn own_slots(tensors: &[TensorDesc], clears: [Vec<Vec<TensorId>>; 3], peak_step: usize) -> Memory {
        let total = tensors.iter().map(|t| t.numel() * 4).sum();
        Memory {
            slot_of: (0..tensors.len()).collect(),
            slot_len: tensors.iter().map(TensorDesc::numel).collect(),
            slot_members: vec![1; tensors.len()],
            reusable: vec![false; tensors.len()],
            clears,
            peak: (total, peak_step),
        }
    }

    /// An assignment given outright, without clears and unchecked (see
    /// [`Plan::with_slots`](super::Plan::with_slots)): `slot_of[t]` for every tensor.
    pub(super) fn with_slots(tensors: &[TensorDesc], steps: &[Vec<Step>; 3], slot_of: Vec<usize>) -> Memory {
        let slots = slot_of.iter().max().map_or(0, |&s| s + 1);
        let mut slot_len = vec![0; slots];
        let mut slot_members = vec![0; slots];
        for (t, &s) in slot_of.iter().enumerate() {
            slot_len[s] = slot_len[s].max(tensors[t].numel());
            slot_members[s] += 1;
        }
        let mut memory = Memory::separate(tensors, steps);
        memory.slot_of = slot_of;
        memory.slot_len = slot_len;
        memory.slot_members = slot_members;
        memory
    }

    /// Takes `other`'s clears (and its record of which tensors liveness placed).
    pub(super) fn keep_clears(&mut self, other: &Memory) {
        self.clears = other.clears.clone();
        self.reusable = other.reusable.clone();
    }

    /// The slot holding tensor `t`.
    pub fn slot(&self, t: TensorId) -> usize {
        self.slot_of[t]
    }
    /// Each slot's size in elements.
    pub fn slot_lens(&self) -> &[usize] {
        &self.slot_len
    }
    /// Whether `t` shares its slot with another tensor (so its value lasts only until the
    /// next write of another of the slot's tensors).
    pub fn is_shared(&self, t: TensorId) -> bool {
        self.slot_members[self.slot_of[t]] > 1
    }
    /// The tensors zeroed right before step `index` of phase `phase` (by its index).
    pub fn clears(&self, phase: usize, index: usize) -> &[TensorId] {
        &self.clears[phase][index]
    }
    /// Bytes allocated: every slot's size.
    pub fn bytes(&self) -> usize {
        self.slot_len.iter().map(|n| n * 4).sum()
    }
    /// The most bytes live at one step, and that step's position in running order.
    pub fn peak(&self) -> (usize, usize) {
        self.peak
    }
}

/// The most bytes live at once: the tensors with slots of their own always, a reusable
/// tensor from its first access to its last.
fn peak(
    tensors: &[TensorDesc],
    live: &[Option<Interval>],
    reusable: &dyn Fn(TensorId) -> bool,
    positions: usize,
) -> (usize, usize) {
    let kept: usize = (0..tensors.len()).filter(|&t| !reusable(t)).map(|t| tensors[t].numel() * 4).sum();
    let mut delta = vec![0i64; positions + 1];
    for t in (0..tensors.len()).filter(|&t| reusable(t)) {
        let iv = live[t].expect("reusable tensors are accessed");
        delta[iv.first] += (tensors[t].numel() * 4) as i64;
        delta[iv.last + 1] -= (tensors[t].numel() * 4) as i64;
    }
    let (mut at, mut best) = (0i64, (kept, 0));
    for (pos, d) in delta.iter().take(positions).enumerate() {
        at += d;
        if kept + at as usize > best.0 {
            best = (kept + at as usize, pos);
        }
    }
    best
}

/// The tensors live at position `pos` of the running order (a reusable tensor within its
/// interval; those with slots of their own are not listed), largest first.
pub fn live_at(plan: &super::Plan, pos: usize) -> Vec<TensorId> {
    let order = linear(&plan.steps);
    let live = intervals(plan.tensors.len(), &order);
    let mut out: Vec<TensorId> = (0..plan.tensors.len())
        .filter(|&t| plan.memory.reusable[t])
        .filter(|&t| live[t].is_some_and(|iv| iv.first <= pos && pos <= iv.last))
        .collect();
    out.sort_by_key(|&t| (std::cmp::Reverse(plan.tensors[t].numel()), t));
    out
}

/// The phase and step at position `pos` of the running order.
pub fn position(plan: &super::Plan, pos: usize) -> (super::Phase, usize) {
    let (p, i, _) = linear(&plan.steps)[pos];
    (super::Phase::ALL[p], i)
}

/// Replays the steps symbolically, as a run does (two micro-batches' forward and backward,
/// the optimizer, then once more), with every slot remembering the tensor (and step) that
/// last wrote it: a read of a tensor whose slot another tensor wrote since its own last
/// write, or a step binding two tensors of one slot, is an error. Tensors with slots of
/// their own are not tracked (nothing else writes their storage).
pub fn verify(tensors: &[TensorDesc], steps: &[Vec<Step>; 3], memory: &Memory) -> Result<(), PlanError> {
    let offsets = [0, steps[0].len(), steps[0].len() + steps[1].len()];
    let mut owner: Vec<Option<(TensorId, usize)>> = vec![None; memory.slot_len.len()];
    let label = |p: usize, i: usize| steps[p][i].op.kernel().label();
    let name = |t: TensorId| tensors[t].name.as_str();
    for &p in &[0, 1, 0, 1, 2, 0, 1, 2] {
        for (i, step) in steps[p].iter().enumerate() {
            let at = offsets[p] + i;
            let fail = |problem: String| PlanError::Step { step: at, label: label(p, i), problem };
            for &t in memory.clears(p, i) {
                owner[memory.slot(t)] = Some((t, at));
            }
            let bound: Vec<(TensorId, Use)> = uses(step).collect();
            for (k, &(a, _)) in bound.iter().enumerate() {
                if let Some(&(b, _)) = bound[..k].iter().find(|&&(b, _)| b != a && memory.slot(b) == memory.slot(a)) {
                    return Err(fail(format!(
                        "binds {} and {}, which share slot {}",
                        name(b),
                        name(a),
                        memory.slot(a)
                    )));
                }
            }
            for &(t, u) in &bound {
                if u == Use::Overwrite || !memory.is_shared(t) {
                    continue;
                }
                match owner[memory.slot(t)] {
                    Some((o, _)) if o == t => {}
                    Some((o, w)) => {
                        return Err(fail(format!(
                            "reads {} but its slot {} was last written by {} (plan step {w}) since",
                            name(t),
                            memory.slot(t),
                            name(o)
                        )))
                    }
                    None => return Err(fail(format!("reads {} before anything wrote its slot", name(t)))),
                }
            }
            for &(t, u) in &bound {
                if u != Use::Read {
                    owner[memory.slot(t)] = Some((t, at));
                }
            }
        }
    }
    Ok(())
}

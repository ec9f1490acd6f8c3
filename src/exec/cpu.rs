//! The CPU executor: interprets a plan with the reference ops. In f32 (the default) it is
//! the reference the GPU executor is checked against, and it runs anywhere; in f64 it is what
//! the whole-model finite-difference check differentiates. Slow.
//!
//! Storage is the plan's [`Memory`](crate::plan::memory::Memory): one vector per slot, a
//! tensor the first `numel` values of its slot, so tensors with disjoint lifetimes share
//! storage here as on the GPU and the model tests exercise the plan's liveness (a tensor
//! read after its slot was reused would give a wrong gradient). The plan's clears run right
//! before their steps.
use super::{ExecError, Executor, HostData};
use crate::ops::Real;
use crate::plan::op::In;
use crate::plan::{Access, DType, Phase, Plan, TensorId};

/// A tensor's host storage.
enum Storage<R> {
    F(Vec<R>),
    U(Vec<u32>),
}

/// A tensor's part of its slot, to write.
enum ViewMut<'a, R> {
    F(&'a mut [R]),
    U(&'a mut [u32]),
}

/// Interprets a plan on the CPU in the float type `R`.
pub struct CpuExecutor<R: Real = f32> {
    plan: Plan,
    /// One per slot of the plan's memory.
    slots: Vec<Storage<R>>,
}

impl CpuExecutor<f32> {
    /// An f32 executor: every tensor allocated (zeroed), the plan's constants filled.
    pub fn new(plan: &Plan) -> Self {
        Self::in_precision(plan)
    }
}

impl<R: Real> CpuExecutor<R> {
    /// An executor in `R` (`CpuExecutor::<f64>::in_precision(&plan)`): every tensor
    /// allocated (zeroed), the plan's constants filled.
    pub fn in_precision(plan: &Plan) -> Self {
        let memory = plan.memory();
        let lens = memory.slot_lens();
        // A slot of its own keeps its tensor's type; shared slots hold f32 tensors only.
        let mut dtypes = vec![DType::F32; lens.len()];
        for (t, desc) in plan.tensors.iter().enumerate() {
            if desc.dtype == DType::U32 {
                dtypes[memory.slot(t)] = DType::U32;
            }
        }
        let slots = lens
            .iter()
            .zip(&dtypes)
            .map(|(&n, dtype)| match dtype {
                DType::F32 => Storage::F(vec![R::zero(); n]),
                DType::U32 => Storage::U(vec![0; n]),
            })
            .collect();
        let mut ex = CpuExecutor { plan: plan.clone(), slots };
        for (id, data) in &plan.constants {
            ex.write(*id, HostData::F32(data)).expect("the plan's constants fit their tensors");
        }
        ex
    }

    /// Tensor `t`'s storage: the first `numel` values of its slot.
    fn view(&self, t: TensorId) -> In<'_, R> {
        let n = self.plan.tensors[t].numel();
        match &self.slots[self.plan.memory().slot(t)] {
            Storage::F(v) => In::F(&v[..n]),
            Storage::U(v) => In::U(&v[..n]),
        }
    }

    fn view_mut(&mut self, t: TensorId) -> ViewMut<'_, R> {
        let n = self.plan.tensors[t].numel();
        match &mut self.slots[self.plan.memory().slot(t)] {
            Storage::F(v) => ViewMut::F(&mut v[..n]),
            Storage::U(v) => ViewMut::U(&mut v[..n]),
        }
    }

    /// Writes a float tensor in the executor's own precision.
    pub fn write_real(&mut self, t: TensorId, data: &[R]) {
        match self.view_mut(t) {
            ViewMut::F(dst) => dst.copy_from_slice(data),
            ViewMut::U(_) => panic!("write to {}: it holds ids", self.plan.tensors[t].name),
        }
    }

    /// A float tensor in the executor's own precision (of a shared tensor, see
    /// [`Plan::is_shared`]: valid only until another tensor of its slot is written).
    pub fn read_real(&self, t: TensorId) -> &[R] {
        match self.view(t) {
            In::F(v) => v,
            In::U(_) => panic!("read of {}: it holds ids", self.plan.tensors[t].name),
        }
    }

    fn run_step(&mut self, phase: Phase, index: usize) {
        let step = self.plan.steps(phase)[index].clone();
        for &t in self.plan.clears_before(phase, index).to_vec().iter() {
            self.zero(t);
        }
        let specs = step.op.bindings();
        // Outputs are taken out of their slots (the plan checked that one step's tensors
        // are in distinct slots), cut to the tensor's length, and put back after.
        let mut outs = Vec::new();
        for (spec, &t) in specs.iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                let n = self.plan.tensors[t].numel();
                match &mut self.slots[self.plan.memory().slot(t)] {
                    Storage::F(v) => {
                        let mut out = std::mem::take(v);
                        out.truncate(n);
                        outs.push(out);
                    }
                    Storage::U(_) => unreachable!("plan checked: outputs are f32"),
                }
            }
        }
        {
            let ins: Vec<In<'_, R>> = specs
                .iter()
                .zip(&step.args)
                .filter(|(s, _)| s.access != Access::ReadWrite)
                .map(|(_, &t)| self.view(t))
                .collect();
            step.op.run_cpu(&mut outs, &ins);
        }
        let mut outs = outs.into_iter();
        for (spec, &t) in specs.iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                let slot = self.plan.memory().slot(t);
                let mut out = outs.next().expect("one output per read-write binding");
                // The rest of a larger slot belongs to no live tensor: zeros will do.
                out.resize(self.plan.memory().slot_lens()[slot], R::zero());
                self.slots[slot] = Storage::F(out);
            }
        }
    }

    fn zero(&mut self, t: TensorId) {
        match self.view_mut(t) {
            ViewMut::F(v) => v.fill(R::zero()),
            ViewMut::U(v) => v.fill(0),
        }
    }
}

impl<R: Real> Executor for CpuExecutor<R> {
    fn write(&mut self, t: TensorId, data: HostData<'_>) -> Result<(), ExecError> {
        let desc = self.plan.tensors[t].clone();
        let fail = |message: String| ExecError::Write { tensor: desc.name.clone(), message };
        if data.len() != desc.numel() {
            return Err(fail(format!("{} values for a tensor of {}", data.len(), desc.numel())));
        }
        match (self.view_mut(t), data) {
            (ViewMut::F(dst), HostData::F32(src)) => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = R::from_f64(s as f64);
                }
            }
            (ViewMut::U(dst), HostData::U32(src)) => dst.copy_from_slice(src),
            _ => return Err(fail(format!("wrong element type for a {:?} tensor", desc.dtype))),
        }
        Ok(())
    }

    fn read(&mut self, t: TensorId) -> Result<Vec<f32>, ExecError> {
        Ok(match self.view(t) {
            In::F(v) => v.iter().map(|x| x.to_f64() as f32).collect(),
            In::U(v) => v.iter().map(|&x| x as f32).collect(),
        })
    }

    fn clear(&mut self, ts: &[TensorId]) -> Result<(), ExecError> {
        for &t in ts {
            self.zero(t);
        }
        Ok(())
    }

    fn run(&mut self, phase: Phase, range: std::ops::Range<usize>) -> Result<(), ExecError> {
        for i in range {
            self.run_step(phase, i);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match std::any::type_name::<R>() {
            "f32" => "cpu reference".into(),
            other => format!("cpu reference ({other})"),
        }
    }
}

//! The CPU executor: interprets a plan with the reference ops. In f32 (the default) it is
//! the reference the GPU executor is checked against, and it runs anywhere; in f64 it is what
//! the whole-model finite-difference check differentiates. Slow.
use super::{ExecError, Executor, HostData};
use crate::ops::Real;
use crate::plan::op::In;
use crate::plan::{Access, DType, Phase, Plan, TensorId};

/// A tensor's host storage.
enum Storage<R> {
    F(Vec<R>),
    U(Vec<u32>),
}

/// Interprets a plan on the CPU in the float type `R`.
pub struct CpuExecutor<R: Real = f32> {
    plan: Plan,
    tensors: Vec<Storage<R>>,
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
        let tensors = plan
            .tensors
            .iter()
            .map(|t| match t.dtype {
                DType::F32 => Storage::F(vec![R::zero(); t.numel()]),
                DType::U32 => Storage::U(vec![0; t.numel()]),
            })
            .collect();
        let mut ex = CpuExecutor { plan: plan.clone(), tensors };
        for (id, data) in &plan.constants {
            ex.write(*id, HostData::F32(data)).expect("the plan's constants fit their tensors");
        }
        ex
    }

    /// Writes a float tensor in the executor's own precision.
    pub fn write_real(&mut self, t: TensorId, data: &[R]) {
        match &mut self.tensors[t] {
            Storage::F(dst) => dst.copy_from_slice(data),
            Storage::U(_) => panic!("write to {}: it holds ids", self.plan.tensors[t].name),
        }
    }

    /// A float tensor in the executor's own precision.
    pub fn read_real(&self, t: TensorId) -> &[R] {
        match &self.tensors[t] {
            Storage::F(v) => v,
            Storage::U(_) => panic!("read of {}: it holds ids", self.plan.tensors[t].name),
        }
    }

    fn run_step(&mut self, phase: Phase, index: usize) {
        let step = self.plan.steps(phase)[index].clone();
        let specs = step.op.bindings();
        let mut outs = Vec::new();
        for (spec, &t) in specs.iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                match &mut self.tensors[t] {
                    Storage::F(v) => outs.push(std::mem::take(v)),
                    Storage::U(_) => unreachable!("plan checked: outputs are f32"),
                }
            }
        }
        {
            let ins: Vec<In<'_, R>> = specs
                .iter()
                .zip(&step.args)
                .filter(|(s, _)| s.access != Access::ReadWrite)
                .map(|(_, &t)| match &self.tensors[t] {
                    Storage::F(v) => In::F(v),
                    Storage::U(v) => In::U(v),
                })
                .collect();
            step.op.run_cpu(&mut outs, &ins);
        }
        let mut outs = outs.into_iter();
        for (spec, &t) in specs.iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                self.tensors[t] = Storage::F(outs.next().expect("one output per read-write binding"));
            }
        }
    }
}

impl<R: Real> Executor for CpuExecutor<R> {
    fn write(&mut self, t: TensorId, data: HostData<'_>) -> Result<(), ExecError> {
        let desc = &self.plan.tensors[t];
        let fail = |message: String| ExecError::Write { tensor: desc.name.clone(), message };
        if data.len() != desc.numel() {
            return Err(fail(format!("{} values for a tensor of {}", data.len(), desc.numel())));
        }
        match (&mut self.tensors[t], data) {
            (Storage::F(dst), HostData::F32(src)) => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = R::from_f64(s as f64);
                }
            }
            (Storage::U(dst), HostData::U32(src)) => dst.copy_from_slice(src),
            _ => return Err(fail(format!("wrong element type for a {:?} tensor", desc.dtype))),
        }
        Ok(())
    }

    fn read(&mut self, t: TensorId) -> Result<Vec<f32>, ExecError> {
        Ok(match &self.tensors[t] {
            Storage::F(v) => v.iter().map(|x| x.to_f64() as f32).collect(),
            Storage::U(v) => v.iter().map(|&x| x as f32).collect(),
        })
    }

    fn clear(&mut self, ts: &[TensorId]) -> Result<(), ExecError> {
        for &t in ts {
            match &mut self.tensors[t] {
                Storage::F(v) => v.fill(R::zero()),
                Storage::U(v) => v.fill(0),
            }
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

//! The CPU executor: interprets a plan with the reference ops, in f32. Slow; it is the
//! reference the GPU executor is checked against, and it runs anywhere.
use super::dispatch::{run_cpu, In};
use super::{Executor, HostData};
use crate::plan::{Access, DType, Phase, Plan, TensorId};

/// A tensor's host storage.
enum Storage {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

/// Interprets a plan on the CPU.
pub struct CpuExecutor {
    plan: Plan,
    tensors: Vec<Storage>,
}

impl CpuExecutor {
    /// Allocates every tensor (zeroed) and fills the plan's constants.
    pub fn new(plan: &Plan) -> Self {
        let tensors = plan
            .tensors
            .iter()
            .map(|t| match t.dtype {
                DType::F32 => Storage::F32(vec![0.0; t.numel()]),
                DType::U32 => Storage::U32(vec![0; t.numel()]),
            })
            .collect();
        let mut ex = CpuExecutor { plan: plan.clone(), tensors };
        for (id, data) in &plan.constants {
            ex.write(*id, HostData::F32(data));
        }
        ex
    }

    fn run_step(&mut self, phase: Phase, index: usize) {
        let step = self.plan.steps(phase)[index].clone();
        let specs = step.op.bindings();
        let mut outs = Vec::new();
        for (spec, &t) in specs.iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                match &mut self.tensors[t] {
                    Storage::F32(v) => outs.push(std::mem::take(v)),
                    Storage::U32(_) => unreachable!("plan checked: outputs are f32"),
                }
            }
        }
        {
            let ins: Vec<In<'_>> = specs
                .iter()
                .zip(&step.args)
                .filter(|(s, _)| s.access != Access::ReadWrite)
                .map(|(_, &t)| match &self.tensors[t] {
                    Storage::F32(v) => In::F32(v),
                    Storage::U32(v) => In::U32(v),
                })
                .collect();
            run_cpu(&step.op, &mut outs, &ins);
        }
        let mut outs = outs.into_iter();
        for (spec, &t) in specs.iter().zip(&step.args) {
            if spec.access == Access::ReadWrite {
                self.tensors[t] = Storage::F32(outs.next().expect("one output per read-write binding"));
            }
        }
    }
}

impl Executor for CpuExecutor {
    fn write(&mut self, t: TensorId, data: HostData<'_>) {
        match (&mut self.tensors[t], data) {
            (Storage::F32(dst), HostData::F32(src)) => dst.copy_from_slice(src),
            (Storage::U32(dst), HostData::U32(src)) => dst.copy_from_slice(src),
            _ => panic!("write to {}: wrong element type", self.plan.tensors[t].name),
        }
    }

    fn read(&mut self, t: TensorId) -> Vec<f32> {
        match &self.tensors[t] {
            Storage::F32(v) => v.clone(),
            Storage::U32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    fn clear(&mut self, ts: &[TensorId]) {
        for &t in ts {
            match &mut self.tensors[t] {
                Storage::F32(v) => v.fill(0.0),
                Storage::U32(v) => v.fill(0),
            }
        }
    }

    fn run(&mut self, phase: Phase, range: std::ops::Range<usize>) {
        for i in range {
            self.run_step(phase, i);
        }
    }

    fn describe(&self) -> String {
        "cpu reference".into()
    }
}

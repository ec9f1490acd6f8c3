//! The plan's own accounting: per op kind, how many dispatches an optimizer step makes, how
//! many workgroups each launches, and the FLOPs and global-memory bytes of the kernels as
//! written (each op's [`OpDef::cost`](super::OpDef::cost), whose convention is [`Cost`]'s),
//! with the step's totals and the dispatches too narrow to fill a large GPU. Computed from
//! the plan alone (no wgpu, no adapter), so a record-scale config can be judged on any
//! machine: `wgolf info --config C --kernels` prints [`Account::markdown`].
//!
//! Where `gpu::coop` runs the cooperative-matrix kernel in place of a [`Matmul`](super::Matmul) or a
//! [`MatmulPartial`](super::MatmulPartial),
//! the numbers here are still the portable `matmul.wgsl`'s: the accounting describes the
//! plan's kernels, not the adapter's choice.
use super::op::{Cost, Op};
use super::{Phase, Plan};
use crate::units::thousands;

/// Streaming multiprocessors of a large data-center GPU (an H100 SXM has 132): a dispatch of
/// fewer workgroups leaves SMs idle however small its workgroups are, since one workgroup
/// runs on one SM.
pub const LARGE_GPU_SMS: u64 = 132;

/// Work at or below both of these is negligible: 1 MiB is a third of a microsecond of a
/// whole H100's bandwidth (3.35 TB/s) and 2^20 FLOPs far less (~60 TFLOP/s f32), both below
/// the few microseconds a dispatch costs to launch at all. Such dispatches (the clip coefficient, a loss sum over a micro-batch's
/// rows, a small parameter's gradient norm) are latency to remove by fusion, not a grid to
/// widen, so they are not flagged however few workgroups they launch. Above either, running
/// on fewer than [`LARGE_GPU_SMS`] SMs costs real time: one SM's share of the bandwidth is
/// ~25 GB/s, 40 us per MiB.
pub const NEGLIGIBLE_BYTES: u64 = 1 << 20;
/// See [`NEGLIGIBLE_BYTES`].
pub const NEGLIGIBLE_FLOPS: u64 = 1 << 20;

/// Whether a dispatch's work is negligible (see [`NEGLIGIBLE_BYTES`]).
pub fn is_negligible(cost: &Cost) -> bool {
    cost.flops <= NEGLIGIBLE_FLOPS && cost.bytes() <= NEGLIGIBLE_BYTES
}

/// The flag rule: fewer workgroups than a large GPU has SMs, and work that is not negligible.
pub fn underfills(workgroups: u64, cost: &Cost) -> bool {
    workgroups < LARGE_GPU_SMS && !is_negligible(cost)
}

/// The workgroups one dispatch of `op` launches (the product of its grid).
pub fn workgroups(op: &Op) -> u64 {
    op.kernel().workgroups.iter().map(|&w| u64::from(w)).product()
}

/// How many times a phase's steps run per optimizer step: the forward and backward passes
/// once per micro-batch, the optimizer once.
pub fn runs_per_step(phase: Phase, grad_accum: usize) -> u64 {
    match phase {
        Phase::Forward | Phase::Backward => grad_accum as u64,
        Phase::Optimizer => 1,
    }
}

/// One op kind's share of an optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct KindRow {
    /// [`Op::kind`].
    pub kind: &'static str,
    /// The kernel's entry point.
    pub entry: &'static str,
    /// Dispatches per optimizer step.
    pub dispatches: u64,
    pub min_workgroups: u64,
    pub max_workgroups: u64,
    /// The summed cost of those dispatches.
    pub cost: Cost,
    /// How many of the dispatches are flagged by [`underfills`].
    pub flagged: u64,
    /// Distinct pipelines among them (shader, entry point and override constants,
    /// [`KernelCall::pipeline_label`](super::KernelCall::pipeline_label)): each is compiled
    /// when the executor is built, and override constants that differ per site (sizes,
    /// offsets) multiply them; per-dispatch parameters
    /// ([`KernelCall::params`](super::KernelCall::params)) do not.
    pub pipelines: u64,
}

/// One flagged kernel shape: the dispatches of one phase and kind with the same grid and
/// cost, each below [`LARGE_GPU_SMS`] workgroups with work that is not negligible.
#[derive(Clone, Debug, PartialEq)]
pub struct Flagged {
    pub phase: Phase,
    pub kind: &'static str,
    /// [`KernelCall::label`](super::KernelCall::label), with `*` for an override constant or
    /// parameter that differs between the dispatches grouped here
    /// (`channel_dot[COUNT=50331648,GROUP=1,CHANNELS=512,out_offset=*]`).
    pub label: String,
    /// Dispatches of it per optimizer step.
    pub dispatches: u64,
    pub workgroups: u64,
    /// The cost of one dispatch.
    pub cost: Cost,
}

/// The accounting of one plan at one `grad_accum`.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub grad_accum: usize,
    /// One row per op kind present, sorted by bytes moved (most first), then kind.
    pub rows: Vec<KindRow>,
    /// Per phase: dispatches and cost per optimizer step.
    pub phases: Vec<(Phase, u64, Cost)>,
    /// Dispatches per optimizer step.
    pub dispatches: u64,
    pub total: Cost,
    /// Sorted by bytes moved per step (most first).
    pub flagged: Vec<Flagged>,
    /// Distinct pipelines of the whole plan (see [`KindRow::pipelines`]).
    pub pipelines: u64,
}

/// Accounts for one optimizer step of `plan` with `grad_accum` micro-batches.
pub fn account(plan: &Plan, grad_accum: usize) -> Account {
    let mut rows: Vec<KindRow> = Vec::new();
    let mut phases = Vec::new();
    let mut flagged: Vec<Flagged> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for phase in Phase::ALL {
        let runs = runs_per_step(phase, grad_accum);
        let mut phase_cost = Cost::default();
        let steps = plan.steps(phase);
        for step in steps {
            let op = &step.op;
            let call = op.kernel();
            let wg = workgroups(op);
            let cost = op.cost();
            let flag = underfills(wg, &cost);
            phase_cost += cost.times(runs);
            let row = match rows.iter_mut().position(|r| r.kind == op.kind()) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(KindRow {
                        kind: op.kind(),
                        entry: call.entry,
                        dispatches: 0,
                        min_workgroups: wg,
                        max_workgroups: wg,
                        cost: Cost::default(),
                        flagged: 0,
                        pipelines: 0,
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.dispatches += runs;
            if seen.insert(call.pipeline_label()) {
                row.pipelines += 1;
            }
            row.min_workgroups = row.min_workgroups.min(wg);
            row.max_workgroups = row.max_workgroups.max(wg);
            row.cost += cost.times(runs);
            if flag {
                row.flagged += runs;
                let same =
                    |f: &&mut Flagged| f.phase == phase && f.kind == op.kind() && f.workgroups == wg && f.cost == cost;
                match flagged.iter_mut().find(same) {
                    Some(f) => {
                        f.dispatches += runs;
                        f.label = common_label(&f.label, &call.label());
                    }
                    None => flagged.push(Flagged {
                        phase,
                        kind: op.kind(),
                        label: call.label(),
                        dispatches: runs,
                        workgroups: wg,
                        cost,
                    }),
                }
            }
        }
        phases.push((phase, runs * steps.len() as u64, phase_cost));
    }
    rows.sort_by(|a, b| b.cost.bytes().cmp(&a.cost.bytes()).then(a.kind.cmp(b.kind)));
    flagged.sort_by(|a, b| {
        let per_step = |f: &Flagged| f.cost.bytes() * f.dispatches;
        per_step(b).cmp(&per_step(a)).then_with(|| a.label.cmp(&b.label))
    });
    let total = rows.iter().fold(Cost::default(), |acc, r| acc + r.cost);
    let dispatches = rows.iter().map(|r| r.dispatches).sum();
    let pipelines = seen.len() as u64;
    Account { grad_accum, rows, phases, dispatches, total, flagged, pipelines }
}

impl Account {
    /// Flagged dispatches per optimizer step.
    pub fn flagged_dispatches(&self) -> u64 {
        self.flagged.iter().map(|f| f.dispatches).sum()
    }

    /// The accounting as markdown: the per-kind table with the step's totals, the phases,
    /// and the flagged kernels.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let ga = self.grad_accum;
        s.push_str(&format!(
            "Kernel accounting per optimizer step ({ga} micro-batches: forward and backward run {ga} times, \
             the optimizer once). FLOPs and bytes are the kernels as written: every global load and store \
             the shader issues, no cache credit (src/plan/op.rs, `Cost`); Matmul is the portable matmul.wgsl \
             even where the cooperative-matrix kernel replaces it.\n\n"
        ));
        s.push_str(
            "| op kind | entry | dispatches | workgroups (min-max) | GFLOP | GB read | GB written | FLOP/byte | flagged | pipelines |\n",
        );
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let wg = if r.min_workgroups == r.max_workgroups {
                thousands(r.min_workgroups)
            } else {
                format!("{}-{}", thousands(r.min_workgroups), thousands(r.max_workgroups))
            };
            s.push_str(&format!(
                "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.kind,
                r.entry,
                thousands(r.dispatches),
                wg,
                giga(r.cost.flops),
                giga(r.cost.bytes_read),
                giga(r.cost.bytes_written),
                intensity(&r.cost),
                thousands(r.flagged),
                thousands(r.pipelines)
            ));
        }
        let t = &self.total;
        s.push_str(&format!(
            "| **step** | | **{}** | | **{}** | **{}** | **{}** | **{}** | **{}** | **{}** |\n\n",
            thousands(self.dispatches),
            giga(t.flops),
            giga(t.bytes_read),
            giga(t.bytes_written),
            intensity(t),
            thousands(self.flagged_dispatches()),
            thousands(self.pipelines)
        ));
        s.push_str("| phase | runs per step | dispatches | GFLOP | GB read | GB written |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for &(phase, dispatches, c) in &self.phases {
            s.push_str(&format!(
                "| {phase:?} | {} | {} | {} | {} | {} |\n",
                runs_per_step(phase, ga),
                thousands(dispatches),
                giga(c.flops),
                giga(c.bytes_read),
                giga(c.bytes_written)
            ));
        }
        s.push_str(&format!(
            "\nFlagged: {} dispatches per step launch fewer than {LARGE_GPU_SMS} workgroups (a large GPU's SMs) \
             with work above {} MiB or {} MFLOP (src/plan/cost.rs, `NEGLIGIBLE_BYTES`):\n\n",
            thousands(self.flagged_dispatches()),
            NEGLIGIBLE_BYTES >> 20,
            NEGLIGIBLE_FLOPS >> 20
        ));
        if self.flagged.is_empty() {
            s.push_str("(none)\n");
            return s;
        }
        s.push_str("| phase | kernel | dispatches | workgroups | MFLOP each | MiB each | GB per step |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---:|\n");
        for f in &self.flagged {
            s.push_str(&format!(
                "| {:?} | `{}` | {} | {} | {} | {} | {} |\n",
                f.phase,
                f.label,
                thousands(f.dispatches),
                thousands(f.workgroups),
                one_decimal(f.cost.flops as f64 / 1e6),
                one_decimal(f.cost.bytes() as f64 / (1u64 << 20) as f64),
                giga(f.cost.bytes() * f.dispatches)
            ));
        }
        s
    }
}

/// Two labels of one entry point with `*` for each override value or parameter that differs
/// (`channel_dot[COUNT=8,out_offset=1]` and `..out_offset=2]` give
/// `channel_dot[COUNT=8,out_offset=*]`).
fn common_label(a: &str, b: &str) -> String {
    let split = |l: &str| -> (String, Vec<String>) {
        let (entry, rest) = l.split_once('[').unwrap_or((l, "]"));
        (entry.to_string(), rest.trim_end_matches(']').split(',').map(str::to_string).collect())
    };
    let ((ea, ca), (eb, cb)) = (split(a), split(b));
    if ea != eb || ca.len() != cb.len() {
        return format!("{ea}[*]");
    }
    let consts: Vec<String> = ca
        .iter()
        .zip(&cb)
        .map(|(x, y)| if x == y { x.clone() } else { format!("{}=*", x.split('=').next().unwrap_or(x)) })
        .collect();
    format!("{ea}[{}]", consts.join(","))
}

/// A count in units of 10^9 with one decimal (three below 10), thousands separated.
fn giga(v: u64) -> String {
    let g = v as f64 / 1e9;
    if g < 10.0 {
        return format!("{g:.3}");
    }
    one_decimal(g)
}

/// A non-negative value with one decimal, thousands separated.
fn one_decimal(v: f64) -> String {
    let tenths = (v * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

/// FLOPs per byte moved.
fn intensity(c: &Cost) -> String {
    if c.bytes() == 0 {
        return "-".into();
    }
    format!("{:.2}", c.flops as f64 / c.bytes() as f64)
}

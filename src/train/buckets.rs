//! The parameter gradients in buckets, in the order the backward finishes them, for a
//! data-parallel step that reduces each bucket while the device runs the backward of the
//! layers before it (as DDP does): after the last micro-batch's backward steps `0..end` of a
//! bucket, none of its gradients is written again, so its read-back can be submitted there,
//! and its mean over the ranks computed on the host while the rest of the backward runs.
use crate::plan::{Access, Phase, Plan, Role, TensorId};

/// Gradients that are final once the backward has run steps `0..end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradBucket {
    pub end: usize,
    pub grads: Vec<TensorId>,
}

/// Every parameter gradient of `plan`, in buckets of at least `max_bytes` (the last one
/// smaller) ordered by the backward step that writes each gradient last; `max_bytes == 0`
/// gives one bucket after the whole backward (no overlap). The buckets cover the gradients
/// `plan.with_role(Grad)` lists, each once.
pub fn gradient_buckets(plan: &Plan, max_bytes: usize) -> Vec<GradBucket> {
    let grads = plan.with_role(|r| matches!(r, Role::Grad));
    let backward = plan.steps(Phase::Backward);
    if max_bytes == 0 || grads.is_empty() {
        return vec![GradBucket { end: backward.len(), grads }];
    }
    // The step after which each gradient is final (0: the backward never writes it).
    let mut done_after = vec![0usize; plan.tensors.len()];
    for (i, step) in backward.iter().enumerate() {
        for (&t, spec) in step.args.iter().zip(step.op.bindings()) {
            if spec.access == Access::ReadWrite {
                done_after[t] = i + 1;
            }
        }
    }
    let mut order = grads;
    order.sort_by_key(|&g| done_after[g]);
    let mut buckets = Vec::new();
    let (mut current, mut bytes) = (Vec::new(), 0usize);
    for g in order {
        current.push(g);
        bytes += plan.tensor(g).numel() * 4;
        if bytes >= max_bytes {
            buckets.push(GradBucket { end: done_after[g], grads: std::mem::take(&mut current) });
            bytes = 0;
        }
    }
    if !current.is_empty() {
        let end = current.iter().map(|&g| done_after[g]).max().unwrap_or(0);
        buckets.push(GradBucket { end, grads: current });
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_tiny() -> Plan {
        let cfg = crate::config::Config::load(std::path::Path::new("configs/record-tiny.toml"), &[]).unwrap();
        crate::model::build_plan(&cfg).unwrap()
    }

    /// The steps of the backward that write `t`.
    fn writers(plan: &Plan, t: TensorId) -> Vec<usize> {
        let steps = plan.steps(Phase::Backward);
        (0..steps.len())
            .filter(|&i| {
                let s = &steps[i];
                s.args.iter().zip(s.op.bindings()).any(|(&a, b)| a == t && b.access == Access::ReadWrite)
            })
            .collect()
    }

    #[test]
    fn buckets_cover_every_gradient_once_each_final_at_its_end() {
        let plan = record_tiny();
        let mut all = plan.with_role(|r| matches!(r, Role::Grad));
        all.sort();
        let max_bytes = 100_000;
        let buckets = gradient_buckets(&plan, max_bytes);
        assert!(buckets.len() > 3, "{} buckets of {} gradients", buckets.len(), all.len());
        let mut seen: Vec<TensorId> = buckets.iter().flat_map(|b| b.grads.clone()).collect();
        seen.sort();
        assert_eq!(seen, all, "every gradient in exactly one bucket");
        for (k, b) in buckets.iter().enumerate() {
            let bytes: usize = b.grads.iter().map(|&g| plan.tensor(g).numel() * 4).sum();
            if k + 1 < buckets.len() {
                assert!(bytes >= max_bytes, "bucket {k}: {bytes} bytes");
                assert!(b.end <= buckets[k + 1].end, "buckets in backward order");
            }
            for &g in &b.grads {
                let w = writers(&plan, g);
                assert!(
                    w.iter().all(|&i| i < b.end),
                    "{} written at {w:?}, after bucket {k}'s end {}",
                    plan.tensor(g).name,
                    b.end
                );
            }
        }
        // Overlap needs gradients finished well before the end of the backward.
        assert!(buckets[0].end < plan.steps(Phase::Backward).len() / 2, "first bucket ends at {}", buckets[0].end);
    }

    #[test]
    fn a_zero_bucket_size_is_one_bucket_after_the_backward() {
        let plan = record_tiny();
        let buckets = gradient_buckets(&plan, 0);
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].end, plan.steps(Phase::Backward).len());
        assert_eq!(buckets[0].grads, plan.with_role(|r| matches!(r, Role::Grad)));
    }
}

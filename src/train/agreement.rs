//! The ranks of a data-parallel run hold the same state: every rank applies the same averaged
//! gradients, so their parameters, optimizer state and EMA must stay bit-identical, and rank 0's
//! checkpoint and exported weights then stand for every rank. This checks it where it matters:
//! before each checkpoint and before the final weights are written. Each rank hashes every
//! tensor a checkpoint holds (CRC-32 of its f32 bytes), rank 0's list is broadcast, every rank
//! compares its own against it, and the ranks agree on the outcome (a max all-reduce), so that
//! either all go on or all fail, each differing rank naming its first differing tensor.
use crate::dist::Group;
use crate::exec::Executor;
use crate::plan::Plan;
use anyhow::Result;

/// CRC-32 of each checkpointed tensor's values (as f32 bytes), in plan order, with its name.
pub fn state_digests(plan: &Plan, ex: &mut dyn Executor) -> Result<Vec<(String, u32)>> {
    crate::checkpoint::state_tensors(plan)
        .into_iter()
        .map(|t| Ok((plan.tensor(t).name.clone(), crc32fast::hash(bytemuck::cast_slice(&ex.read(t)?)))))
        .collect()
}

/// Packs digests as little-endian u32s (the names are the plan's, equal on every rank since
/// the group's join compared the plans).
fn pack(digests: &[(String, u32)]) -> Vec<u8> {
    digests.iter().flat_map(|(_, d)| d.to_le_bytes()).collect()
}

/// The first tensor whose digest differs from rank 0's packed list, or a length mismatch.
pub fn first_disagreement(mine: &[(String, u32)], leader: &[u8]) -> Option<String> {
    if leader.len() != mine.len() * 4 {
        return Some(format!("rank 0 has {} state tensors, this rank {}", leader.len() / 4, mine.len()));
    }
    mine.iter().zip(leader.chunks_exact(4)).find_map(|((name, d), theirs)| {
        let theirs = u32::from_le_bytes(theirs.try_into().expect("4 bytes"));
        (*d != theirs).then(|| format!("{name} differs (crc32 {d:08x}, rank 0's {theirs:08x})"))
    })
}

/// Checks that every rank's state equals rank 0's after `step` (`what`: what is about to be
/// written). Every rank of the group must call it at the same point. Returns the number of
/// tensors compared; an error on every rank when any differs.
pub fn check_ranks_agree(
    group: &mut Group,
    plan: &Plan,
    ex: &mut dyn Executor,
    step: usize,
    what: &str,
) -> Result<usize> {
    let mine = state_digests(plan, ex)?;
    let mut leader = pack(&mine);
    group.broadcast_bytes(&mut leader)?;
    let differs = first_disagreement(&mine, &leader);
    // The highest differing rank + 1 (0: all agree), the same on every rank.
    let mut verdict = [differs.as_ref().map_or(0.0, |_| (group.rank() + 1) as f64)];
    group.all_reduce_max_f64(&mut verdict)?;
    let (rank, world) = (group.rank(), group.world());
    if let Some(d) = differs {
        anyhow::bail!("rank {rank} of {world}: after step {step}, before {what}: its state differs from rank 0's: {d}");
    }
    if verdict[0] > 0.0 {
        anyhow::bail!(
            "rank {rank} of {world}: after step {step}, before {what}: rank {} holds state that differs from rank 0's \
             (its error names the tensor); nothing was written",
            verdict[0] as usize - 1
        );
    }
    Ok(mine.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(values: &[u32]) -> Vec<(String, u32)> {
        values.iter().enumerate().map(|(i, &d)| (format!("t{i}"), d)).collect()
    }

    #[test]
    fn equal_state_agrees_and_the_first_difference_is_named() {
        let leader = pack(&digests(&[1, 2, 3]));
        assert_eq!(first_disagreement(&digests(&[1, 2, 3]), &leader), None);
        let d = first_disagreement(&digests(&[1, 9, 8]), &leader).unwrap();
        assert!(d.starts_with("t1 differs"), "{d}");
        let d = first_disagreement(&digests(&[1, 2]), &leader).unwrap();
        assert!(d.contains("rank 0 has 3 state tensors, this rank 2"), "{d}");
    }
}

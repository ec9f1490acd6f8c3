//! Token embedding: a gather forward, a deterministic scatter-add backward.
//!
//! Forward: `out[t, c] = table[ids[t], c]` for t < tokens, c < dim.
//! Backward: `dtable[v, c] += sum over t with ids[t] == v of dout[t, c]`, summed in token
//! order so that the result does not depend on scheduling. The GPU kernel reads the
//! positions of each id from an index the host builds per batch ([`id_index`], a counting
//! sort), so that one workgroup per (table row, 64 columns) sums only its own positions:
//! parallel over the vocabulary and the columns, each sum in position order
//! ([`embedding_bwd_indexed`]).
use super::Real;

/// `out[t, :] = table[ids[t], :]`.
pub fn embedding_fwd<T: Real>(out: &mut [T], table: &[T], ids: &[u32], dim: usize) {
    for (t, &id) in ids.iter().enumerate() {
        let row = id as usize * dim;
        out[t * dim..(t + 1) * dim].copy_from_slice(&table[row..row + dim]);
    }
}

/// `dtable[ids[t], :] += dout[t, :]`, in token order.
pub fn embedding_bwd<T: Real>(dtable: &mut [T], dout: &[T], ids: &[u32], dim: usize) {
    for (t, &id) in ids.iter().enumerate() {
        let row = id as usize * dim;
        for c in 0..dim {
            dtable[row + c] += dout[t * dim + c];
        }
    }
}

/// The positions of `ids` grouped by id, as one u32 array of `vocab + 1 + ids.len()`: the
/// offsets `index[v] .. index[v + 1]` of id `v`'s run, then the runs (positions ascending,
/// so every row's sum keeps token order). An error names the first id not below `vocab`.
pub fn id_index(ids: &[u32], vocab: usize) -> Result<Vec<u32>, String> {
    let mut index = vec![0u32; vocab + 1 + ids.len()];
    for (t, &id) in ids.iter().enumerate() {
        if id as usize >= vocab {
            return Err(format!("id {id} at position {t} is not below the table's {vocab} rows"));
        }
        index[id as usize + 1] += 1;
    }
    for v in 0..vocab {
        index[v + 1] += index[v];
    }
    let mut next: Vec<u32> = index[..vocab].to_vec();
    for (t, &id) in ids.iter().enumerate() {
        let slot = &mut next[id as usize];
        index[vocab + 1 + *slot as usize] = t as u32;
        *slot += 1;
    }
    Ok(index)
}

/// [`embedding_bwd`] from an [`id_index`] of the ids: `dtable[v, :] += sum of dout[t, :]` over
/// id `v`'s positions in order, the sum formed before it is added (as the kernel does).
pub fn embedding_bwd_indexed<T: Real>(dtable: &mut [T], dout: &[T], index: &[u32], vocab: usize, dim: usize) {
    let (offsets, positions) = index.split_at(vocab + 1);
    for v in 0..vocab {
        let run = &positions[offsets[v] as usize..offsets[v + 1] as usize];
        for c in 0..dim {
            let mut acc = T::zero();
            for &t in run {
                acc += dout[t as usize * dim + c];
            }
            dtable[v * dim + c] += acc;
        }
    }
}

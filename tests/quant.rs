//! The quantization rules of record-spec.md section 6, against literals worked out by hand
//! (f32 and fp16 arithmetic).
// The literals are the exact f32/fp16 values the rules give, written out in full on purpose.
#![allow(clippy::excessive_precision)]
use half::f16;
use wgolf::quant::{dequantize, kind_of, quantile_sorted, quantize, Kind, INT8_CLIP_Q, PASSTHROUGH_MAX};

/// A one-row tensor of 65,537 elements (just over the passthrough limit) starting with `head`.
fn row(head: &[f32]) -> Vec<f32> {
    let mut w = vec![0.0; PASSTHROUGH_MAX + 1];
    w[..head.len()].copy_from_slice(head);
    w
}

#[test]
fn the_passthrough_boundary_is_65536_elements() {
    assert_eq!(kind_of("blocks.0.attn.c_q.weight", 65_536), Kind::Fp16);
    assert_eq!(kind_of("blocks.0.attn.c_q.weight", 65_537), Kind::Int6);
    assert_eq!(kind_of("blocks.3.mlp.fc.weight", 65_537), Kind::Int6);
    assert_eq!(kind_of("bigram.proj.weight", 65_536), Kind::Fp16);
    assert_eq!(kind_of("tok_emb.weight", 65_537), Kind::Int8);
    assert_eq!(kind_of("bigram.embed.weight", 262_144), Kind::Int8);
    // A passthrough tensor is its fp16 rounding.
    let t = quantize("bigram.proj.weight", &[512, 128], &vec![0.1; 65_536]);
    assert_eq!(t.kind, Kind::Fp16);
    assert!(dequantize(&t).iter().all(|&v| v == 0.0999755859375));
}

#[test]
fn int6_rounds_ties_to_even_on_the_fp16_scale() {
    // Row max 15.5: scale 15.5/31 = 0.5 exactly, so w/scale = 2w and the .5 cases are ties.
    let w = row(&[15.5, 0.25, 0.75, -0.25, 1.25, -0.75, -15.5, 0.3]);
    let t = quantize("blocks.0.mlp.proj.weight", &[1, w.len()], &w);
    assert_eq!(t.kind, Kind::Int6);
    assert_eq!(t.scales, vec![f16::from_f32(0.5)]);
    assert_eq!(&t.q[..8], &[31, 0, 2, 0, 2, -2, -31, 1]);
    assert_eq!(&dequantize(&t)[..8], &[15.5, 0.0, 1.0, 0.0, 1.0, -1.0, -15.5, 0.5]);
}

#[test]
fn int6_scale_has_a_floor_of_one_31st() {
    // Row max 0.5 < 1: the scale is fp16(1/31) = 0.032257080078125, not 0.5/31.
    let w = row(&[0.5, 0.1, -0.5]);
    let t = quantize("blocks.1.attn.proj.weight", &[1, w.len()], &w);
    assert_eq!(t.scales[0].to_f32(), 0.032257080078125);
    // 0.5 / 0.032257080078125 = 15.5005 (above the tie, from the fp16 scale): 16.
    assert_eq!(&t.q[..3], &[16, 3, -16]);
    assert_eq!(dequantize(&t)[0], 16.0 * 0.032257080078125);
}

#[test]
fn the_percentile_interpolates_linearly_as_torch_quantile() {
    assert_eq!(INT8_CLIP_Q, 0.999_998_4);
    // Two values: rank q*(n-1) = 0.99999839, from the upper end: 3 - 2*(1-w).
    assert_eq!(quantile_sorted(&[1.0, 3.0], INT8_CLIP_Q), 2.9999966621398926);
    assert_eq!(quantile_sorted(&[7.0], INT8_CLIP_Q), 7.0);
    // A 512-wide row j/511: between 510/511 and 1 at weight 0.99917603.
    let r: Vec<f32> = (0..512).map(|j| j as f32 / 511.0).collect();
    assert_eq!(quantile_sorted(&r, INT8_CLIP_Q), 0.9999983906745911);
    // A long row 0..=1e6: the f32 rank is 999998.375 (f32 spacing there is 1/16), weight
    // 0.375 from the lower end.
    let long: Vec<f32> = (0..=1_000_000).map(|j| j as f32).collect();
    assert_eq!(quantile_sorted(&long, INT8_CLIP_Q), 999998.375);
}

#[test]
fn int8_clips_at_the_percentile_and_floors_the_scale() {
    // One 0.5 among 65,536 zeros: rank 65535.895, clip = 0.5 * 0.8945... = 0.447265625;
    // clip/127 is below 1/127, so q uses the f32 scale 1/127: round(56.80) = 57.
    let w = row(&[0.5]);
    let t = quantize("tok_emb.weight", &[1, w.len()], &w);
    assert_eq!(t.kind, Kind::Int8);
    assert_eq!(t.scales[0].to_f32(), 0.00787353515625);
    assert_eq!(t.q[0], 57);
    assert_eq!(dequantize(&t)[0], 57.0 * 0.00787353515625);
    // Two at |0.5| on top: the clip is 0.5; 0.5 * 127 = 63.5 is a tie (to even: 64), and
    // 0.25 * 127 = 31.75 -> 32.
    let w = row(&[0.5, -0.5, 0.25]);
    let t = quantize("tok_emb.weight", &[1, w.len()], &w);
    assert_eq!(&t.q[..3], &[64, -64, 32]);
    // Large values: the scale is clip/127 and q reaches +-127 at the clip.
    let w = row(&[254.0, -254.0, 127.0]);
    let t = quantize("tok_emb.weight", &[1, w.len()], &w);
    // Two 254s on top: the clip interpolates between equal values, 254; scale 2.
    assert_eq!(t.scales[0].to_f32(), 2.0);
    assert_eq!(&t.q[..3], &[127, -127, 64]);
}

#[test]
fn dequantized_weights_are_within_half_a_step() {
    // A pseudo-random int6 matrix and an int8 one, 4 rows each.
    let mut x = 12345u64;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
    };
    for name in ["blocks.0.mlp.fc.weight", "tok_emb.weight"] {
        let (rows, cols) = (4, 20_000);
        let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
        let t = quantize(name, &[rows, cols], &w);
        let d = dequantize(&t);
        for r in 0..rows {
            // Half a step of the fp16 scale, plus the scale's own fp16 rounding at the row max.
            let s = t.scales[r].to_f32();
            let bound = s * 0.5 + 1.5 * 2f32.powi(-11) + 1e-6;
            for c in 0..cols {
                let (a, b) = (w[r * cols + c], d[r * cols + c]);
                assert!((a - b).abs() <= bound, "{name} [{r},{c}]: {a} -> {b} (step {s})");
            }
        }
    }
}

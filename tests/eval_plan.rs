//! The forward-only evaluation plan and the sliding-window evaluation.
//!
//! - The sliding windows (starts, scored ranges, the re-scored tail) against a brute-force
//!   count of which targets each window scores, on small streams, several strides and
//!   lengths; and the spec's token count at record scale.
//! - The evaluation plan holds no gradient or optimizer state, and its parameters are the
//!   training plan's (names, shapes).
//! - Its per-position NLL equals the training plan's `loss_rows` on the same weights and
//!   tokens (CPU executor), at every position and at a sliding subset of them; the GPU
//!   scorer against the CPU one on lavapipe at record-tiny size.
//! - Sliding at stride = seq_len is the non-sliding evaluation.
use std::path::Path;
use wgolf::config::Config;
use wgolf::eval::sliding::{scored_count, windows};
use wgolf::eval::{self, Scorer, ValData, Window};
use wgolf::exec::cpu::CpuExecutor;
use wgolf::exec::{Executor, HostData};
use wgolf::host::Device;
use wgolf::init::{init_params, Rng};
use wgolf::plan::{Phase, Role};
use wgolf::progress::Progress;
use wgolf::tolerance::{first_mismatch, tolerance, Check};

/// How often the reference's sliding loop scores each target of a stream of `total`
/// targets, found by asking of every (window start, target) pair whether the window scores
/// it: the window at `ws` covers `[ws, min(ws + seq, total))` and scores all of it when
/// `ws == 0`, else its last `stride` targets.
fn brute_force(total: usize, seq: usize, stride: usize) -> Vec<usize> {
    let mut count = vec![0; total];
    for ws in 0..total {
        if ws % stride != 0 {
            continue;
        }
        let end = (ws + seq).min(total);
        for (t, c) in count.iter_mut().enumerate() {
            let inside = ws <= t && t < end;
            let scored = ws == 0 || t + stride >= end;
            if inside && scored {
                *c += 1;
            }
        }
    }
    count
}

#[test]
fn sliding_windows_score_what_the_reference_scores() {
    let mut cases = 0;
    for seq in [8, 12, 16] {
        for stride in [1, 3, 4, 5, 8, seq] {
            if stride > seq {
                continue;
            }
            for total in 1..=70 {
                let ws = windows(total, seq, stride);
                let mut count = vec![0; total];
                for w in &ws {
                    assert_eq!(w.start % stride, 0);
                    assert!(w.len >= 1 && w.len <= seq && w.start + w.len <= total);
                    for t in w.scored_targets() {
                        count[t] += 1;
                    }
                }
                let want = brute_force(total, seq, stride);
                assert_eq!(count, want, "seq {seq} stride {stride} total {total}");
                assert_eq!(ws.len(), total.div_ceil(stride), "window count, seq {seq} stride {stride} total {total}");
                assert!(count.iter().all(|&c| c >= 1), "every target scored");
                let scored: usize = want.iter().sum();
                assert_eq!(scored_count(total, seq, stride), scored as u64);
                // The quirk: on a stream of whole strides at least a window long, the trailing
                // short windows re-score the last `stride` targets, seq/stride - 1 times over.
                if total % stride == 0 && seq % stride == 0 && total >= seq {
                    assert_eq!(scored, total + seq - stride, "seq {seq} stride {stride} total {total}");
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 1000);
}

#[test]
fn sliding_count_matches_the_spec_at_record_scale() {
    // record-spec.md section 7: 62,021,632 targets, window 2048, stride 64.
    let total = 62_021_632;
    assert_eq!(windows(total, 2048, 64).len(), 969_088);
    assert_eq!(scored_count(total, 2048, 64), 62_023_616);
}

fn config(path: &str, overrides: &[&str]) -> Config {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path), &overrides).unwrap()
}

#[test]
fn the_eval_plan_has_no_backward_state_and_the_training_plans_parameters() {
    for path in ["configs/tiny.toml", "configs/record-tiny.toml"] {
        let cfg = config(path, &[]);
        let train = wgolf::model::build_plan(&cfg).unwrap();
        let ev = wgolf::model::build_eval_plan(&cfg, 3, 100).unwrap();
        assert!(ev.steps(Phase::Backward).is_empty() && ev.steps(Phase::Optimizer).is_empty());
        let backward = ev.with_role(|r| matches!(r, Role::Grad | Role::ActGrad | Role::OptState | Role::Scratch));
        assert!(backward.is_empty(), "{path}: {:?}", backward.iter().map(|&t| &ev.tensor(t).name).collect::<Vec<_>>());
        let params = |p: &wgolf::plan::Plan| -> Vec<(String, Vec<usize>)> {
            p.with_role(|r| matches!(r, Role::Param { .. }))
                .into_iter()
                .map(|t| (p.tensor(t).name.clone(), p.tensor(t).shape.clone()))
                .collect()
        };
        assert_eq!(params(&ev), params(&train), "{path}");
        // The head runs on the scored rows only.
        let v = cfg.model.vocab_size;
        assert_eq!(ev.tensor(ev.io().logits).shape, vec![100, v]);
        assert!(ev.bytes() < train.bytes());
        assert!(wgolf::model::build_eval_plan(&cfg, 3, 3 * cfg.train.seq_len + 1).is_err());
    }
}

/// A config, perturbed weights (named) and tokens for `batch` sequences.
struct Case {
    cfg: Config,
    weights: Vec<(String, Vec<f32>)>,
    tokens: Vec<u16>,
}

fn case(path: &str, batch: usize) -> Case {
    let b = format!("train.batch_seqs={batch}");
    let cfg = config(path, &[&b, "train.grad_accum=1"]);
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    // Perturbed so that no zero-initialized projection hides a path.
    let weights = init_params(&plan, cfg.train.seed)
        .into_iter()
        .enumerate()
        .map(|(i, (id, mut v))| {
            let mut rng = Rng::new(0xE7A1 + i as u64);
            v.iter_mut().for_each(|x| *x += (0.05 * rng.normal()) as f32);
            (plan.tensor(id).name.clone(), v)
        })
        .collect();
    let vocab = cfg.model.vocab_size;
    let mut rng = Rng::new(7);
    let tokens =
        (0..=batch * cfg.train.seq_len).map(|_| ((rng.uniform() * vocab as f64) as usize % vocab) as u16).collect();
    Case { cfg, weights, tokens }
}

/// The training plan's per-position loss on the case's sequences (CPU executor).
fn training_loss_rows(c: &Case) -> Vec<f32> {
    let plan = wgolf::model::build_plan(&c.cfg).unwrap();
    let mut ex = CpuExecutor::new(&plan);
    for (name, v) in &c.weights {
        ex.write(plan.find(name).unwrap(), HostData::F32(v)).unwrap();
    }
    let n = c.cfg.micro_tokens();
    let ids: Vec<u32> = c.tokens[..n].iter().map(|&t| t.into()).collect();
    let targets: Vec<u32> = c.tokens[1..=n].iter().map(|&t| t.into()).collect();
    wgolf::host::write_inputs(&mut ex, &plan, &c.cfg, &ids, &targets).unwrap();
    ex.run(Phase::Forward, 0..plan.steps(Phase::Forward).len()).unwrap();
    ex.read(plan.io().loss_rows).unwrap()
}

/// The case's sequences as windows, each scoring `scored(i)`.
fn seq_windows(c: &Case, batch: usize, scored: impl Fn(usize) -> std::ops::Range<usize>) -> Vec<Window<'_>> {
    let t = c.cfg.train.seq_len;
    (0..batch).map(|i| Window { tokens: &c.tokens[i * t..(i + 1) * t + 1], scored: scored(i) }).collect()
}

#[test]
fn eval_plan_nll_equals_the_training_plans_loss_rows() {
    for path in ["configs/tiny.toml", "configs/record-tiny.toml"] {
        let batch = 2;
        let c = case(path, batch);
        let t = c.cfg.train.seq_len;
        let want = training_loss_rows(&c);
        // Every position scored.
        let mut scorer = Scorer::new(&c.cfg, &Device::Cpu, batch, batch * t).unwrap();
        scorer.load_weights(&c.weights).unwrap();
        let got = scorer.score(&seq_windows(&c, batch, |_| 0..t)).unwrap();
        // Same ops on the same rows in the same order: bit for bit.
        assert_eq!(got, want, "{path}: every position");
        // A sliding scorer's subset: all of window 0, the last 40 positions of window 1.
        let mut sliding = Scorer::sliding(&c.cfg, &Device::Cpu, 40).unwrap();
        sliding.load_weights(&c.weights).unwrap();
        let got = sliding.score(&seq_windows(&c, batch, |i| if i == 0 { 0..t } else { t - 40..t })).unwrap();
        let subset: Vec<f32> = want[..t].iter().chain(&want[2 * t - 40..]).copied().collect();
        assert_eq!(got, subset, "{path}: scored subset");
    }
}

#[test]
fn gpu_scorer_matches_the_cpu_scorer_on_record_tiny() {
    let batch = 2;
    let c = case("configs/record-tiny.toml", batch);
    let t = c.cfg.train.seq_len;
    let gpu = Device::open(&wgolf::host::Backend::Gpu(None)).unwrap();
    for (stride, scored) in
        [(t, (|_| 0..128) as fn(usize) -> std::ops::Range<usize>), (64, |i| if i == 0 { 0..128 } else { 64..128 })]
    {
        let mut nll = Vec::new();
        for device in [&Device::Cpu, &gpu] {
            let mut s = Scorer::sliding(&c.cfg, device, stride).unwrap();
            s.load_weights(&c.weights).unwrap();
            nll.push(s.score(&seq_windows(&c, batch, scored)).unwrap());
        }
        if let Some((i, g, w)) = first_mismatch(&nll[1], &nll[0], tolerance(Check::Model)) {
            panic!("stride {stride}: GPU nll[{i}] = {g}, CPU {w}");
        }
    }
}

#[test]
fn scorer_refuses_bad_batches_and_weights() {
    let c = case("configs/tiny.toml", 2);
    let t = c.cfg.train.seq_len;
    let mut s = Scorer::new(&c.cfg, &Device::Cpu, 2, 2 * t).unwrap();
    let missing = s.load_weights(&c.weights[1..]).unwrap_err().to_string();
    assert!(missing.contains("not given") && missing.contains(&c.weights[0].0), "{missing}");
    let mut wrong = c.weights.clone();
    wrong[0].1.pop();
    let short = s.load_weights(&wrong).unwrap_err().to_string();
    assert!(short.contains(&c.weights[0].0) && short.contains("expects"), "{short}");
    s.load_weights(&c.weights).unwrap();
    let three = seq_windows(&c, 2, |_| 0..t).into_iter().cycle().take(3).collect::<Vec<_>>();
    assert!(s.score(&three).is_err());
    let outside = [Window { tokens: &c.tokens[..10], scored: 0..10 }];
    assert!(s.score(&outside).is_err());
}

#[test]
fn sliding_at_stride_seq_len_is_the_non_sliding_evaluation() {
    let cfg = config("configs/tiny.toml", &["eval.batch_seqs=3"]);
    let t = cfg.train.seq_len;
    let val = ValData::open(&cfg).unwrap();
    let plan = wgolf::model::build_plan(&cfg).unwrap();
    let weights: Vec<(String, Vec<f32>)> =
        init_params(&plan, 3).into_iter().map(|(id, v)| (plan.tensor(id).name.clone(), v)).collect();
    let seqs = 5;
    let mut whole = Scorer::whole_sequences(&cfg, &Device::Cpu).unwrap();
    whole.load_weights(&weights).unwrap();
    let a = eval::evaluate(&mut whole, &val, seqs).unwrap();
    let mut sliding = Scorer::sliding(&cfg, &Device::Cpu, t).unwrap();
    sliding.load_weights(&weights).unwrap();
    let b = eval::evaluate_sliding(&mut sliding, &val, seqs * t, t, &mut Progress::hidden()).unwrap();
    assert_eq!(a.tokens(), (seqs * t) as u64);
    assert_eq!(a, b);
    // At a shorter stride, the tokens counted are the windows' formula, the bytes those of
    // the scored targets (the re-scored tail included).
    let stride = 32;
    let mut s32 = Scorer::sliding(&cfg, &Device::Cpu, stride).unwrap();
    s32.load_weights(&weights).unwrap();
    let covered = 2 * t + 40;
    let c = eval::evaluate_sliding(&mut s32, &val, covered, stride, &mut Progress::hidden()).unwrap();
    assert_eq!(c.tokens(), scored_count(covered, t, stride));
    let tokens = val.set.tokens();
    let bytes: u64 = windows(covered, t, stride)
        .iter()
        .flat_map(|w| w.scored_targets())
        .map(|i| val.luts.target_bytes(tokens[i].into(), tokens[i + 1].into()))
        .sum();
    assert_eq!(c.bytes(), bytes);
    assert!(c.val_loss().is_finite() && c.val_bpb() > 0.0);
}

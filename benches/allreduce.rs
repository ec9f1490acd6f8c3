//! The shared-memory all-reduce (`wgolf::dist::ShmGroup::all_reduce_mean`) across processes on
//! this machine: by default the record's 26,829,913 f32 gradients with 2, 4 and 8 processes.
//! No GPU.
//!
//! `cargo bench --bench allreduce -- [--procs 2,4,8] [--elems N] [--reps R] [--chunk ELEMS]`
//!
//! The bench re-executes itself once per rank. Each timed repetition starts at a barrier and
//! ends when the slowest rank has its result (the ranks' times are combined with
//! `all_reduce_max_f64`); the table gives the median and the fastest of R repetitions after
//! two warm-up ones, in ms, and two bandwidths: `size / time` (the buffer's bytes, what a
//! rank gets averaged per second) and the bus bandwidth `2 (P - 1) / P x size / time` (NCCL's
//! convention: the bytes each rank must move in a ring all-reduce, comparable across P).
//!
//! Built with `--features mpi` (`cargo bench --features mpi --bench allreduce`), each P also
//! runs under `mpirun -np P` through `wgolf::dist::MpiGroup` with the same buffer, in the same
//! table: flat (every rank its own node: one `MPI_Allreduce` over the world), and for even
//! P >= 4 hierarchical as 2 simulated nodes of P/2 (the node's shared-memory reduce-scatter,
//! an `MPI_Allreduce` of each share between the nodes, the node's all-gather). On one machine
//! the MPI between "nodes" is MPI's own shared-memory transport, so that row is the
//! hierarchical path's overhead over the shm one, not a network.
//!
//! Each group also times `all_gather` of a buffer of the same size, each rank contributing
//! 1/P of it (distributed Muon's exchange of the orthogonalized updates, 26.2M values in the
//! record): the rows marked "all_gather", whose bus bandwidth is `(P - 1) / P x size / time`.
#[cfg(target_os = "linux")]
use std::process::{Command, Stdio};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
const ROLE: &str = "WGOLF_ALLREDUCE_RANK";

fn main() -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        if let Ok(role) = std::env::var(ROLE) {
            return child(&role);
        }
        parent()
    }
    #[cfg(not(target_os = "linux"))]
    {
        println!("the shared-memory group is Linux only");
        Ok(())
    }
}

#[cfg(target_os = "linux")]
struct Args {
    procs: Vec<usize>,
    elems: usize,
    reps: usize,
    chunk: usize,
}

#[cfg(target_os = "linux")]
fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args { procs: vec![2, 4, 8], elems: 26_829_913, reps: 7, chunk: wgolf::dist::DEFAULT_CHUNK_ELEMS };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a value"));
        match arg.as_str() {
            "--procs" => a.procs = value()?.split(',').map(|p| p.trim().parse()).collect::<Result<_, _>>()?,
            "--elems" => a.elems = value()?.parse()?,
            "--reps" => a.reps = value()?.parse()?,
            "--chunk" => a.chunk = value()?.parse()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument `{other}` (see the doc comment of benches/allreduce.rs)"),
        }
    }
    anyhow::ensure!(
        a.reps > 0 && a.elems > 0 && a.procs.iter().all(|&p| p > 0),
        "--reps, --elems and --procs must be positive"
    );
    Ok(a)
}

#[cfg(target_os = "linux")]
fn parent() -> anyhow::Result<()> {
    let a = parse_args()?;
    let mb = a.elems as f64 * 4.0 / 1e6;
    println!(
        "all_reduce_mean of {} f32 ({mb:.1} MB), chunk {} elements, {} cores, median (min) of {} reps\n",
        a.elems,
        a.chunk,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        a.reps
    );
    println!("| processes, path | median ms | min ms | size/time GB/s | bus GB/s |");
    println!("|---:|---:|---:|---:|---:|");
    // The machine's own pace for reference: one process copying the buffer (read + write).
    let (median, min) = memcpy_ms(a.elems, a.reps);
    let gbs = a.elems as f64 * 4.0 / (median * 1e-3) / 1e9;
    println!("| memcpy, 1 process | {median:.1} | {min:.1} | {gbs:.2} | - |");
    // What a bf16 wire format would add per rank: the gradients to bf16 before the reduce and
    // back after it (the reduce itself would move half the bytes).
    let (median, min) = bf16_round_trip_ms(a.elems, a.reps);
    let gbs = a.elems as f64 * 4.0 / (median * 1e-3) / 1e9;
    println!("| f32 -> bf16 -> f32, 1 process | {median:.1} | {min:.1} | {gbs:.2} | - |");
    for &p in &a.procs {
        let run_id = format!("bench-{}-{p}", std::process::id());
        let children: Vec<_> = (0..p)
            .map(|rank| {
                Command::new(std::env::current_exe()?)
                    .env(ROLE, rank.to_string())
                    .env("WGOLF_ALLREDUCE_WORLD", p.to_string())
                    .env("WGOLF_ALLREDUCE_RUN", &run_id)
                    .env("WGOLF_ALLREDUCE_ELEMS", a.elems.to_string())
                    .env("WGOLF_ALLREDUCE_REPS", a.reps.to_string())
                    .env("WGOLF_ALLREDUCE_CHUNK", a.chunk.to_string())
                    .stdout(if rank == 0 { Stdio::piped() } else { Stdio::null() })
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        let mut times = None;
        for (rank, c) in children.into_iter().enumerate() {
            let out = c.wait_with_output()?;
            anyhow::ensure!(out.status.success(), "rank {rank} of {p} failed: {}", out.status);
            if rank == 0 {
                times = Some(String::from_utf8(out.stdout)?);
            }
        }
        rows(&format!("{p}, shm"), &times.unwrap_or_default(), a.elems, p)?;
        #[cfg(feature = "mpi")]
        {
            let mut layouts = vec![(1, format!("{p}, MPI_Allreduce"))];
            if p >= 4 && p % 2 == 0 {
                layouts.push((p / 2, format!("{p}, MPI as 2 nodes of {} (shm + MPI)", p / 2)));
            }
            for (ranks_per_node, label) in layouts {
                let out = Command::new("mpirun")
                    .args(["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", &p.to_string()])
                    .args(["-x", ROLE, "-x", "WGOLF_ALLREDUCE_ELEMS", "-x", "WGOLF_ALLREDUCE_REPS"])
                    .args(["-x", "WGOLF_ALLREDUCE_NODE_RANKS"])
                    .arg(std::env::current_exe()?)
                    .env(ROLE, "mpi")
                    .env("WGOLF_ALLREDUCE_ELEMS", a.elems.to_string())
                    .env("WGOLF_ALLREDUCE_REPS", a.reps.to_string())
                    .env("WGOLF_ALLREDUCE_NODE_RANKS", ranks_per_node.to_string())
                    .output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "mpirun -np {p} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                rows(&label, &String::from_utf8(out.stdout)?, a.elems, p)?;
            }
        }
    }
    Ok(())
}

/// The table rows of one group from rank 0's two "median min" lines: the all-reduce's, then
/// the all-gather's.
#[cfg(target_os = "linux")]
fn rows(label: &str, output: &str, elems: usize, p: usize) -> anyhow::Result<()> {
    let mut lines = output.lines();
    let bytes = elems as f64 * 4.0;
    let (p1, p) = (p as f64 - 1.0, p as f64);
    for (what, bus_factor) in [("", 2.0 * p1 / p), (" all_gather", p1 / p)] {
        let mut fields = lines.next().unwrap_or("").split_whitespace().map(|f| f.parse::<f64>());
        let (median, min) = (fields.next().unwrap_or(Ok(f64::NAN))?, fields.next().unwrap_or(Ok(f64::NAN))?);
        let algbw = bytes / (median * 1e-3) / 1e9;
        let busbw = algbw * bus_factor;
        println!("| {label}{what} | {median:.1} | {min:.1} | {algbw:.2} | {busbw:.2} |");
    }
    Ok(())
}

/// Median and fastest of `reps` runs of `work` after two warm-up ones, in ms.
#[cfg(target_os = "linux")]
fn median_min_ms(reps: usize, mut work: impl FnMut()) -> (f64, f64) {
    let mut times: Vec<f64> = (0..reps + 2)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64() * 1e3
        })
        .skip(2)
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0])
}

/// Median and fastest time of copying `elems` f32 between two warm buffers, in ms.
#[cfg(target_os = "linux")]
fn memcpy_ms(elems: usize, reps: usize) -> (f64, f64) {
    let src: Vec<f32> = (0..elems).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; elems];
    median_min_ms(reps, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
    })
}

/// Median and fastest time of converting `elems` f32 to bf16 (round to nearest even) and
/// back, in ms.
#[cfg(target_os = "linux")]
fn bf16_round_trip_ms(elems: usize, reps: usize) -> (f64, f64) {
    let src: Vec<f32> = (0..elems).map(|i| ((i % 1000) as f32 - 500.0) * 1e-3).collect();
    let mut wire = vec![half::bf16::ZERO; elems];
    let mut back = vec![0.0f32; elems];
    median_min_ms(reps, || {
        for (w, &v) in wire.iter_mut().zip(std::hint::black_box(&src)) {
            *w = half::bf16::from_f32(v);
        }
        for (b, w) in back.iter_mut().zip(std::hint::black_box(&wire)) {
            *b = w.to_f32();
        }
        std::hint::black_box(&back);
    })
}

#[cfg(target_os = "linux")]
fn child(role: &str) -> anyhow::Result<()> {
    let var = |k: &str| -> anyhow::Result<usize> { Ok(std::env::var(k)?.parse()?) };
    let (elems, reps) = (var("WGOLF_ALLREDUCE_ELEMS")?, var("WGOLF_ALLREDUCE_REPS")?);
    #[cfg(feature = "mpi")]
    if role == "mpi" {
        let nodes = wgolf::dist::MpiNodes::Consecutive(var("WGOLF_ALLREDUCE_NODE_RANKS")?);
        let group = wgolf::dist::MpiGroup::join("bench", nodes, Duration::from_secs(120))?;
        return time_all_reduce(wgolf::dist::Group::Mpi(group), elems, reps);
    }
    let (rank, world, chunk) = (role.parse()?, var("WGOLF_ALLREDUCE_WORLD")?, var("WGOLF_ALLREDUCE_CHUNK")?);
    let run_id = std::env::var("WGOLF_ALLREDUCE_RUN")?;
    let opts = wgolf::dist::JoinOptions { chunk_elems: chunk, timeout: Duration::from_secs(120) };
    let group = wgolf::dist::ShmGroup::join_with(&run_id, rank, world, "bench", &opts)?;
    time_all_reduce(wgolf::dist::Group::Shm(group), elems, reps)
}

/// Times `reps` all-reduces of `elems` values, then `reps` all-gathers of `elems` values in
/// P shares (each after two warm-up ones); rank 0 prints one line per collective: the
/// median and the fastest, in ms.
#[cfg(target_os = "linux")]
fn time_all_reduce(mut group: wgolf::dist::Group, elems: usize, reps: usize) -> anyhow::Result<()> {
    let (rank, world) = (group.rank(), group.world());
    let mut values: Vec<f32> = (0..elems).map(|i| ((i % 1000) as f32 - 500.0) * 1e-3 + rank as f32).collect();
    let mean = timed(&mut group, reps, |g| g.all_reduce_mean(&mut values))?;
    let counts: Vec<usize> = (0..world).map(|r| elems * (r + 1) / world - elems * r / world).collect();
    let own = vec![rank as f32; counts[rank]];
    let gather = timed(&mut group, reps, |g| g.all_gather(&own, &counts, &mut values))?;
    if rank == 0 {
        for (median, min) in [mean, gather] {
            println!("{median} {min}");
        }
    }
    Ok(())
}

/// The median and the fastest of `reps` runs of `collective` (after two warm-up ones), each
/// from a barrier until the slowest rank is done, in ms.
#[cfg(target_os = "linux")]
fn timed(
    group: &mut wgolf::dist::Group,
    reps: usize,
    mut collective: impl FnMut(&mut wgolf::dist::Group) -> Result<(), wgolf::dist::DistError>,
) -> anyhow::Result<(f64, f64)> {
    let mut times = Vec::with_capacity(reps);
    for rep in 0..reps + 2 {
        group.barrier()?;
        let start = Instant::now();
        collective(group)?;
        let mut ms = [start.elapsed().as_secs_f64() * 1e3];
        group.all_reduce_max_f64(&mut ms)?;
        if rep >= 2 {
            times.push(ms[0]);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

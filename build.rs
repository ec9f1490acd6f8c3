//! Records the git commit the binary is built from (`WGOLF_COMMIT`, for run reports):
//! "unknown" when there is no git or no repository (a source bundle). Reruns only when HEAD
//! or the branch it points to moves.
//!
//! Also bundles the sources that build the binary (`src/`, `shaders/`, `benches/*.rs` and `*.wgsl`, which
//! Cargo.toml names, `configs/`, `Cargo.toml`, `Cargo.lock`, `build.rs`) into
//! `$OUT_DIR/sources.bin`, which `quant::artifact` embeds, so `wgolf pack` needs no checkout.
//! The format (also read by `quant::artifact`): per file, in path order, a u32 LE path
//! length, the UTF-8 path (relative, `/`-separated), a u32 LE data length, the bytes.
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Every file under `dir` (relative to the crate root), recursively, `/`-separated.
fn files_under(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Some(s) = path.to_str() {
            out.push(s.replace('\\', "/"));
        }
    }
}

fn bundle_sources() {
    let mut files = Vec::new();
    for dir in ["src", "shaders", "configs"] {
        println!("cargo:rerun-if-changed={dir}");
        files_under(Path::new(dir), &mut files);
    }
    println!("cargo:rerun-if-changed=benches");
    let mut benches = Vec::new();
    files_under(Path::new("benches"), &mut benches);
    files.extend(benches.into_iter().filter(|f| f.ends_with(".rs") || f.ends_with(".wgsl")));
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={f}");
        if Path::new(f).exists() {
            files.push(f.to_string());
        }
    }
    files.sort();
    let mut bundle = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("build.rs: reading {f}: {e}"));
        bundle.extend_from_slice(&(f.len() as u32).to_le_bytes());
        bundle.extend_from_slice(f.as_bytes());
        bundle.extend_from_slice(&(data.len() as u32).to_le_bytes());
        bundle.extend_from_slice(&data);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("sources.bin");
    std::fs::write(&out, bundle).unwrap_or_else(|e| panic!("build.rs: writing {}: {e}", out.display()));
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    bundle_sources();
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WGOLF_COMMIT={commit}");
    // Watch HEAD, the ref it names and packed-refs (all that exist: a missing watched file
    // would rerun this script on every build). Worktrees keep HEAD in their own git dir and
    // refs in the common one.
    let (Some(git_dir), Some(common)) = (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"]))
    else {
        return;
    };
    let (git_dir, common) = (PathBuf::from(git_dir), PathBuf::from(common));
    let mut watch = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(common.join(&head_ref));
        watch.push(git_dir.join(&head_ref));
    }
    for path in watch.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

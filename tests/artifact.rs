//! The artifact: a pack -> read roundtrip at record-tiny size, and bad files, each an error
//! naming the file and what is wrong, with nothing half-written left behind.
use std::path::{Path, PathBuf};
use std::process::Command;
use wgolf::config::Config;
use wgolf::plan::{Plan, TensorId};
use wgolf::quant::artifact::{self, MAGIC};

fn tiny() -> (Config, Plan, Vec<(TensorId, Vec<f32>)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/record-tiny.toml");
    let cfg = Config::load(&path, &[]).expect("configs/record-tiny.toml loads");
    let plan = wgolf::model::build_plan(&cfg).expect("plan");
    let weights = wgolf::init::init_params(&plan, cfg.train.seed);
    (cfg, plan, weights)
}

fn packed(dir: &Path) -> (PathBuf, Vec<u8>) {
    let (cfg, plan, weights) = tiny();
    let path = dir.join("a.wgpk");
    artifact::write(&path, &cfg, &plan, &weights).expect("pack");
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn err_of(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("bad.wgpk");
    std::fs::write(&path, bytes).unwrap();
    let e = artifact::read(&path).err().expect("a bad artifact is an error");
    let msg = format!("{e:#}");
    assert!(msg.contains("bad.wgpk"), "the error names the file: {msg}");
    msg
}

/// Rewrites the header of a packed file (with a fresh checksum), to make well-formed files
/// whose content is wrong.
fn with_header(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let h = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&zstd::bulk::decompress(&bytes[32..32 + h], 1 << 24).unwrap()).unwrap();
    edit(&mut header);
    let hz = zstd::bulk::compress(&serde_json::to_vec(&header).unwrap(), 3).unwrap();
    let mut out = bytes[..32].to_vec();
    out[12..16].copy_from_slice(&(hz.len() as u32).to_le_bytes());
    out.extend_from_slice(&hz);
    out.extend_from_slice(&bytes[32 + h..bytes.len() - 4]);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn pack_then_read_gives_the_quantized_weights_back() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, plan, weights) = tiny();
    let path = dir.path().join("a.wgpk");
    let sizes = artifact::write(&path, &cfg, &plan, &weights).unwrap();
    assert_eq!(sizes.total, std::fs::metadata(&path).unwrap().len());
    assert_eq!(sizes.header + sizes.weights + sizes.code, sizes.total);
    let art = artifact::read(&path).unwrap();
    assert_eq!(art.sizes, sizes);
    assert_eq!(toml::to_string(&art.config).unwrap(), toml::to_string(&cfg).unwrap());
    let back = art.plan_weights(&plan).unwrap();
    assert_eq!(back.len(), weights.len());
    for ((t, w), (t2, d)) in weights.iter().zip(&back) {
        assert_eq!(t, t2);
        let desc = plan.tensor(*t);
        let q = wgolf::quant::quantize(&desc.name, &desc.shape, w);
        assert_eq!(d, &wgolf::quant::dequantize(&q), "{}", desc.name);
    }
    // The sources that built this binary, and the config, are in it.
    let names: Vec<&str> = art.sources.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["Cargo.toml", "Cargo.lock", "build.rs", "src/main.rs", "src/quant/artifact.rs", "config.toml"] {
        assert!(names.contains(&want), "{want} in the bundle: {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("shaders/")));
    // Exactly the files Cargo builds the crate from, byte for byte as on disk (so the unpacked
    // tree builds: docs/perf.md records a release build of one and its identical scores):
    // everything under src/, shaders/ and configs/, the benches' sources and kernels, and the
    // manifest, lock file and build script.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut on_disk = vec!["Cargo.toml".to_string(), "Cargo.lock".into(), "build.rs".into()];
    for dir in ["src", "shaders", "configs", "benches"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if dir != "benches" || path.extension().is_some_and(|e| e == "rs" || e == "wgsl") {
                    on_disk.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    on_disk.sort();
    let mut bundled: Vec<String> = names.iter().filter(|n| **n != "config.toml").map(|n| n.to_string()).collect();
    bundled.sort();
    assert_eq!(bundled, on_disk, "the bundle (left) and the crate's source files (right)");
    for (name, bytes) in art.sources.iter().filter(|(n, _)| n != "config.toml") {
        assert!(&std::fs::read(root.join(name)).unwrap() == bytes, "{name} differs from the file on disk");
    }
}

#[test]
fn bad_artifacts_are_errors_naming_the_file_and_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = packed(dir.path());
    let e = err_of(dir.path(), &good[..good.len() - 100]);
    assert!(e.contains("truncated"), "{e}");
    let e = err_of(dir.path(), &good[..20]);
    assert!(e.contains("truncated"), "{e}");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    let e = err_of(dir.path(), &bad);
    assert!(e.contains("checksum"), "{e}");
    let mut bad = good.clone();
    bad[0] = b'X';
    let e = err_of(dir.path(), &bad);
    assert!(e.contains("magic"), "{e}");
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = err_of(dir.path(), &bad);
    assert!(e.contains("format version 7"), "{e}");
    let e = err_of(dir.path(), &with_header(&good, |h| h["config"] = "[model]\nnot_a_field = 3\n".into()));
    assert!(e.contains("embedded config"), "{e}");
    let e = err_of(
        dir.path(),
        &with_header(&good, |h| {
            h["tensors"].as_array_mut().unwrap().remove(1);
        }),
    );
    assert!(e.contains("missing"), "{e}");
    let e = err_of(dir.path(), &with_header(&good, |h| h["tensors"][0]["shape"] = serde_json::json!([3, 5])));
    assert!(e.contains("shape [3, 5]"), "{e}");
    // Not a single leftover temporary file from the writes.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(&good[..8], MAGIC);
}

#[test]
fn cli_pack_and_unpack_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, plan, weights) = tiny();
    let ck = dir.path().join("ck.safetensors");
    wgolf::checkpoint::checkpoint_from_weights(
        &ck,
        &plan,
        &cfg,
        &weights,
        &wgolf::data::StreamPosition { shard_index: 0, shard_name: String::new(), offset: 0, tokens_consumed: 0 },
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_wgolf");
    let out = dir.path().join("a.wgpk");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let ok = run(&["pack", "--checkpoint", ck.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text} {}", String::from_utf8_lossy(&ok.stderr));
    assert!(text.contains("under the limit") && text.contains("weights") && text.contains("code"), "{text}");
    // Forced over the limit: non-zero, and the file is still written.
    std::fs::remove_file(&out).unwrap();
    let over = run(&["pack", "--checkpoint", ck.to_str().unwrap(), "--out", out.to_str().unwrap(), "--limit", "1000"]);
    assert!(!over.status.success());
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("over the 1,000-byte limit"),
        "{}",
        String::from_utf8_lossy(&over.stderr)
    );
    assert!(out.exists());
    let un = dir.path().join("un");
    let res = run(&["unpack", out.to_str().unwrap(), "--out", un.to_str().unwrap()]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert!(un.join("src/main.rs").exists() && un.join("Cargo.toml").exists() && un.join("config.toml").exists());
    let w = wgolf::checkpoint::read(&un.join("model.safetensors")).unwrap();
    let back = wgolf::checkpoint::weights_from(&w, &plan).unwrap();
    let art = artifact::read(&out).unwrap();
    assert_eq!(back, art.plan_weights(&plan).unwrap());
}

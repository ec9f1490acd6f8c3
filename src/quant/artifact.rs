//! The submission artifact: one self-contained file holding the quantized weights, the
//! run's config and the sources that built the binary, with a checksum.
//!
//! Layout (all integers little-endian):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `WGOLFPK\0` |
//! | 8 | 4 | format version (u32, [`FORMAT_VERSION`]) |
//! | 12 | 4 | header length H (u32) |
//! | 16 | 8 | weights length W (u64) |
//! | 24 | 8 | code length C (u64) |
//! | 32 | H | header: zstd of JSON `{"config": TOML text, "tensors": [{"name", "shape", "kind"}]}` |
//! | 32+H | W | weights: zstd level 22 of the byte planes below |
//! | 32+H+W | C | code: zstd level 22 of the source bundle (build.rs's format, plus `config.toml`) |
//! | end-4 | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! The weights are laid out by plane, not by tensor, because like bytes compress better
//! together: the int6 bytes of every int6 tensor (table order), then the int8 bytes, then
//! the fp16 row scales (int6 tensors, then int8), then the fp16 passthrough values.
//! The checksum is CRC-32 (crc32fast, already in the dependency tree): it is there to catch
//! truncation and corrupted bytes, not tampering, and detects every burst error of up to 32
//! bits.
use super::{dequantize, kind_of, quantize, rows_of, Kind, Quantized};
use crate::config::Config;
use crate::plan::{Plan, TensorId};
use anyhow::{anyhow, bail, Context, Result};
use half::f16;
use std::path::{Path, PathBuf};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"WGOLFPK\0";
/// The layout version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The challenge's limit on code plus weights, in bytes.
pub const LIMIT: u64 = 16_000_000;
const ZSTD_LEVEL: i32 = 22;
const FIXED: usize = 32;
/// The source bundle build.rs made of this binary's sources.
const SOURCES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sources.bin"));

/// The bytes of each part of an artifact on disk; `total` is the file's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// The fixed fields, the compressed header and the checksum.
    pub header: u64,
    pub weights: u64,
    pub code: u64,
    pub total: u64,
}

/// One dequantized tensor, under its reference name.
#[derive(Clone, Debug)]
pub struct Weight {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// An artifact read back and checked against its config.
pub struct Artifact {
    pub path: PathBuf,
    pub config: Config,
    /// The config as stored (TOML).
    pub config_text: String,
    /// The dequantized weights, in the plan's parameter order.
    pub weights: Vec<Weight>,
    /// The source bundle: (relative path, bytes), including `config.toml`.
    pub sources: Vec<(String, Vec<u8>)>,
    pub sizes: Sizes,
}

impl Artifact {
    /// The weights as the plan's parameter ids (the plan built from [`Artifact::config`]).
    pub fn plan_weights(&self, plan: &Plan) -> Result<Vec<(TensorId, Vec<f32>)>> {
        self.weights
            .iter()
            .map(|w| {
                let id = plan
                    .find(&w.name)
                    .ok_or_else(|| anyhow!("{}: no tensor `{}` in the plan", self.path.display(), w.name))?;
                Ok((id, w.values.clone()))
            })
            .collect()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    config: String,
    tensors: Vec<Entry>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    kind: Kind,
}

/// The quantized tensors as byte planes (see the module doc).
fn planes(tensors: &[(&Entry, Quantized)]) -> Vec<u8> {
    let mut out = Vec::new();
    for kind in [Kind::Int6, Kind::Int8] {
        for (_, t) in tensors.iter().filter(|(e, _)| e.kind == kind) {
            out.extend(t.q.iter().map(|&q| q as u8));
        }
    }
    for kind in [Kind::Int6, Kind::Int8] {
        for (_, t) in tensors.iter().filter(|(e, _)| e.kind == kind) {
            out.extend(t.scales.iter().flat_map(|s| s.to_le_bytes()));
        }
    }
    for (_, t) in tensors.iter().filter(|(e, _)| e.kind == Kind::Fp16) {
        out.extend(t.values.iter().flat_map(|s| s.to_le_bytes()));
    }
    out
}

/// The byte length of a tensor's q bytes, scales and fp16 values in the planes.
fn plane_lens(e: &Entry) -> Option<(usize, usize, usize)> {
    let n = e.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    Some(match e.kind {
        Kind::Fp16 => (0, 0, n.checked_mul(2)?),
        Kind::Int6 | Kind::Int8 => (n, rows_of(&e.shape).checked_mul(2)?, 0),
    })
}

fn zstd22(data: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, ZSTD_LEVEL).context("zstd compression")
}

/// This binary's sources plus the run's config, in build.rs's bundle format.
fn source_bundle(config_text: &str) -> Vec<u8> {
    let mut b = SOURCES.to_vec();
    let (path, data) = ("config.toml", config_text.as_bytes());
    b.extend_from_slice(&(path.len() as u32).to_le_bytes());
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// The quantized tensors one after another in table order, each its q bytes then its fp16
/// scales (or its fp16 values): the layout the artifact does *not* use, kept for
/// [`layout_sizes`].
fn tensor_order(tensors: &[(&Entry, Quantized)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, t) in tensors {
        out.extend(t.q.iter().map(|&q| q as u8));
        out.extend(t.scales.iter().flat_map(|s| s.to_le_bytes()));
        out.extend(t.values.iter().flat_map(|s| s.to_le_bytes()));
    }
    out
}

/// The table entries of `weights`, checked (length, finite values), with each tensor's rule.
fn entries_of(plan: &Plan, weights: &[(TensorId, Vec<f32>)]) -> Result<Vec<Entry>> {
    weights
        .iter()
        .map(|(t, v)| {
            let d = plan.tensor(*t);
            if v.len() != d.numel() {
                bail!("tensor `{}`: {} values for shape {:?}", d.name, v.len(), d.shape);
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                bail!("tensor `{}`: element {i} is {} (not finite); refusing to quantize it", d.name, v[i]);
            }
            Ok(Entry { name: d.name.clone(), shape: d.shape.clone(), kind: kind_of(&d.name, v.len()) })
        })
        .collect()
}

/// The compressed weight bytes of `weights` under each candidate layout: tensor order or
/// byte planes, zstd-22 with or without long-distance matching. `benches/artifact.rs` prints
/// them; the format keeps the smallest (docs/perf.md has the figures).
#[doc(hidden)]
pub fn layout_sizes(plan: &Plan, weights: &[(TensorId, Vec<f32>)]) -> Result<Vec<(&'static str, usize)>> {
    let entries = entries_of(plan, weights)?;
    let quantized: Vec<(&Entry, Quantized)> =
        entries.iter().zip(weights).map(|(e, (_, v))| (e, quantize(&e.name, &e.shape, v))).collect();
    let ldm = |data: &[u8]| -> Result<usize> {
        let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
        c.set_parameter(zstd::stream::raw::CParameter::EnableLongDistanceMatching(true))?;
        Ok(c.compress(data)?.len())
    };
    let (by_tensor, by_plane) = (tensor_order(&quantized), planes(&quantized));
    Ok(vec![
        ("uncompressed", by_plane.len()),
        ("tensor order, zstd-22", zstd22(&by_tensor)?.len()),
        ("tensor order, zstd-22 + long-distance matching", ldm(&by_tensor)?),
        ("byte planes, zstd-22 (the format)", zstd22(&by_plane)?.len()),
        ("byte planes, zstd-22 + long-distance matching", ldm(&by_plane)?),
    ])
}

/// The file's bytes for `weights` (the plan's parameters, the plan built from `cfg`).
pub fn to_bytes(cfg: &Config, plan: &Plan, weights: &[(TensorId, Vec<f32>)]) -> Result<(Vec<u8>, Sizes)> {
    let config = toml::to_string(cfg)?;
    let entries = entries_of(plan, weights)?;
    let quantized: Vec<(&Entry, Quantized)> =
        entries.iter().zip(weights).map(|(e, (_, v))| (e, quantize(&e.name, &e.shape, v))).collect();
    let weights_z = zstd22(&planes(&quantized))?;
    let code_z = zstd22(&source_bundle(&config))?;
    let header_z = zstd22(&serde_json::to_vec(&Header { config, tensors: entries })?)?;
    let mut out = Vec::with_capacity(FIXED + header_z.len() + weights_z.len() + code_z.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_z.len() as u32).to_le_bytes());
    out.extend_from_slice(&(weights_z.len() as u64).to_le_bytes());
    out.extend_from_slice(&(code_z.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_z);
    out.extend_from_slice(&weights_z);
    out.extend_from_slice(&code_z);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let (w, c) = (weights_z.len() as u64, code_z.len() as u64);
    let total = out.len() as u64;
    Ok((out, Sizes { header: total - w - c, weights: w, code: c, total }))
}

/// Quantizes `weights` and writes the artifact to `path` atomically; returns the part sizes.
pub fn write(path: &Path, cfg: &Config, plan: &Plan, weights: &[(TensorId, Vec<f32>)]) -> Result<Sizes> {
    let (bytes, sizes) = to_bytes(cfg, plan, weights).with_context(|| format!("packing {}", path.display()))?;
    crate::fsutil::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(sizes)
}

/// Reads and checks an artifact: magic, version, lengths, checksum, config, the tensor
/// table against the config's plan (every parameter, with its shape and its rule's kind),
/// then decompresses and dequantizes.
pub fn read(path: &Path) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    from_bytes(path, &bytes)
}

/// [`read`] of bytes already in memory (`path` names the file in errors).
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Artifact> {
    let p = path.display();
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        bail!("{p}: not a wgolf artifact (the magic bytes are not {:?})", String::from_utf8_lossy(MAGIC));
    }
    if bytes.len() < FIXED + 4 {
        bail!("{p}: truncated: {} bytes, shorter than the {}-byte fixed header and checksum", bytes.len(), FIXED + 4);
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        bail!("{p}: format version {version}; this wgolf reads version {FORMAT_VERSION}");
    }
    let (h, w, c) = (u32_at(12) as u64, u64_at(16), u64_at(24));
    let expected = (FIXED as u64 + 4).checked_add(h).and_then(|x| x.checked_add(w)).and_then(|x| x.checked_add(c));
    if expected != Some(bytes.len() as u64) {
        bail!(
            "{p}: truncated or padded: the header's lengths (header {h}, weights {w}, code {c}) need {} bytes, the file has {}",
            expected.map_or("more than 2^64".to_string(), |e| e.to_string()),
            bytes.len()
        );
    }
    let body = &bytes[..bytes.len() - 4];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
    let crc = crc32fast::hash(body);
    if crc != stored {
        bail!("{p}: checksum mismatch (stored CRC-32 {stored:08x}, computed {crc:08x}): the file is corrupted");
    }
    let (h, w) = (h as usize, w as usize);
    let header_z = &body[FIXED..FIXED + h];
    let weights_z = &body[FIXED + h..FIXED + h + w];
    let code_z = &body[FIXED + h + w..];
    // The header is small; 64 MiB bounds what a corrupted length could make us allocate.
    let header: Header = serde_json::from_slice(
        &zstd::bulk::decompress(header_z, 64 << 20).map_err(|e| anyhow!("{p}: header: not zstd data: {e}"))?,
    )
    .map_err(|e| anyhow!("{p}: header: not the expected JSON: {e}"))?;
    let config = Config::parse(&header.config, &format!("{p} (embedded config)"), &[])
        .map_err(|e| anyhow!("{p}: the embedded config does not parse: {e}"))?;
    let plan =
        crate::model::build_plan(&config).map_err(|e| anyhow!("{p}: the embedded config gives no model: {e}"))?;
    check_table(&p.to_string(), &plan, &header.tensors)?;

    let lens: Vec<(usize, usize, usize)> =
        header.tensors.iter().map(|e| plane_lens(e).expect("checked against the plan")).collect();
    let total: usize = lens.iter().map(|(a, b, c)| a + b + c).sum();
    let raw = zstd::bulk::decompress(weights_z, total).map_err(|e| anyhow!("{p}: weights: zstd: {e}"))?;
    if raw.len() != total {
        bail!("{p}: weights: {} bytes after decompression, the tensor table needs {total}", raw.len());
    }
    let weights = unplane(&raw, &header.tensors, &lens);
    let sources = parse_bundle(&p.to_string(), code_z)?;
    let sizes = Sizes { header: (FIXED + h + 4) as u64, weights: w as u64, code: c, total: bytes.len() as u64 };
    Ok(Artifact { path: path.to_path_buf(), config, config_text: header.config, weights, sources, sizes })
}

/// Every plan parameter must be in the table, in order, with its shape and its rule's kind.
fn check_table(p: &str, plan: &Plan, table: &[Entry]) -> Result<()> {
    for (i, slot) in plan.params.iter().enumerate() {
        let d = plan.tensor(slot.param);
        let Some(e) = table.iter().find(|e| e.name == d.name) else {
            bail!("{p}: tensor `{}` of the config's model is missing from the artifact", d.name);
        };
        if e.shape != d.shape {
            bail!("{p}: tensor `{}` has shape {:?}; the config's model needs {:?}", d.name, e.shape, d.shape);
        }
        if table.get(i).map(|t| &t.name) != Some(&d.name) {
            bail!("{p}: tensor `{}` is not at position {i} of the table (the plan's order)", d.name);
        }
        let kind = kind_of(&d.name, d.numel());
        if e.kind != kind {
            bail!("{p}: tensor `{}` is stored as {:?}; its rule gives {kind:?}", d.name, e.kind);
        }
    }
    if table.len() != plan.params.len() {
        let extra = table.iter().find(|e| plan.params.iter().all(|s| plan.tensor(s.param).name != e.name));
        bail!(
            "{p}: the artifact has {} tensors, the config's model {} (extra: {:?})",
            table.len(),
            plan.params.len(),
            extra.map(|e| &e.name)
        );
    }
    Ok(())
}

/// The dequantized tensors out of the byte planes.
fn unplane(raw: &[u8], table: &[Entry], lens: &[(usize, usize, usize)]) -> Vec<Weight> {
    let mut q: Vec<Vec<i8>> = vec![vec![]; table.len()];
    let mut scales: Vec<Vec<f16>> = vec![vec![]; table.len()];
    let mut values: Vec<Vec<f16>> = vec![vec![]; table.len()];
    let mut at = 0;
    let f16s = |b: &[u8]| b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>();
    for kind in [Kind::Int6, Kind::Int8] {
        for i in (0..table.len()).filter(|&i| table[i].kind == kind) {
            q[i] = raw[at..at + lens[i].0].iter().map(|&b| b as i8).collect();
            at += lens[i].0;
        }
    }
    for kind in [Kind::Int6, Kind::Int8] {
        for i in (0..table.len()).filter(|&i| table[i].kind == kind) {
            scales[i] = f16s(&raw[at..at + lens[i].1]);
            at += lens[i].1;
        }
    }
    for i in (0..table.len()).filter(|&i| table[i].kind == Kind::Fp16) {
        values[i] = f16s(&raw[at..at + lens[i].2]);
        at += lens[i].2;
    }
    table
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let t = Quantized {
                kind: e.kind,
                rows: rows_of(&e.shape),
                q: std::mem::take(&mut q[i]),
                scales: std::mem::take(&mut scales[i]),
                values: std::mem::take(&mut values[i]),
            };
            Weight { name: e.name.clone(), shape: e.shape.clone(), values: dequantize(&t) }
        })
        .collect()
}

/// The source bundle's files; paths must be relative and stay inside the directory.
fn parse_bundle(p: &str, code_z: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    // Sources are a few MB at most; 256 MiB bounds a corrupted frame's claim.
    let raw = zstd::bulk::decompress(code_z, 256 << 20).map_err(|e| anyhow!("{p}: code: zstd: {e}"))?;
    let mut files = Vec::new();
    let mut rest = &raw[..];
    let take = |n: usize, rest: &mut &[u8]| -> Result<Vec<u8>> {
        if rest.len() < n {
            bail!("{p}: code: the source bundle ends inside a file entry");
        }
        let (a, b) = rest.split_at(n);
        *rest = b;
        Ok(a.to_vec())
    };
    while !rest.is_empty() {
        let n = u32::from_le_bytes(take(4, &mut rest)?.try_into().expect("4 bytes")) as usize;
        let name =
            String::from_utf8(take(n, &mut rest)?).map_err(|_| anyhow!("{p}: code: a file name is not UTF-8"))?;
        let safe = !name.is_empty()
            && !name.starts_with('/')
            && !name.contains('\\')
            && name.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(':'));
        if !safe {
            bail!("{p}: code: file name {name:?} is not a relative path inside the bundle");
        }
        let n = u32::from_le_bytes(take(4, &mut rest)?.try_into().expect("4 bytes")) as usize;
        files.push((name, take(n, &mut rest)?));
    }
    Ok(files)
}

/// Writes an artifact's sources (DIR/src/..., DIR/config.toml, ...) and its dequantized
/// weights as DIR/model.safetensors (reference names, f32). Everything is read and checked
/// before anything is written, and each file is written atomically.
pub fn unpack(path: &Path, dir: &Path) -> Result<Artifact> {
    let art = read(path)?;
    let plan = crate::model::build_plan(&art.config).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let weights = art.plan_weights(&plan)?;
    for (name, data) in &art.sources {
        let out = dir.join(name);
        std::fs::create_dir_all(crate::fsutil::parent_dir(&out))
            .with_context(|| format!("creating the directory of {}", out.display()))?;
        crate::fsutil::write_atomic(&out, data).with_context(|| format!("writing {}", out.display()))?;
    }
    crate::checkpoint::save_weights(&dir.join("model.safetensors"), &plan, &art.config, &weights)?;
    Ok(art)
}

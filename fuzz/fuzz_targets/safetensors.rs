//! A safetensors checkpoint or weights file's bytes: reading it and everything read out of
//! it (the embedded config, step, elapsed time, stream position) must succeed or fail with
//! an error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let named = |e: anyhow::Error| {
        let msg = format!("{e:#}");
        assert!(msg.contains("fuzz.safetensors"), "{msg}");
    };
    match wgolf::checkpoint::read_bytes(Path::new("fuzz.safetensors"), data) {
        Ok(ck) => {
            let _ = ck.config().map_err(named);
            let _ = ck.step().map_err(named);
            let _ = ck.elapsed_s().map_err(named);
            let _ = ck.stream().map_err(named);
            let _ = ck.is_checkpoint();
            if let Ok(cfg) = ck.config() {
                // Only plans of a small model: the plan's own size limits are not this target's.
                if cfg.model.num_layers <= 4 && cfg.model.model_dim <= 256 && cfg.model.vocab_size <= 4096 {
                    if let Ok(plan) = wgolf::model::build_plan(&cfg) {
                        let _ = wgolf::checkpoint::weights_from(&ck, &plan).map_err(named);
                    }
                }
            }
        }
        Err(e) => named(e),
    }
});

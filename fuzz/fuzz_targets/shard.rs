//! A shard file's bytes: `check_shard_bytes` (the checks `read_shard` makes) must return the
//! token count or an error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match wgolf::data::check_shard_bytes(Path::new("fuzz.bin"), data, Some(1024)) {
        Ok(n) => assert_eq!(data.len(), 1024 + 2 * n),
        Err(e) => assert!(e.to_string().contains("fuzz.bin"), "{e}"),
    }
});

//! `--set` overrides (one per line of the input) on the bundled tiny config: `Ok` or an
//! error naming the file or the `--set` argument.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TINY: &str = include_str!("../../configs/tiny.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let overrides: Vec<String> = text.lines().take(8).map(str::to_string).collect();
    if let Err(e) = wgolf::config::Config::parse(TINY, "tiny.toml", &overrides) {
        let msg = e.to_string();
        assert!(msg.contains("tiny.toml") || msg.starts_with("--set "), "{msg}");
    }
});

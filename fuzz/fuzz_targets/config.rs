//! A config file's text: `Config::parse` must return `Ok` or an error naming the file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match wgolf::config::Config::parse(text, "fuzz.toml", &[]) {
        Ok(cfg) => {
            // What checkpoints rely on: the config survives a round trip through TOML.
            let text = toml::to_string(&cfg).expect("a config serializes");
            let back = wgolf::config::Config::parse(&text, "fuzz.toml", &[]).expect("round trip");
            assert_eq!(back, cfg);
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
});

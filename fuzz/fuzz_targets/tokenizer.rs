//! A SentencePiece `.model` file's bytes: loading must return a tokenizer or an error naming
//! the file, and a loaded one must encode, decode and normalize without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    match wgolf::data::Tokenizer::from_file_bytes(Path::new("fuzz.model"), data) {
        Ok(tok) => {
            let text = "  Hello,  wörld! ＡＢＣ ﬁ \u{301}e\t x² 東京 🎉 ";
            let ids = tok.encode(text);
            assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
            let _ = tok.decode(&ids);
            let _ = tok.normalize(text);
            let _ = wgolf::data::ByteLuts::from_tokenizer(&tok, 1024);
        }
        Err(e) => assert!(e.to_string().contains("fuzz.model"), "{e}"),
    }
});

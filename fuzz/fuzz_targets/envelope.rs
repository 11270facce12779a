//! Consent-envelope detection: any text, never panics; a detected envelope has a non-empty id.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(e) = mcp_warden::approval::envelope::detect(s) {
            assert!(!e.action_id.is_empty());
        }
    }
});

//! Config parsing: any text is a config or a list of errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = mcp_warden::config::Config::parse(s, &|_| Some("fuzz-value-0123456789".into()));
    }
});

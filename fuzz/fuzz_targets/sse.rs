//! The SSE parser: any bytes, split anywhere, never panic and give the same events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_warden::sse::Parser;

fuzz_target!(|data: &[u8]| {
    let mut whole = Vec::new();
    Parser::new(1 << 16).push(data, &mut whole);
    if data.len() > 4 {
        let cut = data[0] as usize % data.len();
        let mut split = Vec::new();
        let mut p = Parser::new(1 << 16);
        p.push(&data[..cut], &mut split);
        p.push(&data[cut..], &mut split);
        if !(cut > 0 && data[cut - 1] == b'\r') && !data.starts_with(&[0xEF]) {
            assert_eq!(whole, split);
        }
    }
});

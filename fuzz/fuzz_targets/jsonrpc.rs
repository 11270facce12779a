//! JSON-RPC framing: any bytes parse or fail cleanly; a parsed message's id can be swapped and
//! restored to the exact original bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_warden::jsonrpc::{parse_payload, Payload};

fuzz_target!(|data: &[u8]| {
    if let Ok(Payload::Single(m)) = parse_payload(bytes::Bytes::copy_from_slice(data)) {
        if let Some(id) = m.id_str().map(str::to_string) {
            let back = m.with_id("18446744073709551615").with_id(&id);
            assert_eq!(back.bytes(), m.bytes());
        }
    }
});

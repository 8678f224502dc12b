//! The MCP entry: what the host's MCP server does with the bytes an agent sends, with the
//! `rmcp` the workspace pins (and the server's features).
//!
//! - Streamable HTTP: a POST body is read whole and deserialized as one
//!   `ClientJsonRpcMessage` (rmcp's `expect_json`: `serde_json::from_slice`).
//! - stdio: the stream is cut into lines by rmcp's `JsonRpcMessageCodec` (the codec its
//!   stdio transport uses), each line a message; the input is fed in two chunks split where
//!   its first byte says, so a message split across reads is exercised too.
//!
//! Checked: nothing panics; a message that deserializes serializes again (the server echoes
//! ids and relays messages), and that serialization deserializes again with the same
//! `jsonrpc`, `id` and `method` (rmcp itself may drop unknown members on the way).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::async_rw::JsonRpcMessageCodec;
use tokio_util::codec::Decoder;

fn check(message: &ClientJsonRpcMessage) {
    let json = serde_json::to_value(message).expect("a parsed message serializes");
    let again: ClientJsonRpcMessage = match serde_json::from_value(json.clone()) {
        Ok(m) => m,
        Err(e) => panic!("a parsed message, serialized, no longer parses: {e}\n{json}"),
    };
    let json_again = serde_json::to_value(&again).expect("serializes");
    // rmcp may drop unknown members on the way (they are not the host's to keep); what the
    // host answers by must survive: the message's id and method.
    for key in ["jsonrpc", "id", "method"] {
        assert_eq!(json.get(key), json_again.get(key), "`{key}` changed: {json} -> {json_again}");
    }
}

fuzz_target!(|data: &[u8]| {
    // HTTP: the whole body is one message.
    if let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(data) {
        check(&message);
    }

    // stdio: newline-delimited messages, arriving in two reads.
    let Some((&split, rest)) = data.split_first() else { return };
    let at = if rest.is_empty() { 0 } else { split as usize % (rest.len() + 1) };
    let mut codec = if split & 1 == 0 {
        JsonRpcMessageCodec::<ClientJsonRpcMessage>::new()
    } else {
        // As with a line-length limit: lines past it are refused and skipped.
        JsonRpcMessageCodec::<ClientJsonRpcMessage>::new_with_max_length(64)
    };
    let mut buf = BytesMut::new();
    let mut decoded = 0usize;
    for (i, chunk) in [&rest[..at], &rest[at..]].into_iter().enumerate() {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let step = if i == 1 { codec.decode_eof(&mut buf) } else { codec.decode(&mut buf) };
            match step {
                Ok(Some(message)) => {
                    check(&message);
                    decoded += 1;
                }
                // A skipped line (a non-MCP notification) also answers `None`: go on while it consumed input.
                Ok(None) if buf.len() < before && !buf.is_empty() => {}
                Ok(None) => break,
                // The transport drops a bad line and reads on; so do we, while input is consumed.
                Err(_) if buf.len() < before && !buf.is_empty() => {}
                Err(_) => break,
            }
            assert!(decoded <= rest.len(), "more messages than bytes");
        }
    }
});

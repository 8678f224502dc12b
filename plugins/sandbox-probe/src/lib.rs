//! A component that tests the sandbox by trying to escape or exhaust it.
//!
//! Every tool here is something a hostile or buggy tool could do; the host's
//! tests call them and check that the limits hold and the host keeps serving.
//!
//! It is built twice: as `sandbox-probe`, for `tool-without-effects` like a component from
//! before the `effects` export (the host must still run it, counting each of its tools as
//! irreversible and open-world), and as `sandbox-probe-declared` (feature `declared`), the same
//! tools declaring what they do, so tests can upgrade from one to the other.

#[cfg(not(feature = "declared"))]
wit_bindgen::generate!({ world: "tool-without-effects", path: "../../wit" });
#[cfg(feature = "declared")]
wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use airlock::tool::{authz, vault};
use exports::airlock::tool::tools::{Guest, ToolDescriptor, ToolError};
use serde_json::{json, Value};

struct Probe;

fn tool(name: &str, description: &str) -> ToolDescriptor {
    ToolDescriptor { name: name.into(), description: description.into(), input_schema: r#"{"type":"object"}"#.into() }
}

impl Guest for Probe {
    fn describe() -> Vec<ToolDescriptor> {
        vec![
            tool("echo", "Return the input unchanged."),
            tool("spin", "Loop forever."),
            tool("hog", "Allocate memory until something stops it."),
            tool("chatty", "Print `bytes` bytes to stdout, then return."),
            tool("huge-output", "Return a string of `bytes` bytes."),
            tool("check", "Ask authz about `relation` on `object`."),
            tool("fetch", "Fetch `url` through `connection`; with `dump_memory`, return all of linear memory as hex."),
            tool("token", "Ask the vault for a short-lived token of `connection`."),
            tool("env", "Report what the sandbox lets it see: environment, files, clock."),
        ]
    }

    fn call(name: String, input: String) -> Result<String, ToolError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(e.to_string()))?;
        let num = |k: &str| input.get(k).and_then(Value::as_u64).unwrap_or(0) as usize;
        let text = |k: &str| input.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        match name.as_str() {
            "echo" => Ok(input.to_string()),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    chunks.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&chunks);
                }
            }
            "chatty" => {
                let line = "x".repeat(1023);
                for _ in 0..num("bytes") / 1024 {
                    println!("{line}");
                }
                Ok("{}".into())
            }
            "huge-output" => Ok(json!("y".repeat(num("bytes"))).to_string()),
            "check" => authz::check(&text("relation"), &text("object"))
                .map(|allowed| json!({ "allowed": allowed }).to_string())
                .map_err(|e| ToolError::Refused(format!("{e:?}"))),
            "fetch" => {
                let req = vault::HttpRequest { method: "GET".into(), url: text("url"), headers: vec![], body: None };
                let resp =
                    vault::fetch(&text("connection"), &req, None).map_err(|e| ToolError::Refused(format!("{e:?}")))?;
                let mut out = json!({ "status": resp.status, "body": String::from_utf8_lossy(&resp.body) });
                if input.get("dump_memory").and_then(Value::as_bool).unwrap_or(false) {
                    out["memory_hex"] = json!(dump_memory());
                }
                Ok(out.to_string())
            }
            "token" => vault::token(&text("connection"))
                .map(|t| json!({ "token": t.token, "expires_in": t.expires_in }).to_string())
                .map_err(|e| ToolError::Refused(format!("{e:?}"))),
            "env" => Ok(json!({
                "env": std::env::vars().collect::<Vec<_>>(),
                "root_readable": std::fs::read_dir("/").is_ok(),
                "etc_passwd": std::fs::read_to_string("/etc/passwd").is_ok(),
            })
            .to_string()),
            other => Err(ToolError::InvalidInput(format!("no tool `{other}`"))),
        }
    }
}

/// Every byte of this instance's linear memory (but address 0), hex-encoded.
fn dump_memory() -> String {
    let len = core::arch::wasm32::memory_size(0) * 65536;
    let mut out = String::with_capacity(len * 2);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for addr in 1..len {
        // SAFETY: every address below memory.size is mapped in wasm linear memory.
        let b = unsafe { core::ptr::read_volatile(addr as *const u8) };
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// What the tools do, when built as `sandbox-probe-declared`: nothing but `fetch` reaches out,
/// and nothing changes anything.
#[cfg(feature = "declared")]
impl exports::airlock::tool::effects::Guest for Probe {
    fn effects() -> Vec<exports::airlock::tool::effects::ToolEffect> {
        use exports::airlock::tool::effects::{Effect, ToolEffect};
        ["echo", "spin", "hog", "chatty", "huge-output", "check", "fetch", "token", "env"]
            .into_iter()
            .map(|tool| ToolEffect {
                tool: tool.into(),
                effect: Effect::ReadOnly,
                idempotent: true,
                open_world: matches!(tool, "fetch" | "token"),
            })
            .collect()
    }
}

/// No output schemas: the probe's results are whatever the hostile tool makes up.
#[cfg(feature = "declared")]
impl exports::airlock::tool::outputs::Guest for Probe {
    fn outputs() -> Vec<exports::airlock::tool::outputs::ToolOutput> {
        Vec::new()
    }
}

export!(Probe);

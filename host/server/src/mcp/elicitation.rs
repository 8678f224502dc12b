//! People in the loop, told through MCP's URL elicitation.
//!
//! `/mcp` is stateless, so the server cannot send a request to the client in the middle of a
//! call (an `elicitation/create` needs an answer routed back to a session). MCP 2026-07-28
//! gives stateless servers the multi round-trip request instead (SEP-2322): a `tools/call`
//! answers `InputRequiredResult` with the elicitations the client must show, and an opaque
//! `requestState`; the client shows them and calls again with the state. Airlock uses it for
//! a client that said it supports URL elicitation (`clientCapabilities.elicitation.url`):
//!
//! - **a call held for approval**: the link is the approval in the console, for the person to
//!   follow or forward: the approver decides, not the caller, so the client's answer changes
//!   nothing. The state is `call:ID`: the retry re-attaches to the held call (the same path as
//!   `POST /v1/calls/{id}/resume`, so only the agent that made it can) and waits, with
//!   progress, for the decision; it runs once when approved.
//! - **a connection not connected yet** (or whose grant the provider refused): the link is the
//!   console's Connections page, where an admin presses Connect; the state is `retry`, and
//!   the retry runs the call anew, once (a second refusal is the plain tool error).
//!
//! Clients without URL elicitation, or on an older protocol, get what they always got:
//! progress notifications that say which approval the call waits for (and its link), and a
//! tool error with the next step.

use std::collections::BTreeMap;

use rmcp::model::{
    ElicitRequest, ElicitRequestParams, InputRequest, InputRequiredResult, ProtocolVersion, RequestMetaObject,
};

/// The `requestState` prefix of a call held for approval.
const HELD: &str = "call:";
/// The `requestState` of a call to run again once the person has connected.
pub const RETRY: &str = "retry";

/// What a retried call carries back in its `requestState`.
#[derive(Debug, PartialEq, Eq)]
pub enum Resumed<'a> {
    /// Re-attach to held call `ID`.
    Held(&'a str),
    /// Run the call again.
    Retry,
}

/// Reads a `requestState` this server issued; `Err` for anything else (it is client input).
pub fn resumed(state: &str) -> Result<Resumed<'_>, String> {
    if state == RETRY {
        return Ok(Resumed::Retry);
    }
    match state.strip_prefix(HELD) {
        Some(id) if !id.is_empty() && id.len() <= 128 => Ok(Resumed::Held(id)),
        _ => Err("`requestState` is not one this server issued: call the tool again without it".into()),
    }
}

/// Whether the client of this request takes URL elicitations in an `InputRequiredResult`:
/// protocol 2026-07-28 or later, and `elicitation.url` among its capabilities.
pub fn supported(meta: &RequestMetaObject) -> bool {
    let modern = meta.protocol_version().is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    modern && meta.client_capabilities().and_then(|c| c.elicitation).is_some_and(|e| e.url.is_some())
}

/// The result that asks the client to show `url` with `message`, and to call again with `state`.
fn ask(id: &str, message: String, url: String, state: String) -> InputRequiredResult {
    let params = ElicitRequestParams::UrlElicitationParams { meta: None, message, url, elicitation_id: id.to_string() };
    let mut requests = BTreeMap::new();
    requests.insert(id.to_string(), InputRequest::Elicitation(ElicitRequest::new(params)));
    InputRequiredResult::new(Some(requests), Some(state))
}

/// For a call held by an approval policy: the approval's page, and the state to re-attach.
pub fn held_for_approval(base: &str, call_id: &str, approval: &airlock_approvals::Approval) -> InputRequiredResult {
    let by = approval.role.as_deref().map(|r| format!(" by a `{r}`")).unwrap_or_default();
    let message = format!(
        "`{}` waits for a person to approve it{by}: {}. The approver decides in Airlock's console (approval `{}`); \
         open the link to follow it or send it to them. The call resumes, and runs once, when they approve.",
        approval.tool, approval.summary, approval.id
    );
    ask(&format!("approval-{}", approval.id), message, approval_url(base, &approval.id), format!("{HELD}{call_id}"))
}

/// For a call refused because `connection` is not connected (or must be reconnected).
pub fn needs_connection(base: &str, connection: &str, why: &str) -> InputRequiredResult {
    let message = format!(
        "This tool needs the connection `{connection}` connected: {why}. A tenant admin connects it on the \
         Connections page (Connect, then sign in at the provider); then the call runs again."
    );
    let url = format!("{base}/console/connections#{}", urlencoding(connection));
    ask(&format!("connect-{connection}"), message, url, RETRY.to_string())
}

/// The console page of approval `id`.
pub fn approval_url(base: &str, id: &str) -> String {
    format!("{base}/console/approvals#{}", urlencoding(id))
}

/// The connection a refusal names when it is "not connected yet" or "needs to be
/// reconnected" (the vault's words), with the reason to show.
pub fn unconnected(message: &str) -> Option<(String, String)> {
    if !(message.contains("is not connected yet") || message.contains("needs to be reconnected")) {
        return None;
    }
    let start = message.find("connection `")? + "connection `".len();
    let len = message[start..].find('`')?;
    let why = if message.contains("is not connected yet") {
        "it was never connected"
    } else {
        "the provider refused its stored grant"
    };
    Some((message[start..start + len].to_string(), why.to_string()))
}

fn urlencoding(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_states_this_server_issued_are_read() {
        assert_eq!(resumed("call:abc"), Ok(Resumed::Held("abc")));
        assert_eq!(resumed("retry"), Ok(Resumed::Retry));
        assert!(resumed("call:").is_err());
        assert!(resumed("anything").is_err());
    }

    #[test]
    fn the_vaults_refusals_name_the_connection_to_connect() {
        let (name, _) = unconnected(
            "connection `crm` is not connected yet: a tenant admin presses Connect (`POST /v1/connections/NAME/connect`...",
        )
        .unwrap();
        assert_eq!(name, "crm");
        let (name, why) =
            unconnected("refused: connection `gh` needs to be reconnected: the provider refused").unwrap();
        assert_eq!((name.as_str(), why.as_str()), ("gh", "the provider refused its stored grant"));
        assert!(unconnected("connection `x` refused").is_none());
    }
}

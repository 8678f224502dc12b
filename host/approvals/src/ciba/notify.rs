//! Outbound notifications: the ping to a client (CIBA Core 10.2) and the approver's device webhook.

use serde::Serialize;

use super::CibaError;

/// What an approver's device is told about a new request: enough to show it, nothing to redeem it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeviceNotice {
    pub approval_id: String,
    pub approver: String,
    pub client_id: String,
    pub scope: String,
    pub binding_message: Option<String>,
    pub tool: &'static str,
    pub action: &'static str,
    /// Unix milliseconds.
    pub expires_at: i64,
}

async fn post(req: reqwest::RequestBuilder, url: &str) -> Result<(), CibaError> {
    let fail = |reason: String| CibaError::Notify { url: url.to_string(), reason };
    let resp = req.send().await.map_err(|e| fail(e.without_url().to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(fail(format!("answered {}", resp.status())))
    }
}

/// Tells a ping-mode client that `auth_req_id` is ready to be redeemed.
pub(crate) async fn ping(http: &reqwest::Client, url: &str, bearer: &str, auth_req_id: &str) -> Result<(), CibaError> {
    let body = serde_json::json!({ "auth_req_id": auth_req_id });
    post(http.post(url).bearer_auth(bearer).json(&body), url).await
}

/// Tells an approver's device about a request waiting for them.
pub(crate) async fn device(http: &reqwest::Client, url: &str, notice: &DeviceNotice) -> Result<(), CibaError> {
    post(http.post(url).json(notice), url).await
}

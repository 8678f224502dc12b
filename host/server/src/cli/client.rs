//! The client commands: each is one or two HTTP requests to a running host.

use serde_json::{json, Value};

use crate::api::requests::{Decision, NewAgent, NewMasterKey, PutConnection, RotateSecret, TupleBody, TupleJson};

use super::{AgentCmd, ApprovalCmd, Command, ComponentCmd, ConnectionCmd, ModelCmd, Remote, TupleCmd, VaultCmd};

/// A small client of the host's HTTP API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client sending `token` as bearer to `base`.
    pub fn new(base: &str, token: &str) -> Client {
        Client { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_string(), token: token.to_string() }
    }

    /// The operator's client (host-wide work): `AIRLOCK_ADMIN_TOKEN`, else `DATA_DIR/admin.token`.
    pub fn operator(remote: &Remote) -> Result<Client, String> {
        let token = token_from("AIRLOCK_ADMIN_TOKEN", &remote.data_dir.join("admin.token"), "the operator's token")?;
        Ok(Client::new(&remote.server, &token))
    }

    /// A tenant member's client: `AIRLOCK_TOKEN`, else (for the `default` tenant) its first
    /// admin's token in `DATA_DIR/default-admin.token`.
    pub fn tenant(remote: &Remote) -> Result<Client, String> {
        if let Ok(t) = std::env::var("AIRLOCK_TOKEN") {
            if !t.is_empty() {
                return Ok(Client::new(&remote.server, &t));
            }
        }
        // The person's own token from `airlock login`, while it lasts.
        if let Ok(t) = std::fs::read_to_string(super::people::login_token_file(remote)) {
            if !t.trim().is_empty() {
                return Ok(Client::new(&remote.server, t.trim()));
            }
        }
        if let Some(t) = remote.tenant.as_deref().filter(|t| *t != crate::config::DEFAULT_TENANT) {
            return Err(format!(
                "set AIRLOCK_TOKEN to a member token of tenant `{t}` (from `airlock invitation accept CODE`, or \
                 `airlock token create` by one of its admins)"
            ));
        }
        let file = remote.data_dir.join(crate::tenancy::DEFAULT_ADMIN_TOKEN_FILE);
        let token = token_from("AIRLOCK_TOKEN", &file, "a tenant member's token")?;
        Ok(Client::new(&remote.server, &token))
    }

    /// Sends a request; returns the JSON body of a success, or the API's error message.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Body>) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Bytes(b)) => req.header("content-type", "application/wasm").body(b),
            Some(Body::Text(t)) => req.header("content-type", "text/plain; charset=utf-8").body(t),
            Some(Body::Tar(b)) => req.header("content-type", "application/x-tar").body(b),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach airlock at {}: {e}. Is `airlock serve` running?", self.base))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| format!("reading the response: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
            let message =
                value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| value.to_string());
            Err(format!("{code} ({status}): {message}"))
        }
    }

    /// GETs `path` and writes the body to `out` as it arrives; the number of bytes written.
    pub async fn download(&self, path: &str, out: &mut dyn std::io::Write) -> Result<u64, String> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("cannot reach airlock at {}: {e}. Is `airlock serve` running?", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
            let message =
                value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| value.to_string());
            return Err(format!("{code} ({status}): {message}"));
        }
        let mut written = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading the response: {e}"))? {
            out.write_all(&chunk).map_err(|e| format!("writing the download: {e}"))?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    /// POSTs `body` asking for NDJSON, and hands each line to `on_line` as it arrives.
    pub async fn stream_ndjson(&self, path: &str, body: Body, mut on_line: impl FnMut(Value)) -> Result<(), String> {
        let url = format!("{}{}", self.base, path);
        let req = self.http.post(&url).bearer_auth(&self.token).header("accept", "application/x-ndjson");
        let req = match body {
            Body::Json(v) => req.json(&v),
            Body::Tar(b) => req.header("content-type", "application/x-tar").body(b),
            Body::Bytes(b) => req.header("content-type", "application/wasm").body(b),
            Body::Text(t) => req.header("content-type", "text/plain; charset=utf-8").body(t),
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach airlock at {}: {e}. Is `airlock serve` running?", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
            let message =
                value.get("message").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| value.to_string());
            return Err(format!("{code} ({status}): {message}"));
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading the response: {e}"))? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                    on_line(v);
                }
            }
        }
        Ok(())
    }
}

/// A token from environment variable `var`, else from `file`.
fn token_from(var: &str, file: &std::path::Path, what: &str) -> Result<String, String> {
    if let Ok(t) = std::env::var(var) {
        if !t.is_empty() {
            return Ok(t);
        }
    }
    std::fs::read_to_string(file).map(|t| t.trim().to_string()).map_err(|e| {
        format!(
            "cannot read {what} from `{}`: {e}. Set {var}, or --data-dir to the host's data directory",
            file.display()
        )
    })
}

/// A request body.
pub enum Body {
    Json(Value),
    Bytes(Vec<u8>),
    Text(String),
    /// A package in its transport form.
    Tar(Vec<u8>),
}

impl Body {
    /// One of the API's own request types ([`crate::api::requests`]) as a JSON body.
    pub(crate) fn of<T: serde::Serialize>(request: &T) -> Result<Body, String> {
        serde_json::to_value(request).map(Body::Json).map_err(|e| format!("encoding the request: {e}"))
    }
}

pub(super) fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(super) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) async fn run(command: Command) -> Result<(), String> {
    use reqwest::Method;
    match command {
        Command::Serve { .. }
        | Command::Mcp { .. }
        | Command::Key { .. }
        | Command::Package { .. }
        | Command::Install { .. }
        | Command::Upgrade { .. }
        | Command::Uninstall { .. }
        | Command::Catalog { .. }
        | Command::Publisher(_)
        | Command::Policy(_) => {
            return Err("`serve`, `mcp`, `key` and `package` run locally, `policy` and `ciba` have their own clients; \
                        they are not handled here"
                .into())
        }
        Command::Ciba(cmd) => return super::ciba::run(cmd).await,
        Command::Component(ComponentCmd::Add { remote, name, file }) => {
            let wasm = std::fs::read(&file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            eprintln!("uploading and compiling `{name}` ({} KiB)...", wasm.len() / 1024);
            let v = Client::operator(&remote)?
                .send(Method::POST, &format!("/v1/components/{}", enc(&name)), Some(Body::Bytes(wasm)))
                .await?;
            print(&v);
        }
        Command::Component(ComponentCmd::List { remote }) => {
            print(&Client::operator(&remote)?.send(Method::GET, "/v1/components", None).await?)
        }
        Command::Tuple(TupleCmd::Write { remote, user, relation, object }) => {
            let tuple = TupleJson { user, relation, object };
            let body = Body::of(&TupleBody { tenant: remote.tenant.clone(), writes: vec![tuple], deletes: vec![] })?;
            print(&Client::tenant(&remote)?.send(Method::POST, "/v1/tuples", Some(body)).await?);
        }
        Command::Tuple(TupleCmd::Delete { remote, user, relation, object }) => {
            let tuple = TupleJson { user, relation, object };
            let body = Body::of(&TupleBody { tenant: remote.tenant.clone(), writes: vec![], deletes: vec![tuple] })?;
            print(&Client::tenant(&remote)?.send(Method::POST, "/v1/tuples", Some(body)).await?);
        }
        Command::Tuple(TupleCmd::List { remote, object }) => {
            let mut path = format!("/v1/tuples?tenant={}", enc(&remote.t()));
            if let Some(o) = object {
                path.push_str(&format!("&object={}", enc(&o)));
            }
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        Command::Model(ModelCmd::Write { remote, file }) => {
            let dsl = std::fs::read_to_string(&file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
            let path = format!("/v1/authorization-model?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::PUT, &path, Some(Body::Text(dsl))).await?);
        }
        Command::Model(ModelCmd::Show { remote }) => {
            let path = format!("/v1/authorization-model?tenant={}", enc(&remote.t()));
            let v = Client::tenant(&remote)?.send(Method::GET, &path, None).await?;
            println!("{}", v.get("dsl").and_then(Value::as_str).unwrap_or_default());
        }
        Command::Agent(AgentCmd::Create { remote, name }) => {
            let body = Body::of(&NewAgent { tenant: remote.tenant.clone(), name })?;
            let v = Client::tenant(&remote)?.send(Method::POST, "/v1/agents", Some(body)).await?;
            print(&v);
            eprintln!("keep the token now: it is stored only as a hash and cannot be shown again");
        }
        Command::Agent(AgentCmd::Revoke { remote, name }) => {
            let path = format!("/v1/agents/{}?tenant={}", enc(&name), enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?);
        }
        Command::Connection(ConnectionCmd::Put {
            remote,
            name,
            kind,
            agent,
            token_url,
            client_id,
            scope,
            authorize_url,
            expose_token,
            allow_private_network,
            hosts,
            base_url,
            requires_grant,
            secret_env,
            allow_undeclared_host,
        }) => {
            let secret = secret_from_env(&secret_env)?;
            let oauth = match (token_url, client_id) {
                (Some(token_url), Some(client_id)) => {
                    Some(airlock_vault::OAuthConfig { token_url, client_id, scope, authorize_url })
                }
                (None, None) => None,
                _ => return Err("an OAuth2 connection needs both `--token-url` and `--client-id`".into()),
            };
            // Left out, the host takes them from the slot being filled (or says they are required).
            let kind = kind.map(|k| serde_json::from_value(Value::String(k))).transpose().map_err(|_| {
                "--kind is one of api_key, bearer, oauth2_refresh, oauth2_client_credentials".to_string()
            })?;
            let body = Body::of(&PutConnection {
                tenant: remote.tenant.clone(),
                kind,
                placement: None,
                base_url,
                allowed_hosts: (!hosts.is_empty()).then_some(hosts),
                requires_grant,
                oauth,
                allow_private_network,
                expose_token,
                agent,
                secret: secret.to_string(),
                allow_undeclared_hosts: allow_undeclared_host,
            })?;
            let path = format!("/v1/connections/{}", enc(&name));
            print(&Client::tenant(&remote)?.send(Method::PUT, &path, Some(body)).await?);
        }
        Command::Connection(ConnectionCmd::Rotate { remote, name, agent, secret_env }) => {
            let secret = secret_from_env(&secret_env)?;
            let body = Body::of(&RotateSecret { tenant: remote.tenant.clone(), agent, secret: secret.to_string() })?;
            let path = format!("/v1/connections/{}/secret", enc(&name));
            print(&Client::tenant(&remote)?.send(Method::POST, &path, Some(body)).await?);
        }
        Command::Connection(ConnectionCmd::List { remote }) => {
            let path = format!("/v1/connections?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        Command::Connection(ConnectionCmd::Delete { remote, name, agent }) => {
            let mut path = format!("/v1/connections/{}?tenant={}", enc(&name), enc(&remote.t()));
            if let Some(agent) = agent {
                path.push_str(&format!("&agent={}", enc(&agent)));
            }
            print(&Client::tenant(&remote)?.send(Method::DELETE, &path, None).await?);
        }
        Command::Vault(VaultCmd::RotateTenantKey { remote }) => {
            let path = format!("/v1/vault/rotate-tenant-key?tenant={}", enc(&remote.t()));
            print(&Client::tenant(&remote)?.send(Method::POST, &path, Some(Body::Json(json!({})))).await?);
        }
        Command::Vault(VaultCmd::RotateMasterKey { remote, new_key_env }) => {
            let new_key = zeroize::Zeroizing::new(
                std::env::var(&new_key_env)
                    .map_err(|_| format!("set the new master key (base64, 32 bytes) in `{new_key_env}`"))?,
            );
            let body = NewMasterKey { new_key: new_key.to_string() };
            print(
                &Client::operator(&remote)?
                    .send(Method::POST, "/v1/vault/rotate-master-key", Some(Body::of(&body)?))
                    .await?,
            );
        }
        Command::Tools { remote, token } => {
            print(&Client::new(&remote.server, &token).send(Method::GET, "/v1/tools", None).await?)
        }
        Command::Call { remote, token, tool, input } => {
            let input: Value = serde_json::from_str(&input).map_err(|e| format!("input is not JSON: {e}"))?;
            eprintln!("calling `{tool}` (a tool that needs approval waits here until someone decides)...");
            let path = format!("/v1/tools/{}/call", enc(&tool));
            print(&Client::new(&remote.server, &token).send(Method::POST, &path, Some(Body::Json(input))).await?);
        }
        Command::Approvals(ApprovalCmd::List { remote, status }) => {
            let mut path = format!("/v1/approvals?tenant={}", enc(&remote.t()));
            if status != "all" {
                path.push_str(&format!("&status={}", enc(&status)));
            }
            print(&Client::tenant(&remote)?.send(Method::GET, &path, None).await?);
        }
        Command::Approvals(ApprovalCmd::Verify { remote, id, proof }) => {
            let found: Value = match proof {
                Some(file) => {
                    let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a saved proof: {e}", file.display()))?
                }
                None => {
                    let path = format!("/v1/approvals/{}/proof", enc(&id));
                    Client::tenant(&remote)?.send(Method::GET, &path, None).await?
                }
            };
            let approval: airlock_approvals::Approval = serde_json::from_value(found["approval"].clone())
                .map_err(|e| format!("the proof has no approval: {e}"))?;
            if approval.id != id {
                return Err(format!("the proof is of approval `{}`, not `{id}`", approval.id));
            }
            let proof: crate::signin::Proof =
                serde_json::from_value(found["proof"].clone()).map_err(|e| format!("the proof is malformed: {e}"))?;
            match proof.verify(Some(&approval)) {
                Ok(()) => println!(
                    "VALID: {} approved {} ({}) with the passkey of {} (registered by {}); signed digest {}",
                    approval.approver.as_deref().unwrap_or("?"),
                    approval.id,
                    approval.tool,
                    proof.registration.member,
                    proof.registration.via,
                    proof.digest
                ),
                Err(reason) => return Err(format!("NOT VALID: approval {id}: {reason}")),
            }
        }
        Command::Approvals(ApprovalCmd::Approve { remote, id }) => {
            let decision =
                Decision { tenant: remote.tenant.clone(), approver: None, approve: true, reason: None, step_up: None };
            let path = format!("/v1/approvals/{}/decision", enc(&id));
            print(&Client::tenant(&remote)?.send(Method::POST, &path, Some(Body::of(&decision)?)).await?);
        }
        Command::Approvals(ApprovalCmd::Deny { remote, id, reason }) => {
            let decision =
                Decision { tenant: remote.tenant.clone(), approver: None, approve: false, reason, step_up: None };
            let path = format!("/v1/approvals/{}/decision", enc(&id));
            print(&Client::tenant(&remote)?.send(Method::POST, &path, Some(Body::of(&decision)?)).await?);
        }
        Command::Audit { remote, verify: true, host: on_host, .. } => {
            let (client, path) = if on_host {
                (Client::operator(&remote)?, "/v1/host/audit/verify".to_string())
            } else {
                (Client::tenant(&remote)?, format!("/v1/audit/verify?tenant={}", enc(&remote.t())))
            };
            let v = client.send(Method::GET, &path, None).await?;
            print(&v);
            return audit_verdict(&v);
        }
        Command::Audit { remote, verify: false, host: on_host, after, limit, .. } => {
            let (client, path) = if on_host {
                (Client::operator(&remote)?, format!("/v1/host/audit?after={after}&limit={limit}"))
            } else {
                (Client::tenant(&remote)?, format!("/v1/audit?tenant={}&after={after}&limit={limit}", enc(&remote.t())))
            };
            print(&client.send(Method::GET, &path, None).await?);
        }
        Command::Tenant(_)
        | Command::Token(_)
        | Command::User(_)
        | Command::Invitation(_)
        | Command::Whoami { .. }
        | Command::Login { .. } => {
            return super::people::run(command).await;
        }
    }
    Ok(())
}

/// One line saying whether a verified chain is intact; an error (so a non-zero exit) when not.
fn audit_verdict(v: &Value) -> Result<(), String> {
    let events = v.get("events").and_then(Value::as_i64).unwrap_or(0);
    let chain = v.get("tenant").and_then(Value::as_str).unwrap_or("?");
    match v.get("broken_at").and_then(Value::as_i64) {
        None => {
            eprintln!("intact: {events} events of `{chain}`, every hash verified");
            Ok(())
        }
        Some(seq) => {
            let reason = v.get("reason").and_then(Value::as_str).unwrap_or("hash mismatch");
            Err(format!("BROKEN at event {seq} of `{chain}` ({reason}): the trail was altered from there on"))
        }
    }
}

/// `carol` or `user:carol` as a subject.
pub(super) fn subject_of(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("user:{name}")
    }
}

/// A secret read from the environment variable `name`, so it stays out of shell history.
pub(super) fn secret_from_env(name: &str) -> Result<zeroize::Zeroizing<String>, String> {
    std::env::var(name)
        .map(zeroize::Zeroizing::new)
        .map_err(|_| format!("set the secret in the environment variable `{name}`"))
}

//! The OAuth / CIBA form requests, from the form body on, through the light crates that judge
//! them: `airlock_approvals::ciba::CibaProvider` (client authentication, the backchannel
//! authentication request, the token endpoint's CIBA grant) and `airlock_identity`'s RFC 8693
//! token exchange. One SQLite database in a temporary directory, made once, holds tenant
//! `acme` with approvers `alice` (also `iss_sub` https://op.fuzz/ + alice-sub) and `bob`, and
//! clients `poller` (poll mode) and `pinger` (ping mode).
//!
//! The input is an `application/x-www-form-urlencoded` body. It is split into parameters as
//! the server's handlers do (`url::form_urlencoded`, a repeated parameter refused); that
//! splitting is a copy: the handlers live in `host/server`, which this crate does not build.
//! Then:
//! - `client_id` / `client_secret` authenticate (`client_secret_post`); `$SECRET` stands for
//!   the client's real secret, anything else must be refused;
//! - with `grant_type` = the CIBA grant: `check_grant_type` and `poll` with the `auth_req_id`,
//!   which nobody issued, so it must be refused;
//! - with `grant_type` = token exchange: `exchange(subject_token, actor_token, audience)`,
//!   where `$USER` / `$AGENT` stand for tokens the host issues to alice / agent `fuzz`; what
//!   it issues must verify as alice delegating to that agent;
//! - else a backchannel authentication request: what is accepted names a real approver, has an
//!   expiry within bounds and, polled, is pending, then too fast (`slow_down`), and refused
//!   to any other client.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use airlock_approvals::ciba::{
    Approver, AuthRequest, CibaConfig, CibaError, CibaProvider, ClientReg, DeliveryMode, NewClient, GRANT_TYPE,
};
use airlock_approvals::Approvals;
use airlock_identity::{Identity, GRANT_TYPE_TOKEN_EXCHANGE};
use airlock_store::Db;
use airlock_vault::MasterKey;
use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;
use common::remove_at_exit;

const TENANT: &str = "acme";
const ISSUER: &str = "https://airlock.fuzz";
const MASTER: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

struct Fixture {
    rt: tokio::runtime::Runtime,
    ciba: CibaProvider,
    identity: Identity,
    config: CibaConfig,
    /// client id -> (registration, secret)
    clients: HashMap<String, (ClientReg, String)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::Builder::new().prefix("airlock-fuzz-ciba-").tempdir().expect("dir").keep();
        remove_at_exit(dir.clone());
        let config = CibaConfig::default();
        let (ciba, identity, clients) = rt.block_on(async {
            let db = Db::connect(&Db::sqlite_url(&dir)).await.expect("db");
            let master = MasterKey::from_base64(MASTER).expect("master key");
            let ciba = CibaProvider::new(db.clone(), Arc::new(Approvals::new(db.clone())), Arc::new(master))
                .expect("provider")
                .with_config(config.clone())
                .expect("config");
            let alice = Approver {
                name: "alice".into(),
                iss: Some("https://op.fuzz/".into()),
                sub: Some("alice-sub".into()),
                device_webhook: None,
            };
            ciba.put_approver(TENANT, &alice).await.expect("alice");
            let bob = Approver { name: "bob".into(), iss: None, sub: None, device_webhook: None };
            ciba.put_approver(TENANT, &bob).await.expect("bob");
            let mut clients = HashMap::new();
            for (id, mode, endpoint) in
                [("poller", DeliveryMode::Poll, None), ("pinger", DeliveryMode::Ping, Some("https://client.fuzz/cb"))]
            {
                let new = NewClient {
                    client_id: id.into(),
                    delivery_mode: mode,
                    notification_endpoint: endpoint.map(str::to_string),
                };
                clients.insert(id.to_string(), ciba.register_client(TENANT, &new).await.expect("client"));
            }
            let master = MasterKey::from_base64(MASTER).expect("master key");
            let identity = Identity::open(db, Arc::new(master), ISSUER.to_string()).await.expect("identity");
            (ciba, identity, clients)
        });
        Fixture { rt, ciba, identity, config, clients }
    })
}


/// The server's form splitting (`api::ciba::parse_form`): a repeated parameter is refused.
fn parse_form(body: &[u8]) -> Option<HashMap<String, String>> {
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if form.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(form)
}

fn token_exchange(f: &Fixture, form: &HashMap<String, String>) {
    let issue = |placeholder: &str, value: Option<&String>| -> Option<String> {
        let value = value?;
        if value != placeholder {
            return Some(value.clone());
        }
        let issued = match placeholder {
            "$USER" => f.rt.block_on(f.identity.issue_user_token(TENANT, "alice", ISSUER, None)),
            _ => f.rt.block_on(f.identity.issue_agent_token(TENANT, "fuzz", ISSUER, None)),
        };
        Some(issued.expect("issue").access_token)
    };
    let (Some(subject), Some(actor)) =
        (issue("$USER", form.get("subject_token")), issue("$AGENT", form.get("actor_token")))
    else {
        return;
    };
    let audience = form.get("audience").map(String::as_str).unwrap_or(ISSUER);
    let Ok(issued) = f.rt.block_on(f.identity.exchange(&subject, &actor, audience, None)) else { return };
    let v = f.rt.block_on(f.identity.verify(&issued.access_token, audience)).expect("an exchanged token verifies");
    assert_eq!(v.user.as_deref(), Some("alice"));
    assert_eq!(v.agent.as_deref(), Some("fuzz"));
    assert_eq!(v.act.first().map(String::as_str), Some("agent:fuzz"));
    assert_eq!(v.tenant, TENANT);
}

fuzz_target!(|data: &[u8]| {
    let Some(form) = parse_form(data) else { return };
    let f = fixture();
    let tenant = form.get("tenant").map(String::as_str).unwrap_or(TENANT);

    // client_secret_post; `$SECRET` is the client's own secret.
    let client = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => {
            let known = f.clients.get(id.as_str());
            let secret = match known {
                Some((_, real)) if secret == "$SECRET" => real.clone(),
                _ => secret.clone(),
            };
            let authenticated = f.rt.block_on(f.ciba.authenticate_client(tenant, id, &secret));
            match (authenticated, known) {
                (Ok(c), Some((reg, real))) if secret == *real && tenant == TENANT => {
                    assert_eq!(c.client_id, reg.client_id);
                    Some(c)
                }
                (Ok(c), _) => panic!("client `{}` authenticated with a wrong secret or tenant", c.client_id),
                (Err(_), _) => None,
            }
        }
        _ => None,
    };
    // Without (valid) credentials the request still goes on as the client it names, so the
    // rest of the form is reached without guessing a secret.
    let client = client.or_else(|| {
        let id = form.get("client_id").map(String::as_str).unwrap_or("poller");
        f.clients.get(id).map(|(c, _)| c.clone())
    });
    let Some(client) = client else { return };

    match form.get("grant_type").map(String::as_str) {
        Some(GRANT_TYPE_TOKEN_EXCHANGE) => token_exchange(f, &form),
        Some(grant) => {
            if CibaProvider::check_grant_type(grant).is_ok() {
                assert_eq!(grant, GRANT_TYPE);
                if let Some(id) = form.get("auth_req_id") {
                    match f.rt.block_on(f.ciba.poll(tenant, &client, id)) {
                        Ok(_) => panic!("an auth_req_id nobody issued redeemed tokens"),
                        Err(_) => {}
                    }
                }
            }
        }
        None => {
            let req = AuthRequest {
                scope: form.get("scope").cloned(),
                login_hint: form.get("login_hint").cloned(),
                login_hint_token: form.get("login_hint_token").cloned(),
                id_token_hint: form.get("id_token_hint").cloned(),
                binding_message: form.get("binding_message").cloned(),
                requested_expiry: form.get("requested_expiry").cloned(),
                user_code: form.get("user_code").cloned(),
                client_notification_token: form.get("client_notification_token").cloned(),
            };
            let hint = req.login_hint.clone().unwrap_or_default();
            let scope = req.scope.clone().unwrap_or_default();
            let Ok(answer) = f.rt.block_on(f.ciba.backchannel_authorize(tenant, &client, req)) else { return };
            assert_eq!(tenant, TENANT, "a request was accepted in a tenant with no approvers");
            assert!(scope.split_whitespace().any(|s| s == "openid"), "accepted scope `{scope}`");
            assert!((1..=f.config.max_expiry).contains(&answer.expires_in), "expires_in {}", answer.expires_in);
            assert_eq!(answer.interval, f.config.interval);
            let approver = f.rt.block_on(f.ciba.approver_for(tenant, &answer.approval_id)).expect("approver_for");
            let approver = approver.expect("the request names an approver");
            assert!(approver == "alice" || approver == "bob", "approver `{approver}` from hint `{hint}`");
            // A request of a second or two may really have expired by the time it is polled.
            let short = answer.expires_in < 5;
            match f.rt.block_on(f.ciba.poll(tenant, &client, &answer.auth_req_id)) {
                Err(CibaError::AuthorizationPending) => {}
                Err(CibaError::ExpiredToken) if short => {}
                other => panic!("a fresh request polled as {other:?}"),
            }
            match f.rt.block_on(f.ciba.poll(tenant, &client, &answer.auth_req_id)) {
                Err(CibaError::SlowDown { .. }) => {}
                Err(CibaError::ExpiredToken) if short => {}
                other => panic!("an immediate second poll answered {other:?}"),
            }
            let other = if client.client_id == "poller" { "pinger" } else { "poller" };
            let (other, _) = &f.clients[other];
            match f.rt.block_on(f.ciba.poll(tenant, other, &answer.auth_req_id)) {
                Err(CibaError::InvalidGrant) => {}
                other => panic!("another client's poll answered {other:?}"),
            }
        }
    }
});

//! `airlock:tool/authz`: relationship checks as the calling agent.

use serde_json::json;

use crate::bindings::airlock::tool::authz;
use crate::bindings::airlock::tool::types::Error;
use crate::state::CallState;

impl authz::Host for CallState {
    async fn check(&mut self, relation: String, object: String) -> wasmtime::Result<Result<bool, Error>> {
        let agent = match super::agent(self) {
            Ok(a) => a.to_string(),
            Err(e) => return Ok(Err(e)),
        };
        let answer = self.services.rebac.check_now(&self.ctx.tenant, &agent, &relation, &object).await;
        let outcome = match &answer {
            Ok(true) => "allowed",
            Ok(false) => "denied",
            Err(_) => "error",
        };
        let detail = json!({ "relation": relation, "object": object });
        self.services.audit.record(self.event("authz.check", outcome, detail, &[]));
        Ok(answer.map_err(|e| match e {
            airlock_rebac::RebacError::InvalidTuple(e) => Error::Invalid(e.to_string()),
            other => Error::Unavailable(other.to_string()),
        }))
    }

    async fn list_objects(
        &mut self,
        relation: String,
        object_type: String,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let agent = match super::agent(self) {
            Ok(a) => a.to_string(),
            Err(e) => return Ok(Err(e)),
        };
        let answer = self.services.rebac.list_objects_now(&self.ctx.tenant, &agent, &relation, &object_type).await;
        let detail = json!({ "relation": relation, "object_type": object_type,
                             "count": answer.as_ref().map(Vec::len).unwrap_or(0) });
        let outcome = if answer.is_ok() { "ok" } else { "error" };
        self.services.audit.record(self.event("authz.list_objects", outcome, detail, &[]));
        Ok(answer.map_err(|e| match e {
            airlock_rebac::RebacError::InvalidTuple(e) => Error::Invalid(e.to_string()),
            other => Error::Unavailable(other.to_string()),
        }))
    }
}

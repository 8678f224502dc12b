//! One module per `airlock:tool` interface: the only authority a component has.
//!
//! Each import acts as the call's agent, re-checks authorization at the
//! moment of use (a revoke takes effect mid-call), and records its decision
//! in the audit trail.

mod approval;
mod authz;
mod vault;

use crate::bindings::airlock::tool::types;
use crate::state::CallState;

impl types::Host for CallState {}

/// The agent, or a refusal when the host itself is the caller (describe).
fn agent(state: &CallState) -> Result<&str, types::Error> {
    if state.ctx.agent.is_empty() {
        Err(types::Error::Denied("host interfaces are not available while the component describes itself".into()))
    } else {
        Ok(&state.ctx.agent)
    }
}

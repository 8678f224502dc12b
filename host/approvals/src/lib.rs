//! Human approval of high-risk actions, and the authority ledger that makes each approval
//! usable once, for exactly the action it was given for.
//!
//! - [`approval`]: requests, decisions, waiting (also across restarts and processes).
//! - [`ledger`]: grants, Issued -> Claimed -> Consumed, with an append-only event history.
//! - [`policy`]: which tool actions need which approver role.
//! - [`runs`]: runs of an agent gated by an entry approval.
//! - [`text`]: what an approver reads, written by the host from the bound action.
//! - [`canonical`]: the canonical JSON the argument digest is taken over.
//! - [`ciba`]: OpenID CIBA, as the provider for Airlock's approvers and as a client of an external OP.

pub mod approval;
pub mod canonical;
pub mod ciba;
pub mod ledger;
pub mod policy;
pub mod runs;
pub mod text;

pub use approval::{
    digest, Approval, ApprovalError, Approvals, NewApproval, PendingLimits, Status, DEFAULT_TTL, MAX_TTL,
    POLL_SOLE_HOST, POLL_WITH_SIGNALS,
};
pub use canonical::{args_digest, canonical_json};
pub use ledger::{
    BindingField, Cancellation, Claim, Grant, GrantSpec, GrantState, Ledger, LedgerError, LedgerEvent, Presented,
};
pub use policy::{Policies, Policy, PolicyError, PolicySpec, ANY_ACTION, EFFECTS, EFFECT_PREFIX, ENTRY_ACTION};
pub use runs::{Run, RunState, Runs};

//! Tool components built from `plugins/` by this crate's build script and
//! compiled into the binary, so a fresh host has something to run.

/// Billing: `lookup-customer` and `refund` (uses authz, approval and vault).
pub const BILLING: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/billing.wasm"));

/// Hello: `greet`, no host interface; the first tool to try on a new host.
pub const HELLO: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/hello.wasm"));

/// Customer offboarding: five steps through the vault, two of them behind CFO / DPO approval
/// policies. Installed from the marketplace, not registered by `serve`.
pub const OFFBOARDING: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/offboarding.wasm"));

/// Code review: a GitHub pull request, its changed files, a review; only on repositories the
/// agent holds `review` on. Installed from the marketplace (`marketplace/code-review`).
pub const CODE_REVIEW: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/code_review.wasm"));

/// Marketing's ContentBot: drafts and publishes WordPress.com posts (publishing behind a
/// `marketing_lead` approval policy). Installed from the marketplace (`marketplace/contentbot`).
pub const CONTENTBOT: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/contentbot.wasm"));

/// CRM: finds, creates and updates HubSpot contacts. Installed from the marketplace
/// (`marketplace/crm`).
pub const CRM: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/crm.wasm"));

/// Incidents: lists, acknowledges and annotates PagerDuty incidents. Installed from the
/// marketplace (`marketplace/incident`).
pub const INCIDENT: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/incident.wasm"));

/// A deliberately hostile component for testing the sandbox. Not registered by `serve`.
pub const SANDBOX_PROBE: &[u8] = include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/sandbox_probe.wasm"));

/// [`SANDBOX_PROBE`] declaring what its tools do (`airlock:tool/effects`), for upgrade tests.
pub const SANDBOX_PROBE_DECLARED: &[u8] =
    include_bytes!(concat!(env!("AIRLOCK_PLUGIN_DIR"), "/sandbox_probe_declared.wasm"));

/// Components `serve` registers on start when absent: (name, wasm).
pub const DEFAULT_COMPONENTS: &[(&str, &[u8])] = &[("billing", BILLING), ("hello", HELLO)];

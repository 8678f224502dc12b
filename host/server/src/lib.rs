//! The Airlock host: the engines wired together, the gate every tool call
//! passes, the HTTP API and the `airlock` command line.
//!
//! - [`app::Airlock`] opens storage and every engine from a [`config::Config`];
//! - [`gate`] is the path of one call: authenticate, authorize, run, audit;
//! - [`policy_gate`] is the host's own authority on that path: approval policies, grants, runs;
//! - [`api`] serves it over HTTP (axum), [`mcp`] over the Model Context Protocol;
//!   [`cli`] is the command line;
//! - [`marketplace`] installs, upgrades and uninstalls agent packages into a tenant;
//! - [`ciba`] sends a tenant's approvals to its external OpenID Provider (CIBA);
//! - [`tenancy`] holds tenants, the API tokens of members and operators, and invitations;
//!   `api::auth` is the one door every route passes;
//! - [`signin`] is how people prove who they are: passkeys, sessions, the approval step-up;
//! - [`connect`] gets an OAuth2 connection its refresh token through the provider (Connect);
//! - [`console`] is the pages people use in a browser, served by the host;
//! - [`audit_checkpoints`] signs the audit chains' heads, so a trail verifies offline;
//! - [`telemetry`] is what operators watch: Prometheus metrics and OpenTelemetry traces.

pub mod agents;
pub mod api;
pub mod app;
pub mod audit_checkpoints;
pub mod bundled;
pub mod ciba;
pub mod cli;
pub mod config;
pub mod connect;
pub mod console;
pub mod gate;
pub mod marketplace;
pub mod mcp;
pub mod memory;
pub mod oauth_server;
pub mod policy_gate;
pub mod quotas;
pub mod signin;
pub mod telemetry;
pub mod tenancy;

pub use app::Airlock;
pub use config::Config;

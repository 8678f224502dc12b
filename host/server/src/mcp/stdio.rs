//! `airlock mcp --agent NAME`: MCP over stdio, for local clients that spawn a process.
//!
//! The process opens the host's state itself (the same data directory or database as
//! `airlock serve`) and serves one agent. Whoever can start it can read the data directory,
//! so naming the agent is enough; the agent must exist and not be revoked. stdout carries
//! the protocol only; messages go to stderr.

use std::sync::Arc;

use rmcp::ServiceExt;

use super::AirlockMcp;
use crate::agents::Agent;
use crate::Airlock;

/// Serves MCP on stdin/stdout as `agent` until the client closes stdin.
pub async fn serve(host: Arc<Airlock>, agent: Agent) -> Result<(), String> {
    if !host.agents.exists(&agent.tenant, &agent.name).await.map_err(|e| e.to_string())? {
        return Err(format!(
            "no live agent `{}` in tenant `{}`: create it with `airlock agent create {}`",
            agent.name, agent.tenant, agent.name
        ));
    }
    eprintln!("airlock: serving MCP on stdio as `{}` (tenant `{}`)", agent.subject(), agent.tenant);
    let server = AirlockMcp::for_agent(host, agent)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("MCP initialization failed: {e}"))?;
    server.waiting().await.map_err(|e| format!("MCP session ended with an error: {e}"))?;
    Ok(())
}

//! Fairness: how much of the host one tenant, or one agent, may hold at once.
//!
//! The sandbox pool is shared by every tenant (`Limits::pool_slots` instances). A call holds a
//! slot while its component runs, including while the component itself waits in
//! `approval.request`; a call held by an approval *policy* waits before its sandbox exists
//! and holds none. So that one tenant's agents cannot take every slot (256 refunds waiting
//! inside components would make every other tenant's calls fail), a tenant may hold at most
//! [`QuotaLimits::sandboxes_per_tenant`] at once and an agent [`QuotaLimits::sandboxes_per_agent`];
//! past that the call is refused with 429 and `Retry-After`, before anything runs. An agent
//! may also be held to a number of calls per second (off unless configured). Pending
//! approvals have their own bounds (`airlock_approvals::PendingLimits`).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// The bounds in force; see the module docs. Zero turns a per-second bound off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaLimits {
    pub sandboxes_per_tenant: u32,
    pub sandboxes_per_agent: u32,
    pub calls_per_second_per_agent: u32,
}

impl QuotaLimits {
    /// Half the pool per tenant, a quarter per agent, no rate bound.
    pub fn for_pool(pool_slots: u32) -> QuotaLimits {
        QuotaLimits {
            sandboxes_per_tenant: (pool_slots / 2).max(1),
            sandboxes_per_agent: (pool_slots / 4).max(1),
            calls_per_second_per_agent: 0,
        }
    }
}

/// A bound a call ran into: what it was, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}; try again in {retry_after} s")]
pub struct QuotaExceeded {
    pub what: String,
    pub retry_after: u64,
}

/// A token bucket: `rate` per second, bursts up to `rate`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The counters behind [`QuotaLimits`], shared by every call of the host.
pub struct Quotas {
    limits: QuotaLimits,
    /// Sandboxes held, by tenant and by `tenant\0agent`.
    held: Mutex<HashMap<String, u32>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A sandbox slot held by a call; given back when dropped.
pub struct Slot<'q> {
    quotas: &'q Quotas,
    keys: [String; 2],
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut held = self.quotas.held.lock();
        for key in &self.keys {
            if let Some(n) = held.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    held.remove(key);
                }
            }
        }
    }
}

impl Quotas {
    pub fn new(limits: QuotaLimits) -> Quotas {
        Quotas { limits, held: Mutex::default(), buckets: Mutex::default() }
    }

    pub fn limits(&self) -> &QuotaLimits {
        &self.limits
    }

    /// Takes a sandbox slot for a call of `agent` in `tenant`, or says which bound is full.
    pub fn enter(&self, tenant: &str, agent: &str) -> Result<Slot<'_>, QuotaExceeded> {
        let keys = [tenant.to_string(), format!("{tenant}\0{agent}")];
        let mut held = self.held.lock();
        let tenant_n = held.get(&keys[0]).copied().unwrap_or(0);
        let agent_n = held.get(&keys[1]).copied().unwrap_or(0);
        if agent_n >= self.limits.sandboxes_per_agent {
            return Err(QuotaExceeded {
                what: format!("`{agent}` already has {agent_n} calls running, the most it may have at once"),
                retry_after: 1,
            });
        }
        if tenant_n >= self.limits.sandboxes_per_tenant {
            return Err(QuotaExceeded {
                what: format!("tenant `{tenant}` already has {tenant_n} calls running, the most it may have at once"),
                retry_after: 1,
            });
        }
        *held.entry(keys[0].clone()).or_default() += 1;
        *held.entry(keys[1].clone()).or_default() += 1;
        Ok(Slot { quotas: self, keys })
    }

    /// Spends one of `agent`'s calls of this second, when a rate is configured.
    pub fn admit_rate(&self, tenant: &str, agent: &str) -> Result<(), QuotaExceeded> {
        let rate = self.limits.calls_per_second_per_agent;
        if rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(format!("{tenant}\0{agent}")).or_insert(Bucket { tokens: f64::from(rate), at: now });
        let refill = now.duration_since(bucket.at).as_secs_f64() * f64::from(rate);
        bucket.tokens = (bucket.tokens + refill).min(f64::from(rate));
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(QuotaExceeded { what: format!("`{agent}` may make {rate} calls per second"), retry_after: 1 });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Sandboxes held now, all tenants together.
    pub fn held(&self) -> u32 {
        // Keys without a NUL are tenants; `tenant\0agent` keys count the same slots again.
        self.held.lock().iter().filter(|(key, _)| !key.contains('\0')).map(|(_, n)| n).sum()
    }

    /// Sandboxes `tenant` holds now.
    pub fn held_by(&self, tenant: &str) -> u32 {
        self.held.lock().get(tenant).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_and_an_agent_hold_no_more_than_their_share_and_get_it_back() {
        let q =
            Quotas::new(QuotaLimits { sandboxes_per_tenant: 3, sandboxes_per_agent: 2, calls_per_second_per_agent: 0 });
        let a1 = q.enter("acme", "agent:a").unwrap();
        let _a2 = q.enter("acme", "agent:a").unwrap();
        let err = q.enter("acme", "agent:a").err().unwrap();
        assert!(err.what.contains("`agent:a` already has 2 calls running"), "{err}");
        let _b1 = q.enter("acme", "agent:b").unwrap();
        let err = q.enter("acme", "agent:c").err().unwrap();
        assert!(err.what.contains("tenant `acme` already has 3"), "{err}");
        // Another tenant is not affected.
        let _other = q.enter("globex", "agent:a").unwrap();
        drop(a1);
        assert_eq!(q.held_by("acme"), 2);
        q.enter("acme", "agent:c").unwrap();
    }

    #[test]
    fn a_rate_admits_a_burst_then_refuses_until_it_refills() {
        let q =
            Quotas::new(QuotaLimits { sandboxes_per_tenant: 9, sandboxes_per_agent: 9, calls_per_second_per_agent: 5 });
        for _ in 0..5 {
            q.admit_rate("acme", "agent:a").unwrap();
        }
        assert_eq!(q.admit_rate("acme", "agent:a").unwrap_err().retry_after, 1);
        q.admit_rate("acme", "agent:b").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(250));
        q.admit_rate("acme", "agent:a").unwrap();
    }
}

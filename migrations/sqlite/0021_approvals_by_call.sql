-- A waiting call's progress names the approval it waits for: found by the call, not by
-- listing the tenant's pending approvals (thousands may wait at once). Keep the sqlite and
-- postgres flavours in step.
CREATE INDEX approvals_by_call ON approvals (tenant, call_id);

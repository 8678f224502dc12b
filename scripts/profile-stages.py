#!/usr/bin/env python3
"""Charges each perf sample of `airlock serve` to a stage of the gated call, and prints the table.

Usage: profile-stages.py STACKS LOAD_JSONL SECONDS   (scripts/profile-call runs it)

STACKS is `perf script -F comm,tid,ip,sym` output: one sample per block, innermost frame
first. A sample goes to the first stage below with a pattern that some frame of its stack (or
its thread's name) matches, so time in malloc, memcpy or a futex syscall counts for the stage
that called it, and the stages are listed from the most specific to the most general (a wasm
call runs inside the MCP handler, which runs inside hyper). Samples in no stage are "other",
listed with their hottest leaf symbols so that the patterns can be improved.
"""
import collections
import json
import re
import sys

# (stage, pattern over a frame's symbol or the thread's name), most specific first. sqlx runs
# each SQLite statement on its own worker thread (`sqlx-sqlite-wor`), handed over through a
# channel: on the call path only the audit writer talks to the database.
STAGES = [
    ("audit commit (writer, SQLite)", r"airlock_audit::writer|sqlite3|sqlx|sqlx-sqlite-wor|flume"),
    ("audit record (queue, durable wait)", r"airlock_audit::AuditLog::|airlock_audit::chain|CallContext::event"),
    ("sandbox: instantiate", r"instantiate|InstancePre|pooling|InstanceAllocator|decommit|Store.*::new"),
    ("sandbox: call (wasm + host calls)", r"wasmtime|wasm\[|airlock_runtime|cranelift|_call_loaded"),
    ("authz check (rebac)", r"airlock_rebac|may_use"),
    ("token verification", r"jsonwebtoken|ring::|airlock_identity|authenticate_agent|agent_for|api::auth::bearer|verify_token"),
    ("policy lookup, quotas, grants", r"airlock::policy_gate|airlock::quotas|airlock_approvals|admit|sandbox_slot|settle"),
    ("gate (rest of call_tool_with)", r"airlock::gate"),
    ("MCP / JSON-RPC", r"rmcp|airlock::mcp|serde_json"),
    ("HTTP (hyper, axum, tower)", r"hyper|axum|tower|h2::|http_body"),
    ("kernel: network and epoll (outside any stage above)", r"tcp_|sock_|inet_|__sys_sendto|__sys_recvfrom|ep_poll|epoll|skb|ip_|__x64_sys_write|__x64_sys_read|loopback|net_rx|napi"),
    ("tokio scheduling, wakeups, futex (outside any stage above)", r"tokio::runtime|futex|schedule|finish_task_switch|parking_lot|__x64_sys_futex|try_to_wake_up|sched_|tokio::sync"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in STAGES]


def samples(path):
    """Yields (comm, [symbols, innermost first]) for each sample."""
    comm, frames = None, []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.strip():
                if comm is not None:
                    yield comm, frames
                comm, frames = None, []
            elif not line[0].isspace():
                comm = line.split()[0]
            else:
                parts = line.strip().split(None, 1)
                frames.append(parts[1] if len(parts) > 1 else parts[0])
        if comm is not None:
            yield comm, frames


def stage_of(comm, frames):
    for name, pattern in COMPILED:
        if pattern.search(comm) or any(pattern.search(sym) for sym in frames):
            return name
    return None


def main():
    stacks, load, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rows = [json.loads(line) for line in open(load) if line.strip().startswith("{")]
    calls_per_s = rows[-1]["calls_per_s"]
    by_stage = collections.Counter()
    other_leaves = collections.Counter()
    by_thread = collections.Counter()
    total = 0
    for comm, frames in samples(stacks):
        total += 1
        by_thread[comm] += 1
        stage = stage_of(comm, frames)
        if stage is None:
            stage = "other"
            other_leaves[frames[0] if frames else "?"] += 1
        by_stage[stage] += 1
    if total == 0:
        sys.exit("profile-stages: perf recorded no samples (perf_event_paranoid? see perf.log)")
    hz = 1999.0
    cpu_us_per_call = total / hz / (calls_per_s * seconds) * 1e6
    print(f"{calls_per_s:.0f} calls/s (N={rows[-1]['N']}), {total} samples over {seconds:.0f} s: "
          f"{cpu_us_per_call:.0f} us of server CPU per call")
    print()
    print("| stage | share of samples | server CPU per call (us) |")
    print("|---|---|---|")
    order = [name for name, _ in STAGES] + ["other"]
    for name in order:
        n = by_stage.get(name, 0)
        print(f"| {name} | {100.0 * n / total:.1f}% | {cpu_us_per_call * n / total:.1f} |")
    print()
    print("threads: " + ", ".join(f"{c} {100.0 * n / total:.0f}%" for c, n in by_thread.most_common(6)))
    print("hottest leaves in `other`: " + "; ".join(
        f"{sym[:60]} {100.0 * n / total:.1f}%" for sym, n in other_leaves.most_common(8)))


if __name__ == "__main__":
    main()

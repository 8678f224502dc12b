// The approver's queue, live: each request as Airlock wrote it from the bound action, the
// exact arguments, who asks (agent, tool, delegation), and a countdown to its expiry.
// Approving asks the passkey to sign that exact action (the host's step-up challenge commits
// to it); denying asks for a reason. Decided and expired requests move to the history.
'use strict';

import { $, h, api, usePasskey, fail, toast, when, countdown, table, confirmAction } from './core.js';

let pending = [];
let source = null;
let ticker = null;
let visible = false;

/// Subscribes to the approvals this member may see, whatever page is open (a toast and the
/// badge say when one arrives).
export function watch() {
  unwatch();
  source = new EventSource('/v1/approvals/events');
  source.addEventListener('approval', (msg) => {
    const a = JSON.parse(msg.data);
    const known = pending.some((p) => p.id === a.id);
    if (a.status === 'pending' && !known) toast(`New approval request: ${a.summary}`);
    refresh();
  });
  refresh();
}

export function unwatch() {
  if (source) source.close();
  source = null;
}

async function refresh() {
  try {
    ({ approvals: pending } = await api('GET', '/v1/approvals?status=pending'));
  } catch (_) { return; }
  $('pending-count').textContent = pending.length ? String(pending.length) : '';
  $('pending-count').setAttribute('aria-label', `${pending.length} waiting`);
  if (visible) await render();
}

export async function show() {
  visible = true;
  await refresh();
  await render();
  ticker = setInterval(tick, 1000);
  return () => { visible = false; clearInterval(ticker); };
}

/// The arguments the approver approves, as a definition list (values shown as JSON, so a
/// string can never pass for a number or another field).
function argumentsOf(a) {
  let args;
  try { args = JSON.parse(a.details); } catch (_) { args = a.details; }
  if (!args || typeof args !== 'object' || Array.isArray(args)) return h('pre', { class: 'args' }, JSON.stringify(args, null, 2));
  return h('dl', { class: 'args' }, Object.entries(args).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, JSON.stringify(v))]));
}

function chainOf(a) {
  const hops = [a.run_id ? `run ${a.run_id}` : null, a.agent, `tool:${a.tool}`, a.action].filter(Boolean);
  return h('ol', { class: 'chain', 'aria-label': 'Delegation chain' }, hops.map((x) => h('li', {}, x)));
}

function card(a) {
  const approve = h('button', { type: 'button', class: 'approve', onclick: () => decide(a, true) }, 'Approve with passkey');
  const deny = h('button', { type: 'button', class: 'deny', onclick: () => decide(a, false) }, 'Deny');
  return h('li', { class: 'card', dataset: { id: a.id } },
    h('h2', { class: 'summary' }, a.summary),
    a.note ? h('p', { class: 'note' }, `The requester's own words (not checked by Airlock): ${a.note}`) : null,
    argumentsOf(a),
    chainOf(a),
    h('p', { class: 'meta' },
      `${a.id} · asked by ${a.agent} · for a ${a.role || 'tenant admin'} · `,
      h('time', { class: 'countdown', dataset: { expires: a.expires_at }, datetime: new Date(a.expires_at).toISOString() },
        `expires in ${countdown(a.expires_at - Date.now())}`)),
    h('div', { class: 'actions' }, approve, deny));
}

async function render() {
  $('approval-queue').replaceChildren(...pending.map(card));
  if (!pending.length) $('approval-queue').replaceChildren(h('li', { class: 'empty' }, 'Nothing waits for you.'));
  const { approvals: all } = await api('GET', '/v1/approvals');
  const past = all.filter((a) => a.status !== 'pending').sort((x, y) => (y.decided_at || y.expires_at) - (x.decided_at || x.expires_at));
  $('approval-history').replaceChildren(table('Decided and expired requests', ['Request', 'Status', 'By', 'When', 'Reason'],
    past.slice(0, 100).map((a) => [a.summary, a.status === 'consumed' ? 'approved, then used' : a.status, (a.approver || '').replace(/^user:/, ''), when(a.decided_at || a.expires_at), a.reason || ''])));
}

function tick() {
  const now = Date.now();
  for (const t of document.querySelectorAll('#approval-queue time.countdown')) {
    const left = Number(t.dataset.expires) - now;
    t.textContent = left > 0 ? `expires in ${countdown(left)}` : 'expired';
    if (left <= 0) t.closest('li').classList.add('expired');
  }
}

async function decide(a, approve) {
  try {
    const body = { approve };
    if (approve) {
      const started = await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/step-up`);
      body.step_up = { ceremony: started.ceremony, credential: await usePasskey(started.options) };
    } else {
      const reason = await confirmAction(`Deny: ${a.summary}?`, { action: 'Deny', reason: true });
      if (reason === null) return;
      if (reason) body.reason = reason;
    }
    const done = await api('POST', `/v1/approvals/${encodeURIComponent(a.id)}/decision`, body);
    toast(`${done.status === 'approved' ? 'Approved' : 'Denied'}: ${a.summary} (by ${done.approver.replace(/^user:/, '')})`);
    await refresh();
  } catch (e) { fail(`${a.id}: ${e.message}`); }
}

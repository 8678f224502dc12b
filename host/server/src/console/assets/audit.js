// The audit trail, newest first, filtered by agent, tool, outcome and time. Each row opens
// into its delegation chain as a tree (the approver, the person, the agent, the tool, the
// external host) and the event's own detail. "Verify the trail" recomputes the tenant's hash
// chain on the host; a signed approval's row checks the approver's passkey signature again.
// Export writes the filtered trail as JSON Lines.
'use strict';

import { $, h, api, fail, when } from './core.js';

let before = null;

function query() {
  const form = new FormData($('audit-filter'));
  const q = new URLSearchParams();
  for (const k of ['agent', 'tool', 'outcome']) if (form.get(k)) q.set(k, form.get(k).trim());
  for (const k of ['since', 'until']) if (form.get(k)) q.set(k, String(new Date(form.get(k)).getTime()));
  return q;
}

export async function show() {
  $('audit-filter').onsubmit = (ev) => { ev.preventDefault(); load(true); };
  $('audit-more').onclick = () => load(false);
  $('audit-verify').onclick = verifyTrail;
  await load(true);
}

async function load(fresh) {
  const q = query();
  $('audit-export').href = `/v1/audit/export?${q}`;
  if (fresh) before = null;
  if (before) q.set('before', before);
  q.set('limit', '50');
  const { events, next_before } = await api('GET', `/v1/audit/search?${q}`);
  before = next_before;
  const rows = events.map(row);
  if (fresh) $('audit-rows').replaceChildren(...rows);
  else $('audit-rows').append(...rows);
  if (fresh && !events.length) $('audit-rows').replaceChildren(h('p', { class: 'empty' }, 'No event matches.'));
  $('audit-more').hidden = !next_before;
}

/// The delegation chain as a tree: each hop holds the next. The person who approved the run
/// heads it; whoever approved an action of the call hangs off the tool hop, beside the
/// external host the call reached.
function tree(hops, runApprover, actionApprovers) {
  let next = []; // the list items under the hop being built
  for (const hop of [...hops].reverse()) {
    const isTool = hop.startsWith('tool:');
    const label = hop === runApprover ? `${hop} (approved the run)` : hop;
    const approvers = isTool
      ? actionApprovers.map((who) => h('li', {}, h('span', { class: 'hop approver' }, `${who} (approved this action)`)))
      : [];
    const children = [...approvers, ...next];
    next = [h('li', {}, h('span', { class: isTool ? 'hop tool' : 'hop' }, label), children.length ? h('ul', {}, ...children) : null)];
  }
  return h('div', { class: 'tree', role: 'group', 'aria-label': 'Delegation chain' }, h('ul', {}, ...next));
}

function row(stored) {
  const e = stored; // the event's fields sit beside seq, ts and the hashes
  const d = e.detail || {};
  const chain = Array.isArray(d.chain) ? d.chain : [];
  const actionApprovers = [...(Array.isArray(d.approved_by) ? d.approved_by : []),
    ...(typeof d.approver === 'string' && e.outcome === 'approved' ? [d.approver] : [])];
  const body = [];
  if (chain.length) body.push(tree(chain, d.run_approved_by || null, [...new Set(actionApprovers)]));
  const approval = d.approval || d.approval_id;
  if (e.kind === 'approval.decision' && approval && d.signed_digest) {
    const out = h('span', { role: 'status' });
    body.push(h('p', {}, h('button', { type: 'button', onclick: () => verifySigned(approval, out) }, 'Verify the signed decision'), ' ', out));
  }
  body.push(h('pre', { class: 'detail' }, JSON.stringify(d, null, 2)));
  return h('details', { class: `event ${e.outcome}`, dataset: { seq: stored.seq } },
    h('summary', {}, h('time', {}, when(stored.ts)), ` #${stored.seq} `, h('strong', {}, e.kind), ` ${e.outcome} `,
      h('span', { class: 'who' }, [e.agent, e.tool].filter(Boolean).join(' · '))),
    ...body);
}

async function verifyTrail() {
  try {
    const v = await api('GET', '/v1/audit/verify');
    $('audit-verdict').textContent = v.ok !== false && !v.broken_at
      ? `The trail is intact: ${v.events} events, each hash chained to the one before.`
      : `The trail is broken at event ${v.broken_at}: ${v.reason}`;
  } catch (e) { fail(e.message); }
}

async function verifySigned(id, out) {
  try {
    const v = await api('POST', `/v1/approvals/${encodeURIComponent(id)}/verify`);
    out.textContent = v.valid ? `Signed by ${v.approver} over this exact action: valid.` : `Not valid: ${v.reason || JSON.stringify(v)}`;
  } catch (e) { out.textContent = e.message; }
}

// The tenant's relationship tuples as two matrices: agents x tools and connections
// (`can_use`), and people x roles (relations on `tenant:T`). Each box is one tuple; ticking
// writes it and clearing deletes it, through the same `POST /v1/tuples` the CLI uses. The live
// event list beside them shows the agent's next call checked against the change.
'use strict';

import { $, h, api, fail, toast, when, holds, session, onLiveEvent } from './core.js';

const ROLES = ['admin', 'auditor', 'cfo', 'dpo', 'ops_manager', 'marketing_lead'];
// Columns seen during this visit stay, so clearing the last tuple of a tool keeps its column.
const seen = { objects: new Set(), agents: new Set(), people: new Set() };

export async function show() {
  await render();
  const stop = onLiveEvent((e) => {
    const li = h('li', { class: e.outcome === 'denied' ? 'denied' : '' },
      h('time', {}, when(e.ts)), ` ${e.kind} `, h('strong', {}, e.outcome), ` ${e.agent} ${e.tool}`);
    $('permission-events').prepend(li);
    while ($('permission-events').children.length > 50) $('permission-events').lastChild.remove();
  });
  return stop;
}

async function render() {
  const [{ tuples }, { agents }] = await Promise.all([api('GET', '/v1/tuples'), api('GET', '/v1/agents')]);
  const has = new Set(tuples.map((t) => `${t.user}|${t.relation}|${t.object}`));
  for (const a of agents.filter((a) => a.live)) seen.agents.add(a.subject || `agent:${a.name}`);
  const tenantObject = `tenant:${session.tenant}`;
  for (const t of tuples) {
    if (t.user.startsWith('agent:') && t.relation === 'can_use') {
      seen.agents.add(t.user);
      seen.objects.add(t.object);
    }
    if (t.object === tenantObject && t.user.startsWith('user:')) seen.people.add(t.user);
  }
  const objects = [...seen.objects].sort();
  const editable = holds('admin');
  $('agent-matrix').replaceChildren(matrix('Agents and what they may use (can_use)', [...seen.agents].sort(), objects,
    (row, col) => ({ user: row, relation: 'can_use', object: col }), has, editable));
  $('role-matrix').replaceChildren(matrix(`People and their roles in tenant ${session.tenant}`, [...seen.people].sort(), ROLES,
    (row, col) => ({ user: row, relation: col, object: tenantObject }), has, editable));
}

function matrix(caption, rows, cols, tupleOf, has, editable) {
  if (!rows.length || !cols.length) return h('p', { class: 'hint' }, `${caption}: none yet.`);
  return h('table', { class: 'matrix' },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('td', {}), cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, h('th', { scope: 'row' }, r), cols.map((c) => {
      const t = tupleOf(r, c);
      const key = `${t.user}|${t.relation}|${t.object}`;
      const box = h('input', { type: 'checkbox', 'aria-label': `${t.user} ${t.relation} ${t.object}`,
                               checked: has.has(key), disabled: !editable });
      box.addEventListener('change', () => toggle(box, t));
      return h('td', {}, box);
    })))));
}

async function toggle(box, t) {
  const write = box.checked;
  box.disabled = true;
  try {
    await api('POST', '/v1/tuples', write ? { writes: [t] } : { deletes: [t] });
    toast(`${write ? 'Granted' : 'Revoked'}: ${t.user} ${t.relation} ${t.object}`);
  } catch (e) {
    box.checked = !write;
    fail(`${t.user} ${t.relation} ${t.object}: ${e.message}`);
  } finally {
    box.disabled = false;
  }
}

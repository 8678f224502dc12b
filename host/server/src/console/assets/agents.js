// Each agent of the tenant: its identity, the tools and connections its tuples grant, the
// approval policies on its tools, its last calls, and a kill switch (revoke, confirmed).
'use strict';

import { $, h, api, fail, toast, when, holds, confirmAction } from './core.js';


export async function show() {
  const [{ agents }, { tuples }, { policies }] = await Promise.all([
    api('GET', '/v1/agents'), api('GET', '/v1/tuples'), api('GET', '/v1/policies')]);
  const cards = await Promise.all(agents.map((a) => card(a, tuples, policies)));
  $('agent-list').replaceChildren(...(cards.length ? cards : [h('p', { class: 'empty' }, 'No agents yet: install one from the marketplace.')]));
}

async function card(a, tuples, policies) {
  const subject = a.subject || `agent:${a.name}`;
  const mine = tuples.filter((t) => t.user === subject);
  const tools = mine.filter((t) => t.object.startsWith('tool:')).map((t) => t.object.slice(5));
  const connections = mine.filter((t) => t.object.startsWith('connection:')).map((t) => t.object.slice(11));
  const gated = policies.filter((p) => tools.some((tool) => p.tool === tool || p.tool.startsWith(`${tool} `)) || p.tool === subject);
  const { events } = await api('GET', `/v1/audit/search?agent=${encodeURIComponent(subject)}&kind=tool.call&limit=5`);
  const revoke = h('button', { type: 'button', class: 'danger', onclick: () => kill(a.name) }, `Revoke ${a.name}`);
  return h('article', { class: 'card', dataset: { agent: a.name } },
    h('h2', {}, a.name, a.live ? null : h('span', { class: 'tag denied' }, 'revoked')),
    h('p', { class: 'meta' }, `${subject} · created ${when(a.created_at)}`, a.package ? ` · from package ${a.package.name} ${a.package.version} by ${a.package.publisher}` : ''),
    h('h3', {}, 'Tools'), list(tools, 'No tool granted.'),
    h('h3', {}, 'Connections'), list(connections, 'No connection granted.'),
    h('h3', {}, 'Approval policies'),
    list(gated.map((p) => `${p.tool}: approved by a ${p.role} within ${Math.round(p.ttl_seconds / 60)} min`), 'None: calls run without a person.'),
    h('h3', {}, 'Last calls'),
    list(events.map((e) => `${when(e.ts)} · ${e.tool} · ${e.outcome}`), 'No calls yet.'),
    holds('admin') && a.live ? h('div', { class: 'actions' }, revoke) : null);
}

function list(items, empty) {
  return items.length ? h('ul', {}, items.map((i) => h('li', {}, i))) : h('p', { class: 'hint' }, empty);
}

async function kill(name) {
  const ok = await confirmAction(`Revoke agent ${name}? Its tokens stop working and every call it makes is refused from now on.`,
    { action: 'Revoke' });
  if (ok === null) return;
  try {
    await api('DELETE', `/v1/agents/${encodeURIComponent(name)}`);
    toast(`Agent ${name} is revoked.`);
    await show();
  } catch (e) { fail(`${name}: ${e.message}`); }
}


// The MCP clients (Claude, VS Code, the Inspector...) a person let act for them: which agent
// each acts as, since when, and a Revoke that stops its refresh token at once. An admin sees
// everyone's in the tenant.
'use strict';

import { $, h, api, fail, toast, when, confirmAction } from './core.js';

export async function show() {
  const { grants } = await api('GET', '/v1/oauth/grants');
  $('application-list').replaceChildren(...(grants.length ? grants.map(card)
    : [h('p', { class: 'empty' }, 'No application acts for you. Connect one by pointing it at this host\'s /mcp.')]));
}

function card(g) {
  const revoke = h('button', { type: 'button', class: 'danger', onclick: () => revokeGrant(g) }, `Revoke ${g.client_name || g.client_id}`);
  return h('article', { class: 'card', dataset: { grant: g.id } },
    h('h2', {}, g.client_name || g.client_id),
    h('p', { class: 'meta' }, `acts as agent:${g.agent} for ${g.member} · since ${when(g.created_at)} · until ${when(g.expires_at)}`),
    h('p', { class: 'hint' }, `On ${g.resource}, scope ${g.scope}. Each call needs both ${g.member} and agent:${g.agent} to be allowed.`),
    h('div', { class: 'actions' }, revoke));
}

async function revokeGrant(g) {
  const name = g.client_name || g.client_id;
  const ok = await confirmAction(`Revoke ${name}? Its tokens stop working at once; it must be authorized again to connect.`,
    { action: 'Revoke' });
  if (ok === null) return;
  try {
    await api('DELETE', `/v1/oauth/grants/${encodeURIComponent(g.id)}`);
    toast(`${name} no longer acts for ${g.member}.`);
    await show();
  } catch (e) { fail(`${name}: ${e.message}`); }
}

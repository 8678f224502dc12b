// The tenant's connections and the slots installed agents declared: each with its kind, the
// hosts it may reach and its state. A slot is filled here; the secret goes to the vault in one
// request and is never shown again (the API never returns it).
'use strict';

import { $, h, api, fail, toast, when, holds, table } from './core.js';

export async function show() {
  const [{ connections }, { installed }] = await Promise.all([api('GET', '/v1/connections'), api('GET', '/v1/marketplace/installed')]);
  const slots = installed.flatMap((i) => i.connection_slots.map((s) => ({ ...s, agent: i.agent })));
  const slotNames = new Set(slots.map((s) => s.name));
  const own = connections.filter((c) => !slotNames.has(c.name));
  $('connection-list').replaceChildren(
    h('h2', {}, 'Slots of installed agents'),
    slots.length ? h('div', { class: 'cards' }, slots.map((s) => h('article', { class: 'card' },
      h('h3', {}, s.name, ' ', h('span', { class: `tag ${s.filled ? 'ok' : 'denied'}` }, s.filled ? 'filled' : 'empty')),
      h('p', {}, s.description),
      h('p', { class: 'meta' }, `${s.kind} · reaches ${s.allowed_hosts.join(', ')}`),
      slotForm(s, show)))) : h('p', { class: 'hint' }, 'No installed agent declares a connection.'),
    h('h2', {}, 'Tenant connections'),
    own.length ? table('Connections the tenant made itself', ['Name', 'Kind', 'Hosts', 'Needs a grant', 'Updated'],
      own.map((c) => [c.name, c.kind, (c.allowed_hosts || []).join(', '), c.requires_grant ? 'yes' : 'no', when(c.updated_at)]))
      : h('p', { class: 'hint' }, 'None.'));
}

/// A form that fills (or refills) slot `s` (`AGENT/NAME`) with a secret.
export function slotForm(s, after) {
  if (!holds('admin')) return h('p', { class: 'hint' }, s.filled ? 'Filled.' : 'An admin fills this slot.');
  const [agent, short] = s.name.includes('/') ? s.name.split('/', 2) : [s.agent, s.name];
  const oauth = s.kind.startsWith('oauth2');
  const input = h('input', { type: 'password', name: 'secret', required: true, autocomplete: 'off',
                             placeholder: oauth ? '{"refresh_token": "…", "client_secret": "…"}' : 'token' });
  const form = h('form', { class: 'slot' },
    h('label', {}, `${s.filled ? 'Replace the secret of' : 'Secret for'} ${s.name}`, input),
    h('button', { type: 'submit' }, s.filled ? 'Replace' : 'Fill'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('PUT', `/v1/connections/${encodeURIComponent(short)}?agent=${encodeURIComponent(agent)}`, { secret: input.value });
      input.value = '';
      toast(`${s.name} is filled.`);
      await after();
    } catch (e) { fail(`${s.name}: ${e.message}`); }
  });
  return form;
}

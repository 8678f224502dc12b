// The tenant's connections and the slots installed agents declared: each with its kind, the
// hosts it may reach and its state. A slot is filled here; the secret goes to the vault in one
// request and is never shown again (the API never returns it). An OAuth2 connection with an
// authorization URL is connected here too: "Connect" sends the browser to its provider, which
// sends it back to this page with `#connected=NAME` (or `#refused=NAME&error=CODE`).
'use strict';

import { $, h, api, fail, toast, when, holds, table } from './core.js';

// What Connect's callback said, read once as the module loads (the router then rewrites the URL).
let arrived = location.pathname === '/console/connections' && location.hash.length > 1
  ? new URLSearchParams(location.hash.slice(1)) : null;

function announceArrival() {
  if (!arrived) return;
  const [connected, refused, error] = [arrived.get('connected'), arrived.get('refused'), arrived.get('error')];
  arrived = null;
  if (connected) toast(`${connected} is connected.`);
  if (refused) fail(`${refused} is not connected: the provider answered ${error || 'with an error'}. Nothing was stored.`);
}

const STATES = {
  connected: ['ok', 'connected'],
  needs_connect: ['denied', 'needs connect'],
  needs_reconnect: ['denied', 'needs reconnect'],
};

/// The tag of an OAuth2 connection's state (connected, needs connect, needs reconnect).
function stateTag(c) {
  const [cls, text] = (c && STATES[c.state]) || [];
  return text ? h('span', { class: `tag ${cls}` }, text) : null;
}

export async function show() {
  const [{ connections }, { installed }] = await Promise.all([api('GET', '/v1/connections'), api('GET', '/v1/marketplace/installed')]);
  const slots = installed.flatMap((i) => i.connection_slots.map((s) => ({ ...s, agent: i.agent })));
  const slotNames = new Set(slots.map((s) => s.name));
  const byName = new Map(connections.map((c) => [c.name, c]));
  const own = connections.filter((c) => !slotNames.has(c.name));
  $('connection-list').replaceChildren(
    h('h2', {}, 'Slots of installed agents'),
    slots.length ? h('div', { class: 'cards' }, slots.map((s) => h('article', { class: 'card' },
      h('h3', {}, s.name, ' ', h('span', { class: `tag ${s.filled ? 'ok' : 'denied'}` }, s.filled ? 'filled' : 'empty'),
        stateTag(byName.get(s.name))),
      h('p', {}, s.description),
      h('p', { class: 'meta' }, `${s.kind} · reaches ${s.allowed_hosts.join(', ')}`),
      slotForm(s, show),
      connectButton(byName.get(s.name))))) : h('p', { class: 'hint' }, 'No installed agent declares a connection.'),
    h('h2', {}, 'Tenant connections'),
    own.length ? table('Connections the tenant made itself', ['Name', 'Kind', 'Hosts', 'Needs a grant', 'State', 'Updated'],
      own.map((c) => [h('span', {}, c.name, ' ', connectButton(c)), c.kind, (c.allowed_hosts || []).join(', '),
        c.requires_grant ? 'yes' : 'no', stateTag(c) || '', when(c.updated_at)]))
      : h('p', { class: 'hint' }, 'None.'));
  announceArrival();
}

/// "Connect NAME" (admins only), for an `oauth2_refresh` connection with an authorization URL:
/// the host answers the provider's URL (a fresh, single-use state) and the browser goes there.
export function connectButton(c) {
  if (!c || !holds('admin') || c.kind !== 'oauth2_refresh' || !(c.oauth && c.oauth.authorize_url)) return null;
  const [agent, short] = c.name.includes('/') ? c.name.split('/', 2) : [null, c.name];
  const button = h('button', { type: 'button' }, `Connect ${c.name}`);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const query = agent ? `?agent=${encodeURIComponent(agent)}` : '';
      const { authorize_url } = await api('POST', `/v1/connections/${encodeURIComponent(short)}/connect${query}`);
      location.href = authorize_url;
    } catch (e) {
      button.disabled = false;
      fail(`${c.name}: ${e.message}`);
    }
  });
  return button;
}

/// A form that fills (or refills) slot `s` (`AGENT/NAME`) with a secret.
export function slotForm(s, after) {
  if (!holds('admin')) return h('p', { class: 'hint' }, s.filled ? 'Filled.' : 'An admin fills this slot.');
  const [agent, short] = s.name.includes('/') ? s.name.split('/', 2) : [s.agent, s.name];
  const oauth = s.kind.startsWith('oauth2');
  // With an authorization URL, Connect brings the refresh token: only the client secret goes here.
  const connects = s.kind === 'oauth2_refresh' && s.oauth && s.oauth.authorize_url;
  const input = h('input', { type: 'password', name: 'secret', required: true, autocomplete: 'off',
                             placeholder: connects ? '{"client_secret": "…"}'
                               : oauth ? '{"refresh_token": "…", "client_secret": "…"}' : 'token' });
  const form = h('form', { class: 'slot' },
    h('label', {}, `${s.filled ? 'Replace the secret of' : 'Secret for'} ${s.name}`, input),
    h('button', { type: 'submit' }, s.filled ? 'Replace' : 'Fill'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('PUT', `/v1/connections/${encodeURIComponent(short)}?agent=${encodeURIComponent(agent)}`, { secret: input.value });
      input.value = '';
      toast(connects ? `${s.name} is filled: press Connect ${s.name}.` : `${s.name} is filled.`);
      await after();
    } catch (e) { fail(`${s.name}: ${e.message}`); }
  });
  return form;
}

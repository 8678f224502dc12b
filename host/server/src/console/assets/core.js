// What every page shares: the API client (session cookie + CSRF token), a DOM builder that
// only ever sets text (no HTML strings: nothing an agent, tool or package wrote can become
// markup), toasts, a confirmation dialog, and the WebAuthn byte conversions.
'use strict';

export const $ = (id) => document.getElementById(id);

const session = { csrf: null, tenant: null, member: null, roles: [] };
export { session };

/// Builds an element: h('td', {class: 'x', dataset: {id}}, 'text', child, …). Strings become
/// text nodes; attributes are set one by one (never innerHTML).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/// An SVG element (the overview's chart), attributes only.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export class ApiFailure extends Error {
  constructor(status, body) {
    super(body.message || `${status}`);
    this.status = status;
    this.code = body.code;
  }
}

/// Calls the API as the signed-in person; throws ApiFailure with the API's own message.
export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (session.csrf && method !== 'GET') headers['x-csrf-token'] = session.csrf;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                   credentials: 'same-origin' });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiFailure(resp.status, data);
  return data;
}

/// Like `api`, for the endpoints that answer NDJSON progress lines (install, upgrade): calls
/// `onProgress` for each `{"progress": …}` line and returns the last line's `result`.
export async function apiStream(method, path, body, onProgress) {
  const headers = { 'content-type': 'application/json', accept: 'application/x-ndjson' };
  if (session.csrf) headers['x-csrf-token'] = session.csrf;
  const resp = await fetch(path, { method, headers, body: JSON.stringify(body), credentials: 'same-origin' });
  if (!resp.ok) throw new ApiFailure(resp.status, await resp.json().catch(() => ({})));
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffered += value;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = JSON.parse(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
      if (line.progress) onProgress(line.progress);
      if (line.error) throw new ApiFailure(line.error.status, line.error);
      if ('result' in line) return line.result;
    }
    if (done) throw new Error('the host closed the stream before it finished');
  }
}

export function holds(...roles) {
  return roles.some((r) => session.roles.includes(r));
}

/// Errors go to the alert line; good news to a toast.
export function fail(text) {
  $('status').textContent = text;
}

export function toast(text) {
  const t = h('p', { class: 'toast' }, text);
  $('toasts').append(t);
  setTimeout(() => t.remove(), 6000);
}

/// Asks before anything destructive: resolves to the typed reason ('' when none asked), or
/// null when the person cancels. Native <dialog>: focus moves in and back, Escape cancels.
export function confirmAction(question, { action = 'Confirm', reason = false } = {}) {
  const dialog = $('confirm');
  $('confirm-text').textContent = question;
  $('confirm-go').textContent = action;
  const field = $('confirm-reason');
  field.hidden = !reason;
  field.querySelector('textarea').value = '';
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'go' ? field.querySelector('textarea').value.trim() : null);
    }, { once: true });
  });
}

export function when(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

/// "4:05" for a span of milliseconds; "expired" once past.
export function countdown(ms) {
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const hours = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hours ? 2 : 1, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hours ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
}

/// A table from rows: headers are column names, each row an array of cells (text or nodes).
export function table(caption, headers, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))));
}

/// The audit kinds the live list shows (`/v1/events` names each SSE event by its kind).
const KINDS = ['tool.call', 'authz.check', 'authz.list_objects', 'vault.fetch', 'vault.token', 'approval.request',
  'approval.decision', 'approval.signed', 'run.start', 'run.finish', 'agent.create', 'agent.revoke', 'tuples.write',
  'policy.put', 'policy.delete', 'connection.put', 'connection.delete', 'connection.rotate', 'connection.connect',
  'connection.connected', 'marketplace.install', 'marketplace.upgrade', 'marketplace.uninstall', 'model.write',
  'token.create', 'token.revoke', 'member.remove', 'session.start', 'session.end', 'passkey.register', 'login.device'];

/// A tenant's live decisions (admins and auditors): one EventSource shared by the pages.
const listeners = new Set();
let source = null;
export function onLiveEvent(fn) {
  listeners.add(fn);
  if (!source && holds('admin', 'auditor')) {
    source = new EventSource('/v1/events');
    const deliver = (msg) => {
      const e = JSON.parse(msg.data);
      for (const l of listeners) l(e);
    };
    for (const kind of KINDS) {
      source.addEventListener(kind, deliver);
    }
    source.onmessage = deliver;
  }
  return () => listeners.delete(fn);
}

export function stopLive() {
  if (source) source.close();
  source = null;
  listeners.clear();
}

// WebAuthn options travel as base64url strings; the browser API wants bytes.
const b64uToBuf = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)).buffer;
const bufToB64u = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

export async function createPasskey(options) {
  const pk = structuredClone(options.publicKey);
  pk.challenge = b64uToBuf(pk.challenge);
  pk.user.id = b64uToBuf(pk.user.id);
  (pk.excludeCredentials || []).forEach((c) => { c.id = b64uToBuf(c.id); });
  const cred = await navigator.credentials.create({ publicKey: pk });
  return { id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
           response: { attestationObject: bufToB64u(cred.response.attestationObject),
                       clientDataJSON: bufToB64u(cred.response.clientDataJSON) } };
}

/// Asks the passkey to sign the host's challenge (a sign-in, or the exact action of a step-up).
export async function usePasskey(options) {
  const pk = structuredClone(options.publicKey);
  pk.challenge = b64uToBuf(pk.challenge);
  (pk.allowCredentials || []).forEach((c) => { c.id = b64uToBuf(c.id); });
  const cred = await navigator.credentials.get({ publicKey: pk });
  const r = cred.response;
  return { id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
           response: { authenticatorData: bufToB64u(r.authenticatorData), clientDataJSON: bufToB64u(r.clientDataJSON),
                       signature: bufToB64u(r.signature), userHandle: r.userHandle ? bufToB64u(r.userHandle) : null } };
}

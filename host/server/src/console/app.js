// The approver's pages: register a passkey from an invitation, sign in with it, and decide
// the approvals waiting for you. Approving asks your passkey to sign the exact action (the
// host's step-up challenge commits to it); denying needs only your session.
'use strict';

const $ = (id) => document.getElementById(id);
let csrf = null;

// WebAuthn options travel as base64url strings; the browser API wants bytes.
const b64uToBuf = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)).buffer;
const bufToB64u = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

function creationOptions(o) {
  const pk = structuredClone(o.publicKey);
  pk.challenge = b64uToBuf(pk.challenge);
  pk.user.id = b64uToBuf(pk.user.id);
  (pk.excludeCredentials || []).forEach((c) => { c.id = b64uToBuf(c.id); });
  return { publicKey: pk };
}

function requestOptions(o) {
  const pk = structuredClone(o.publicKey);
  pk.challenge = b64uToBuf(pk.challenge);
  (pk.allowCredentials || []).forEach((c) => { c.id = b64uToBuf(c.id); });
  return { publicKey: pk };
}

function registrationJson(cred) {
  return { id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
           response: { attestationObject: bufToB64u(cred.response.attestationObject),
                       clientDataJSON: bufToB64u(cred.response.clientDataJSON) } };
}

function assertionJson(cred) {
  const r = cred.response;
  return { id: cred.id, rawId: bufToB64u(cred.rawId), type: cred.type, extensions: {},
           response: { authenticatorData: bufToB64u(r.authenticatorData), clientDataJSON: bufToB64u(r.clientDataJSON),
                       signature: bufToB64u(r.signature), userHandle: r.userHandle ? bufToB64u(r.userHandle) : null } };
}

async function api(method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (csrf) headers['x-csrf-token'] = csrf;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                   credentials: 'same-origin' });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.message || `${resp.status} ${resp.statusText}`);
  return data;
}

function show(section) {
  for (const id of ['register', 'signin', 'device', 'queue']) $(id).hidden = id !== section;
}

function say(text) { $('status').textContent = text; }

function signedIn(s) {
  csrf = s.csrf;
  $('who').textContent = `${s.member} · tenant ${s.tenant}`;
  $('signout').hidden = false;
  if (location.pathname === '/console/device') {
    $('device-form').elements.user_code.value = location.hash.slice(1);
    return show('device');
  }
  show('queue');
  history.replaceState(null, '', '/console');
  return loadQueue();
}

async function register() {
  const code = location.hash.slice(1);
  try {
    const started = await api('POST', '/v1/passkeys/register', { code });
    const cred = await navigator.credentials.create(creationOptions(started.options));
    await signedIn(await api('POST', '/v1/passkeys/register/finish',
                             { ceremony: started.ceremony, credential: registrationJson(cred) }));
    say('Your passkey is registered and you are signed in.');
  } catch (e) { say(`Registration failed: ${e.message}`); }
}

async function signIn(ev) {
  ev.preventDefault();
  const form = new FormData(ev.target);
  try {
    const started = await api('POST', '/v1/signin/passkey', { tenant: form.get('tenant'), member: form.get('member') });
    const cred = await navigator.credentials.get(requestOptions(started.options));
    await signedIn(await api('POST', '/v1/signin/passkey/finish',
                             { ceremony: started.ceremony, credential: assertionJson(cred) }));
    say('');
  } catch (e) { say(`Sign-in failed: ${e.message}`); }
}

function item(a) {
  const li = document.createElement('li');
  li.dataset.id = a.id;
  const summary = document.createElement('p');
  summary.className = 'summary';
  summary.textContent = a.summary;
  li.append(summary);
  if (a.note) {
    const note = document.createElement('p');
    note.className = 'note';
    note.textContent = `The requester's own words (not checked by Airlock): ${a.note}`;
    li.append(note);
  }
  const meta = document.createElement('p');
  meta.className = 'meta';
  meta.textContent = `${a.id} · asks a ${a.role || 'tenant admin'} · expires ${new Date(a.expires_at).toLocaleString()}`;
  li.append(meta);
  const approve = document.createElement('button');
  approve.className = 'approve';
  approve.textContent = 'Approve with passkey';
  approve.onclick = () => decide(a.id, true);
  const deny = document.createElement('button');
  deny.className = 'deny';
  deny.textContent = 'Deny';
  deny.onclick = () => decide(a.id, false);
  li.append(approve, deny);
  return li;
}

async function loadQueue() {
  const { approvals } = await api('GET', '/v1/approvals?status=pending');
  $('approvals').replaceChildren(...approvals.map(item));
  if (!approvals.length) say('Nothing waits for you.');
}

async function decide(id, approve) {
  try {
    const body = { approve };
    if (approve) {
      const started = await api('POST', `/v1/approvals/${encodeURIComponent(id)}/step-up`);
      const cred = await navigator.credentials.get(requestOptions(started.options));
      body.step_up = { ceremony: started.ceremony, credential: assertionJson(cred) };
    }
    const done = await api('POST', `/v1/approvals/${encodeURIComponent(id)}/decision`, body);
    say(`${id}: ${done.status} by ${done.approver}`);
    await loadQueue();
  } catch (e) { say(`${id}: ${e.message}`); }
}

async function answerDevice(confirm) {
  const user_code = $('device-form').elements.user_code.value;
  try {
    const done = await api('POST', '/v1/device/confirm', { user_code, confirm });
    say(`Login ${done.login}: you can close this page.`);
  } catch (e) { say(`${e.message}`); }
}

async function signOut() {
  try { await api('POST', '/v1/signout'); } catch (_) { /* already ended */ }
  csrf = null;
  $('who').textContent = '';
  $('signout').hidden = true;
  show('signin');
}

async function start() {
  $('register-go').onclick = register;
  $('signin-form').onsubmit = signIn;
  $('signout').onclick = signOut;
  $('sso').onclick = () => {
    const tenant = $('signin-form').elements.tenant.value || 'default';
    location.assign(`/signin/sso?tenant=${encodeURIComponent(tenant)}`);
  };
  $('device-form').onsubmit = (ev) => { ev.preventDefault(); answerDevice(true); };
  $('device-refuse').onclick = () => answerDevice(false);
  if (location.pathname === '/signin/register' && location.hash.length > 1) return show('register');
  try {
    await signedIn(await api('GET', '/v1/session'));
  } catch (_) {
    show('signin');
  }
}

start();

// The console's entry: finds who is signed in, shows the pages their roles open, and routes
// between pages without reloading (each page is a module with `show()`; the URL names it, so
// links, reloads and the back button work).
'use strict';

import { $, api, session, fail, holds, stopLive } from './core.js';
import * as signin from './signin.js';
import * as overview from './overview.js';
import * as approvals from './approvals.js';
import * as agents from './agents.js';
import * as permissions from './permissions.js';
import * as audit from './audit.js';
import * as marketplace from './marketplace.js';
import * as connections from './connections.js';
import * as applications from './applications.js';

const PAGES = { overview, approvals, agents, permissions, audit, marketplace, connections, applications, device: signin.device };
const SECTIONS = ['register', 'signin', ...Object.keys(PAGES)];
let leave = null;

function reveal(id) {
  for (const s of SECTIONS) $(s).hidden = s !== id;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/// The page a URL names, falling back to the first one this person may open.
function pageOf(path) {
  const name = path.replace(/^\/console\/?/, '');
  if (PAGES[name] && allowed(name)) return name;
  return holds('admin', 'auditor') ? 'overview' : 'approvals';
}

function allowed(name) {
  const link = document.querySelector(`#nav a[data-page="${name}"]`);
  return !link || !link.dataset.roles || holds(...link.dataset.roles.split(' '));
}

export async function go(name, { push = true } = {}) {
  if (leave) leave();
  leave = null;
  fail('');
  reveal(name);
  const url = name === 'device' ? `/console/device${location.hash}` : `/console/${name}`;
  if (push && location.pathname !== `/console/${name}`) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
  try {
    leave = (await PAGES[name].show()) || null;
  } catch (e) {
    fail(`${e.message}`);
  }
  $('main').focus({ preventScroll: true });
}

async function signedIn(s) {
  session.csrf = s.csrf;
  const me = await api('GET', '/v1/me');
  Object.assign(session, { tenant: me.tenant, member: me.subject, roles: me.roles });
  $('who').textContent = `${me.subject.replace(/^user:/, '')} · ${me.tenant}`;
  $('signout').hidden = false;
  $('nav').hidden = false;
  for (const a of document.querySelectorAll('#nav a')) a.parentElement.hidden = !allowed(a.dataset.page);
  approvals.watch();
  const start = location.pathname === '/console/device' ? 'device' : pageOf(location.pathname);
  await go(start, { push: false });
}

async function signOut() {
  try { await api('POST', '/v1/signout'); } catch (_) { /* already ended */ }
  stopLive();
  approvals.unwatch();
  Object.assign(session, { csrf: null, tenant: null, member: null, roles: [] });
  $('who').textContent = '';
  $('signout').hidden = true;
  $('nav').hidden = true;
  history.replaceState(null, '', '/signin');
  reveal('signin');
}

async function start() {
  signin.wire(signedIn, reveal);
  $('signout').onclick = signOut;
  $('nav').addEventListener('click', (ev) => {
    const a = ev.target.closest('a[data-page]');
    if (!a || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    go(a.dataset.page);
  });
  window.addEventListener('popstate', () => { if (session.member) go(pageOf(location.pathname), { push: false }); });
  if (location.pathname === '/signin/register' && location.hash.length > 1) return reveal('register');
  let s;
  try {
    s = await api('GET', '/v1/session');
  } catch (_) {
    return reveal('signin');
  }
  await signedIn(s);
}

start();

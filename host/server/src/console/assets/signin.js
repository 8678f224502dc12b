// Signing in: register a passkey from an invitation link (the code rides in the URL's
// fragment, never sent to a server log or a referrer), sign in with it, or with the tenant's
// own OpenID provider; and confirming an `airlock login` from the terminal.
'use strict';

import { $, api, createPasskey, usePasskey, fail, toast } from './core.js';

export function wire(signedIn, reveal) {
  $('register-go').onclick = async () => {
    const code = location.hash.slice(1);
    try {
      const started = await api('POST', '/v1/passkeys/register', { code });
      const credential = await createPasskey(started.options);
      const s = await api('POST', '/v1/passkeys/register/finish', { ceremony: started.ceremony, credential });
      history.replaceState(null, '', '/console');
      await signedIn(s);
      toast('Your passkey is registered and you are signed in.');
    } catch (e) { fail(`Registration failed: ${e.message}`); }
  };
  $('signin-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    try {
      const started = await api('POST', '/v1/signin/passkey', { tenant: form.get('tenant'), member: form.get('member') });
      const credential = await usePasskey(started.options);
      const s = await api('POST', '/v1/signin/passkey/finish', { ceremony: started.ceremony, credential });
      // An MCP client's consent page sent the person here to sign in: back to it.
      const next = afterSignIn();
      if (next) { location.assign(next); return; }
      if (location.pathname === '/signin') history.replaceState(null, '', '/console');
      await signedIn(s);
    } catch (e) { fail(`Sign-in failed: ${e.message}`); }
  };
  $('sso').onclick = () => {
    const tenant = $('signin-form').elements.tenant.value || 'default';
    const next = afterSignIn();
    location.assign(`/signin/sso?tenant=${encodeURIComponent(tenant)}${next ? `&next=${encodeURIComponent(next)}` : ''}`);
  };
  $('device-form').onsubmit = (ev) => { ev.preventDefault(); answerDevice(true); };
  $('device-refuse').onclick = () => answerDevice(false);
  return reveal;
}

/// Where to go once signed in: only this host's authorization endpoint (`?next=`), so the
/// parameter cannot send a person anywhere else.
function afterSignIn() {
  const next = new URLSearchParams(location.search).get('next');
  return next && next.startsWith('/oauth/authorize?') ? next : null;
}

async function answerDevice(confirm) {
  const user_code = $('device-form').elements.user_code.value;
  try {
    const done = await api('POST', '/v1/device/confirm', { user_code, confirm });
    toast(`Login ${done.login}: you can close this page.`);
  } catch (e) { fail(`${e.message}`); }
}

/// The device page (`/console/device#CODE`): the code is filled in from the link.
export const device = {
  show() {
    $('device-form').elements.user_code.value = location.hash.slice(1);
  },
};

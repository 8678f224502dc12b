// The whole chain, end to end: each invited person opens their invitation link at a width of
// their own (desktop, phone), registers a passkey with the device's (virtual) authenticator and
// is signed in; every page passes axe and is screenshotted.
// AIRLOCK_INVITES: JSON [{ "link": "http://localhost:PORT/signin/register#CODE", "member": "alice",
// "width": 1280 }, ...] (from console_browser.rs).

import { run, newPage, virtualAuthenticator, axeCheck, screenshot, need } from './lib.mjs';

const invites = JSON.parse(need('AIRLOCK_INVITES'));

await run(async (browser) => {
  for (const { link, member, width } of invites) {
    const page = await newPage(browser, width);
    const authenticator = await virtualAuthenticator(page);
    await page.goto(link);
    const register = page.getByRole('button', { name: /Register a passkey/ });
    await register.waitFor({ state: 'visible', timeout: 15000 });
    await axeCheck(page, `register page at ${width}px`);
    await screenshot(page, `smoke-register-${width}`);

    await register.click();
    // Signed in: the header names the member.
    await page.locator('#who', { hasText: member }).waitFor({ state: 'visible', timeout: 20000 });
    const who = (await page.locator('#who').textContent()).trim();
    const held = await authenticator.credentials();
    if (held.length !== 1) throw new Error(`the authenticator holds ${held.length} passkeys, not 1`);
    await axeCheck(page, `signed in at ${width}px`);
    await screenshot(page, `smoke-signed-in-${width}`);
    // What the Rust test checks against the host's own records.
    console.log(`REGISTERED ${JSON.stringify({ member, width, who, credential: held[0].credentialId })}`);
    await page.context().close();
  }
});

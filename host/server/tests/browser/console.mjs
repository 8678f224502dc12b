// The console as its people use it, in real Chromium (driven by console_browser.rs, which set
// up the tenant and checks the host's records afterwards):
// 1. carol, the CFO, on a phone: registers her passkey from her invitation, sees the
//    offboarding refund arrive live, reads its amount, approves with her passkey, and the
//    waiting call completes;
// 2. alice, the admin, at 1280 px: reads the overview, opens the refund's audit row into its
//    delegation chain and verifies the trail; clears a tuple in the permission matrix and sees
//    the agent's next call denied in the live list; installs the crm agent from the catalog
//    and fills its slot; revokes an agent after confirming;
// 3. gina, admin of another tenant: sees none of it.
// Every page passes axe (no serious or critical violation) and is screenshotted at 1280 and
// 390 px.
// AIRLOCK_SCENARIO: { url, carol, alice, gina (invitation links), agent (the offboarding
// agent's token), run, refund (the refund's input), denied_tool } (from console_browser.rs).

import { run, newPage, virtualAuthenticator, axeCheck, screenshot, need, WIDTHS } from './lib.mjs';

const s = JSON.parse(need('AIRLOCK_SCENARIO'));
const PAGES = ['overview', 'approvals', 'agents', 'permissions', 'audit', 'marketplace', 'connections', 'applications'];

function expect(cond, what) {
  if (!cond) throw new Error(`expected: ${what}`);
}

/// Calls a tool as the agent (the agent's own HTTP client, not the browser).
function callTool(tool, input) {
  return fetch(`${s.url}/v1/tools/${tool}/call`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.agent}`, 'content-type': 'application/json', 'airlock-run': s.run },
    body: JSON.stringify(input),
  }).then(async (r) => ({ status: r.status, body: await r.json() }));
}

async function register(browser, link, member, width) {
  const page = await newPage(browser, width);
  await virtualAuthenticator(page);
  await page.goto(link);
  await page.getByRole('button', { name: /Register a passkey/ }).click();
  await page.locator('#who', { hasText: member }).waitFor({ timeout: 20000 });
  return page;
}

async function open(page, name) {
  await page.locator(`#nav a[data-page="${name}"]`).click();
  await page.locator(`section#${name}`).waitFor({ state: 'visible' });
  await page.waitForLoadState('networkidle').catch(() => {});
}

/// axe and a screenshot of every page this person may open, at both widths.
async function everyPage(page, who) {
  for (const width of [WIDTHS.desktop, WIDTHS.phone]) {
    await page.setViewportSize({ width, height: 900 });
    for (const name of PAGES) {
      if (!(await page.locator(`#nav a[data-page="${name}"]`).isVisible())) continue;
      await open(page, name);
      await axeCheck(page, `${who} ${name} at ${width}px`);
      await screenshot(page, `${who}-${name}-${width}`);
    }
  }
}

await run(async (browser) => {
  // 1. The CFO approves the refund from her phone.
  const carol = await register(browser, s.carol, 'carol', WIDTHS.phone);
  await carol.locator('section#approvals').waitFor({ state: 'visible' });
  expect(await carol.locator('#nav a[data-page="audit"]').isHidden(), 'a CFO has no audit page');
  const started = Date.now();
  const refund = callTool('offboarding.issue-refund', s.refund);
  const item = carol.locator('#approval-queue li.card', { hasText: s.refund.amount });
  await item.waitFor({ timeout: 10000 });
  console.log(`the refund reached carol's open page in ${Date.now() - started} ms`);
  const text = await item.locator('.summary').textContent();
  expect(text.includes(`"${s.refund.amount}"`) && text.includes(`"${s.refund.currency}"`), `the host's text shows the amount: ${text}`);
  expect(await item.locator('time.countdown').textContent().then((t) => /expires in \d+:\d\d/.test(t)), 'a countdown');
  await carol.locator('.toast', { hasText: 'New approval request' }).first().waitFor({ timeout: 5000 });
  await axeCheck(carol, 'carol approvals with a request at 390px');
  await screenshot(carol, 'carol-approvals-request-390');
  await item.getByRole('button', { name: 'Approve with passkey' }).click();
  const done = await refund;
  expect(done.status === 200, `the waiting refund completes: ${JSON.stringify(done)}`);
  await carol.locator('#approval-history td', { hasText: 'approved' }).first().waitFor({ timeout: 5000 });
  await everyPage(carol, 'carol');

  // 2. The admin.
  const alice = await register(browser, s.alice, 'alice', WIDTHS.desktop);
  await alice.locator('section#overview').waitFor({ state: 'visible' });
  await alice.locator('#overview-counts li', { hasText: 'calls in the last hour' }).waitFor();

  // The audit tree of the refund's delegated call.
  await open(alice, 'audit');
  await alice.getByLabel('Tool').fill('offboarding.issue-refund');
  await alice.getByRole('button', { name: 'Filter' }).click();
  const row = alice.locator('details.event', { hasText: 'vault.fetch' }).first();
  await row.locator('summary').click();
  const hops = await row.locator('.tree .hop').allTextContents();
  console.log(`the refund's delegation chain: ${hops.join(' -> ')}`);
  expect(hops[0] === `${s.run_approver} (approved the run)`, `the run's approver heads the chain: ${hops}`);
  expect(hops.includes(`${s.cfo} (approved this action)`), `the CFO's approval hangs off the tool: ${hops}`);
  expect(hops.includes('agent:offboarding') && hops.includes('tool:offboarding.issue-refund'), `agent and tool: ${hops}`);
  expect(hops[hops.length - 1].startsWith('api:') && hops.includes('connection:offboarding/billing-api'),
    `the connection and the external host end it: ${hops}`);
  await alice.getByRole('button', { name: 'Verify the trail' }).click();
  await alice.locator('#audit-verdict', { hasText: 'intact' }).waitFor();
  await screenshot(alice, 'alice-audit-tree-1280');

  // A revoke in the matrix: the agent's next call is denied, live.
  await open(alice, 'permissions');
  const cell = alice.getByRole('checkbox', { name: `agent:offboarding can_use tool:${s.denied_tool}` });
  expect(await cell.isChecked(), 'the tuple is there before');
  await cell.uncheck();
  await alice.locator('.toast', { hasText: 'Revoked' }).first().waitFor();
  const denied = await callTool(s.denied_tool, { customer_id: s.refund.customer_id });
  expect(denied.status === 403, `the next call is refused: ${JSON.stringify(denied)}`);
  const shownAt = Date.now();
  await alice.locator('#permission-events li.denied', { hasText: s.denied_tool }).waitFor({ timeout: 3000 });
  console.log(`the denied call showed in the live list ${Date.now() - shownAt} ms after its answer`);
  await screenshot(alice, 'alice-permissions-revoked-1280');

  // Install crm from the catalog and fill its slot.
  await open(alice, 'marketplace');
  const crm = alice.locator('article[data-package="crm"]');
  // The catalog renders after its fetch, which reads each catalog component once per process (it
  // compiles them on first use): wait for the review.
  const named = await crm.getByText('api.hubapi.com').waitFor({ timeout: 60000 }).then(() => true, () => false);
  expect(named, 'the review names the host crm may reach');
  const effect = await crm.getByText('crm.create-contact: reversible, reaches outside systems').waitFor({ timeout: 1000 })
    .then(() => true, () => false);
  expect(effect, 'the review says what each tool declares it does');
  await crm.getByRole('button', { name: 'Install crm' }).click();
  await alice.locator('article[data-package="crm"] .tag', { hasText: 'installed' }).waitFor({ timeout: 60000 });
  await alice.locator('article[data-package="crm"]').getByLabel(/Secret for .*hubspot/).fill(s.hubspot_secret);
  await alice.locator('article[data-package="crm"]').getByRole('button', { name: 'Fill' }).click();
  await alice.locator('.toast', { hasText: 'hubspot is filled' }).waitFor();
  await screenshot(alice, 'alice-marketplace-installed-1280');

  // The kill switch asks first; cancelling changes nothing, confirming revokes.
  await open(alice, 'agents');
  const card = alice.locator('article[data-agent="crm"]');
  await card.getByRole('button', { name: 'Revoke crm' }).click();
  await alice.getByRole('button', { name: 'Cancel' }).click();
  expect(await card.locator('.tag', { hasText: 'revoked' }).count() === 0, 'cancel revokes nothing');
  await card.getByRole('button', { name: 'Revoke crm' }).click();
  await alice.locator('dialog#confirm').getByRole('button', { name: 'Revoke' }).click();
  await alice.locator('article[data-agent="crm"] .tag', { hasText: 'revoked' }).waitFor();
  await everyPage(alice, 'alice');

  // 3. Another tenant's admin sees none of it.
  const gina = await register(browser, s.gina, 'gina', WIDTHS.desktop);
  await gina.locator('section#overview').waitFor({ state: 'visible' });
  await everyPage(gina, 'gina');
  for (const name of ['agents', 'permissions', 'audit', 'approvals']) {
    await open(gina, name);
    const shown = await gina.locator(`section#${name}`).textContent();
    expect(!shown.includes('offboarding') && !shown.includes('carol'), `gina's ${name} page shows nothing of tenant default`);
  }
  console.log('CONSOLE OK');
});

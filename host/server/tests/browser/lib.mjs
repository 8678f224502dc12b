// What every console browser script uses: Debian's Chromium driven by playwright-core, a
// virtual passkey authenticator, axe-core's accessibility check and full-page screenshots.
// Run by the Rust tests (tests/support/browser.rs: run_browser_script), which set
// AIRLOCK_CHROMIUM (the browser), AIRLOCK_BROWSER_DIR (whose node_modules holds playwright-core
// and axe-core, npm ci'd by scripts/browser.sh), AIRLOCK_SCREENSHOTS and the scenario's own
// variables (AIRLOCK_URL, ...).

import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';

import { watchShapes, shapeReport } from './shapes.mjs';

// An ES module resolves bare names from its own folder only (NODE_PATH is for require):
// load the packages from AIRLOCK_BROWSER_DIR, where scripts/browser.sh installed them.
const require = createRequire(join(need('AIRLOCK_BROWSER_DIR'), 'package.json'));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

// The phone and desktop widths every page is checked at.
export const WIDTHS = { desktop: 1280, phone: 390 };

// An environment variable the script cannot do without.
export function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this script through the Rust test (run_browser_script)`);
  return v;
}

// Headless Chromium, as root so without its sandbox (playwright already turns off its
// background networking, component updates and sync: the network reaches only loopback).
export async function launch() {
  return chromium.launch({
    executablePath: need('AIRLOCK_CHROMIUM'),
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic'],
  });
}

// Pages made by newPage and not closed yet: a failing scenario screenshots them.
const open = new Set();

// A page in a fresh context (its own cookies) `width` px wide (WIDTHS.desktop or WIDTHS.phone),
// a phone width emulating a touch phone. Console errors and failed requests of the page are
// printed; `page.problems` collects them for a script that wants to assert none happened.
export async function newPage(browser, width = WIDTHS.desktop) {
  const phone = width < 600;
  const context = await browser.newContext({
    viewport: { width, height: phone ? 844 : 900 },
    deviceScaleFactor: 1,
    isMobile: phone,
    hasTouch: phone,
  });
  const page = await context.newPage();
  open.add(page);
  page.on('close', () => open.delete(page));
  page.label = `${width}px`;
  page.problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') {
      const line = `console.${m.type()}: ${m.text()}`;
      page.problems.push(line);
      console.log(`[${width}px] ${line}`);
    }
  });
  page.on('pageerror', (e) => {
    page.problems.push(`page error: ${e.message}`);
    console.log(`[${width}px] page error: ${e.stack || e.message}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400) console.log(`[${width}px] HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  watchShapes(page);
  page.on('requestfailed', (r) => console.log(`[${width}px] request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  return page;
}

// A virtual platform authenticator (a passkey in the device, user verified, presence given
// without a touch) for `page`, through the DevTools protocol. Returns { cdp, authenticatorId,
// credentials() } — credentials() lists the passkeys it holds.
export async function virtualAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  const credentials = async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  return { cdp, authenticatorId, credentials };
}

// Runs axe-core on the page as it is now; throws, listing them, when any violation is
// `serious` or `critical` (returns them all otherwise, the minor ones printed). The console's
// policy (`script-src 'self'`) refuses an injected <script>, so axe is evaluated through the
// DevTools protocol, which the page's policy does not govern.
export async function axeCheck(page, label) {
  const has = await page.evaluate(() => typeof window.axe === 'object');
  if (!has) await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return { passed: r.passes.length, violations: r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    })) };
  });
  const describe = (v) => `  ${v.impact} ${v.id}: ${v.help} (${v.helpUrl})\n` +
    v.nodes.map((n) => `    at ${n.target}\n      ${(n.summary || '').replace(/\n/g, '\n      ')}`).join('\n');
  const { passed, violations } = result;
  const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const minor = violations.filter((v) => !bad.includes(v));
  if (minor.length) console.log(`axe ${label}: ${minor.length} minor violation(s)\n${minor.map(describe).join('\n')}`);
  if (bad.length) {
    throw new Error(`axe ${label}: ${bad.length} serious or critical violation(s)\n${bad.map(describe).join('\n')}`);
  }
  console.log(`axe ${label}: ${passed} rules passed, no serious or critical violation`);
  return violations;
}

// A full-page screenshot at `${AIRLOCK_SCREENSHOTS}/${name}.png`; returns its path.
export async function screenshot(page, name) {
  const dir = need('AIRLOCK_SCREENSHOTS');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot ${path}`);
  return path;
}

// Runs `scenario(browser)` with a launched browser, closed afterwards whatever happens, then
// checks that every JSON body the pages sent fits its route's request schema (shapes.mjs); a
// failure prints its stack, screenshots every page still open (`failure-<script>-<width>px`)
// and exits 1 (which fails the Rust test with this output).
export async function run(scenario) {
  let browser;
  try {
    browser = await launch();
    await scenario(browser);
    // Every JSON body the pages sent matched the request type its route reads, and every
    // answer the type its route returns (shapes.mjs).
    const { checked, answers, violations } = await shapeReport();
    if (violations.length) throw new Error(`the console and the API disagree on shapes:\n${violations.join('\n')}`);
    console.log(`request bodies checked against the API's schemas: ${checked}`);
    console.log(`answers checked against the API's schemas: ${answers}`);
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    process.exitCode = 1;
    const script = basename(process.argv[1] || 'script', '.mjs');
    for (const page of open) {
      console.error(`failed at ${page.url()}`);
      await screenshot(page, `failure-${script}-${page.label}`).catch((err) => console.error(`no screenshot: ${err.message}`));
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
}

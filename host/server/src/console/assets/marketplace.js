// The catalog. Each package's permissions are reviewed before install (what each tool declares it
// does, tuples, connections and the hosts they reach, approval policies, limits); install shows its progress as the host
// reports it (verify, compile each component, provision); the slots it declared are filled
// right there. An installed agent upgrades only after its permission diff is consented to,
// and uninstalls (revoking everything the install provisioned) after a confirmation.
'use strict';

import { $, h, api, apiStream, fail, toast, holds, confirmAction } from './core.js';
import { slotForm } from './connections.js';

export async function show() {
  const { catalog, installed } = await api('GET', '/v1/marketplace/catalog');
  const byPackage = new Map(installed.map((i) => [i.package, i]));
  $('catalog').replaceChildren(...catalog.map((p) => card(p, byPackage.get(p.name))));
}

function review(p) {
  const hosts = p.connections.map((c) => `${c.name} (${c.kind}): ${c.allowed_hosts.join(', ') || 'no host'}`);
  const policies = p.approval_policies.map((x) => `${x.tool} ${x.action}: approved by a ${x.role}`);
  if (p.entry_approval) policies.push(`every run: approved by a ${p.entry_approval.role}`);
  const limits = p.limits ? Object.entries(p.limits).map(([k, v]) => `${k}: ${v}`) : ['the host defaults'];
  const section = (title, items, empty) => [h('h3', {}, title),
    items.length ? h('ul', {}, items.map((i) => h('li', {}, i))) : h('p', { class: 'hint' }, empty)];
  // What each tool declares it does: the risk to weigh before granting it.
  const effects = (p.tools || []).map((t) => {
    const e = t.effects;
    const words = [e.effect, e.open_world ? 'reaches outside systems' : 'stays inside Airlock'];
    if (e.idempotent && e.effect !== 'read-only') words.push('idempotent');
    return `${t.id}: ${e.declared ? '' : 'undeclared, counted as '}${words.join(', ')}`;
  });
  return h('div', { class: 'review' },
    ...section('What its tools do', effects, 'Not known yet: the host is still reading its components.'),
    ...section('Relationship tuples written', p.tuples || [], 'None.'),
    ...section('Connections and the hosts they may reach', hosts, 'None: it reaches no outside system.'),
    ...section('Approvals its tools need', policies, 'None.'),
    ...section('Limits per call', limits, ''));
}

function card(p, inst) {
  const out = h('div', { class: 'outcome', 'aria-live': 'polite' });
  const actions = h('div', { class: 'actions' });
  if (holds('admin')) {
    if (!inst) actions.append(h('button', { type: 'button', class: 'primary', onclick: () => install(p, out) }, `Install ${p.name}`));
    else {
      actions.append(h('button', { type: 'button', onclick: () => upgrade(p, inst, out) }, 'Check for upgrade'),
        h('button', { type: 'button', class: 'danger', onclick: () => uninstall(inst) }, `Uninstall ${inst.agent}`));
    }
  }
  return h('article', { class: 'card', dataset: { package: p.name } },
    h('h2', {}, p.name, ' ', h('span', { class: 'meta' }, `${p.version} · ${p.publisher}`),
      inst ? h('span', { class: 'tag ok' }, `installed ${inst.version}`) : null),
    h('p', {}, p.description),
    h('details', { open: !inst }, h('summary', {}, 'Permissions'), review(p)),
    inst ? slots(inst) : null,
    actions, out);
}

function slots(inst) {
  if (!inst.connection_slots.length) return null;
  return h('div', { class: 'slots' }, h('h3', {}, 'Connection slots'),
    ...inst.connection_slots.map((s) => slotForm(s, () => show())));
}

async function install(p, out) {
  const bar = h('progress', { max: '1', value: '0', 'aria-label': `Installing ${p.name}` });
  const step = h('span', {}, 'Starting');
  out.replaceChildren(bar, ' ', step);
  try {
    const report = await apiStream('POST', '/v1/marketplace/install', { catalog: p.name }, (s) => {
      if (s.step === 'verified') step.textContent = `Verified ${s.package} ${s.version} from ${s.publisher}`;
      if (s.step === 'compiling') { bar.max = s.total + 1; bar.value = s.done; step.textContent = `Compiling ${s.component} (${s.done + 1} of ${s.total})`; }
      if (s.step === 'compiled') { bar.max = s.total + 1; bar.value = s.done; }
      if (s.step === 'provisioning') { bar.value = bar.max - 0.5; step.textContent = 'Provisioning identity, tuples, slots and policies'; }
    });
    bar.value = bar.max;
    toast(`Installed ${report.package} ${report.version} as agent ${report.agent}.`);
    await show();
  } catch (e) { out.replaceChildren(); fail(`Installing ${p.name}: ${e.message}`); }
}

function diffList(diff) {
  const rows = [];
  for (const [k, label] of [['tuples_added', 'New tuple'], ['tuples_removed', 'Tuple removed'], ['connections_added', 'New connection'],
    ['connections_removed', 'Connection removed'], ['hosts_added', 'New host'], ['hosts_removed', 'Host removed'],
    ['policies_added', 'New approval policy'], ['policies_removed', 'Approval policy removed'], ['policies_changed', 'Approval policy changed'],
    ['model_types_added', 'New model type'], ['effects_changed', 'Tool effect']]) {
    for (const x of diff[k] || []) rows.push(h('li', {}, `${label}: ${x}`));
  }
  return rows.length ? h('ul', {}, rows) : h('p', {}, 'No permission changes.');
}

async function upgrade(p, inst, out) {
  try {
    const dry = await api('POST', '/v1/marketplace/upgrade', { catalog: p.name, dry_run: true });
    const consent = h('input', { type: 'checkbox', id: `consent-${p.name}` });
    const apply = h('button', { type: 'button', class: 'primary', onclick: async () => {
      if (!consent.checked) return fail('Tick the consent box to accept the new permissions.');
      try {
        await api('POST', '/v1/marketplace/upgrade', { catalog: p.name, consent: true });
        toast(`Upgraded ${inst.agent} to ${dry.diff.to_version}.`);
        await show();
      } catch (e) { fail(`Upgrading ${p.name}: ${e.message}`); }
    } }, `Upgrade to ${dry.diff.to_version}`);
    out.replaceChildren(h('h3', {}, `${dry.diff.from_version} to ${dry.diff.to_version}`), diffList(dry.diff),
      h('label', {}, consent, ' I consent to these permission changes'), apply);
  } catch (e) { fail(`Upgrade of ${p.name}: ${e.message}`); }
}

async function uninstall(inst) {
  const ok = await confirmAction(`Uninstall ${inst.agent}? Its identity, tuples, connections and policies are revoked at once.`,
    { action: 'Uninstall' });
  if (ok === null) return;
  try {
    await api('DELETE', `/v1/marketplace/installed/${encodeURIComponent(inst.agent)}`);
    toast(`Uninstalled ${inst.agent}.`);
    await show();
  } catch (e) { fail(`${inst.agent}: ${e.message}`); }
}

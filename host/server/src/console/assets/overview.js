// The tenant at a glance: calls and denials in the last hour (with a per-minute chart),
// pending approvals, installed agents, and the latest events, live.
'use strict';

import { $, h, svg, api, when, onLiveEvent } from './core.js';

export async function show() {
  const [summary, { approvals }, { installed }, { events }] = await Promise.all([
    api('GET', '/v1/audit/summary?minutes=60'), api('GET', '/v1/approvals?status=pending'),
    api('GET', '/v1/marketplace/installed'), api('GET', '/v1/audit/search?limit=10')]);
  const count = (n, label, href) => h('li', {}, h('a', { href }, h('strong', {}, String(n)), ` ${label}`));
  $('overview-counts').replaceChildren(
    count(summary.totals.calls, 'calls in the last hour', '/console/audit'),
    count(summary.totals.denials, 'denied', '/console/audit'),
    count(approvals.length, 'pending approvals', '/console/approvals'),
    count(installed.length, 'installed agents', '/console/marketplace'));
  $('overview-chart').replaceChildren(chart(summary.buckets));
  $('overview-events').replaceChildren(...events.map(line));
  return onLiveEvent((e) => {
    $('overview-events').prepend(line(e));
    while ($('overview-events').children.length > 10) $('overview-events').lastChild.remove();
  });
}

function line(e) {
  return h('li', { class: e.outcome === 'denied' ? 'denied' : '' },
    h('time', {}, when(e.ts)), ` ${e.kind} `, h('strong', {}, e.outcome), ` ${e.agent} ${e.tool}`);
}

/// Bars per minute: calls, and the denied part of them in the denial colour.
function chart(buckets) {
  const width = 600;
  const height = 120;
  const top = Math.max(1, ...buckets.map((b) => b.calls));
  const w = width / Math.max(1, buckets.length);
  const bars = buckets.flatMap((b, i) => {
    const ch = (b.calls / top) * (height - 10);
    const dh = (b.denials / top) * (height - 10);
    const minute = new Date(b.start).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return [
      svg('rect', { x: i * w, y: height - ch, width: Math.max(1, w - 1), height: ch, class: 'calls' },
        svg('title', {}, `${minute}: ${b.calls} calls, ${b.denials} denied`)),
      svg('rect', { x: i * w, y: height - dh, width: Math.max(1, w - 1), height: dh, class: 'denials' }),
    ];
  });
  const total = buckets.reduce((a, b) => a + b.calls, 0);
  const denied = buckets.reduce((a, b) => a + b.denials, 0);
  return svg('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', class: 'chart',
                      'aria-label': `${total} calls and ${denied} denials over the last hour` }, bars);
}

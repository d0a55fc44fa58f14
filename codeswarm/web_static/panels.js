// Summaries across swarms: the pending approvals (focus, accept, decline, accept all) and the
// queued prompts (cancel), shown above whatever view is open; the same queue rows per swarm in its
// view; and the swarm's workspace archives as download links.

import { commandText, fmtAge, fmtBytes, h } from './util.js';

const MAX_ROWS = 100; // rows drawn per summary; "accept all" still covers every pending one

/** The approvals summary. actions: {focus(swarm, nodeId), approve(swarm, nodeId, block, approved)} */
export function renderApprovals(el, store, actions) {
  const open = store.openApprovals();
  el.hidden = open.length === 0;
  if (!open.length) {
    el.replaceChildren();
    return;
  }
  const swarms = new Set(open.map((a) => a.swarm.id));
  const sending = open.filter((a) => a.block.sending).length;
  const rows = open.slice(0, MAX_ROWS).map(({ swarm, node, block }) => {
    const busy = !!block.sending;
    return h('li', { class: 'appr-row', dataset: { approval: block.approvalId, swarm: swarm.id, node: String(node.id) } },
      h('span', { class: 'where' }, h('strong', null, store.swarmName(swarm)), ` · node ${node.id}`),
      h('code', { class: 'cmd', title: commandText(block.command) }, commandText(block.command)),
      h('span', { class: 'age' }, block.at ? fmtAge(store.now() - block.at) : ''),
      h('span', { class: 'status' }, block.sending ? `sending ${block.sending}…` : block.error ? `not sent: ${block.error}` : ''),
      h('span', { class: 'row-actions' },
        h('button', { type: 'button', class: 'focus', onclick: () => actions.focus(swarm, node.id), 'aria-label': `Focus node ${node.id} of ${store.swarmName(swarm)}` }, 'Focus'),
        h('button', { type: 'button', class: 'primary accept', disabled: busy, onclick: () => actions.approve(swarm, node.id, block, true),
          'aria-label': `Accept on node ${node.id} of ${store.swarmName(swarm)}` }, 'Accept'),
        h('button', { type: 'button', class: 'decline', disabled: busy, onclick: () => actions.approve(swarm, node.id, block, false),
          'aria-label': `Decline on node ${node.id} of ${store.swarmName(swarm)}` }, 'Decline')));
  });
  const more = open.length > MAX_ROWS ? h('li', { class: 'hint' }, `… and ${open.length - MAX_ROWS} more`) : null;
  const all = (approved) => {
    for (const { swarm, node, block } of store.openApprovals()) {
      if (!block.sending) actions.approve(swarm, node.id, block, approved);
    }
  };
  const wasOpen = el.querySelector('details') ? el.querySelector('details').open : true;
  const focus = rememberFocus(el);
  el.replaceChildren(h('details', { class: 'card dock-panel', open: wasOpen },
    h('summary', null, h('span', { class: 'badge state-approval' }, String(open.length)),
      ` pending approval${open.length === 1 ? '' : 's'}`, swarms.size > 1 ? ` in ${swarms.size} swarms` : '',
      sending ? ` (${sending} sending)` : ''),
    h('div', { class: 'dock-actions' },
      h('button', { type: 'button', class: 'primary accept-all', onclick: () => all(true) }, `Accept all ${open.length}`),
      h('button', { type: 'button', class: 'decline-all', onclick: () => all(false) }, `Decline all ${open.length}`)),
    h('ul', { class: 'appr-list' }, rows, more)));
  focus();
}

/**
 * Redrawing a panel must not drop the keyboard user's place: remember which row and which
 * button had the focus, and after the redraw focus the same button of that row, or of the row
 * that took its place, or the panel's summary.
 */
function rememberFocus(el) {
  const active = document.activeElement;
  if (!active || !el.contains(active)) return () => {};
  const row = active.closest('li');
  const rows = [...el.querySelectorAll('li')];
  const index = row ? rows.indexOf(row) : -1;
  const key = row ? row.dataset.approval || row.dataset.queue : null;
  const cls = [...active.classList].find((c) => c !== 'primary') || '';
  const isSummary = active.tagName === 'SUMMARY';
  return () => {
    const newRows = [...el.querySelectorAll('li')];
    const same = newRows.find((r) => key && (r.dataset.approval === key || r.dataset.queue === key));
    const target = same || newRows[Math.min(index, newRows.length - 1)];
    const btn = target && (cls ? target.querySelector(`.${cls}:not(:disabled)`) : null);
    const fallback = target && target.querySelector('button:not(:disabled)');
    (isSummary ? el.querySelector('summary') : btn || fallback || el.querySelector('summary') || document.body).focus();
  };
}

/** Queue rows (oldest first). actions: {cancelQueued(item), select(swarmId)} */
export function queueRows(store, items, actions, { showTarget }) {
  return items.slice(0, MAX_ROWS).map((item) => {
    const target = store.swarms.get(item.target_swarm_id);
    const source = item.source_swarm_id ? store.swarms.get(item.source_swarm_id) : null;
    const where = item.selector === 'idle' ? 'first idle node'
      : item.selector === 'all' ? 'all nodes' : `nodes ${Array.isArray(item.nodes) ? item.nodes.join(',') : item.nodes}`;
    const created = typeof item.created_at === 'number' ? item.created_at : Date.parse(item.created_at) / 1000;
    return h('li', { class: 'queue-row', dataset: { queue: item.queue_id } },
      showTarget ? h('button', { type: 'button', class: 'link', onclick: () => actions.select(item.target_swarm_id) },
        target ? store.swarmName(target) : String(item.target_swarm_id).slice(0, 8)) : null,
      h('span', { class: 'sel' }, where),
      source ? h('span', { class: 'from' }, `from ${store.swarmName(source)}`) : null,
      item.blocked ? h('span', { class: 'blocked', title: String(item.blocked.reason || '') },
        `blocked on node ${item.blocked.node_id}: waits for its next idle turn`) : null,
      h('span', { class: 'content', title: item.content }, String(item.content || '').slice(0, 160)),
      h('span', { class: 'age' }, Number.isFinite(created) ? fmtAge(store.now() - created) : ''),
      h('button', { type: 'button', class: 'cancel', disabled: !!item._cancelling, onclick: () => actions.cancelQueued(item),
        'aria-label': `Cancel queued prompt ${String(item.content || '').slice(0, 40)}` }, item._cancelling ? 'Cancelling…' : 'Cancel'));
  });
}

export function renderQueueDock(el, store, actions) {
  const items = store.queue;
  el.hidden = items.length === 0;
  if (!items.length) {
    el.replaceChildren();
    return;
  }
  const wasOpen = el.querySelector('details') ? el.querySelector('details').open : false;
  const focus = rememberFocus(el);
  el.replaceChildren(h('details', { class: 'card dock-panel', open: wasOpen },
    h('summary', null, h('span', { class: 'badge' }, String(items.length)), ` queued prompt${items.length === 1 ? '' : 's'} (all swarms)`),
    h('ul', { class: 'queue-list' }, queueRows(store, items, actions, { showTarget: true }))));
  focus();
}

export { rememberFocus };

/** The archives of one swarm as links served by the page's server (token-checked). */
export function archiveLinks(swarm) {
  return swarm.archives.map((a) => h('li', null,
    h('a', { href: `archives/${encodeURIComponent(a.name)}`, download: a.name, class: 'archive-link', dataset: { node: String(a.nodeId) } },
      `node ${a.nodeId ?? '?'}: ${a.name}`), a.size ? ` (${fmtBytes(a.size)})` : ''));
}

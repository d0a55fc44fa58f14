// Drawing the store: the swarm list, the summaries above the main area (approvals, queue), the
// selected swarm (header, prompt box, overview, queue and archives, transcripts) and the notices.
// Called at most once per animation frame; it only touches what the store marked as changed,
// which is what keeps thousands of deltas per second cheap.

import { Overview } from './overview.js';
import { Panes } from './panes.js';
import { archiveLinks, queueRows, rememberFocus, renderApprovals, renderQueueDock } from './panels.js';
import { describeNodes, expandSelector, parseRoute } from './prompt.js';
import { LIFECYCLE } from './store.js';
import { h, fmtAge, fmtCost, fmtTokens, shortId } from './util.js';

const ACTIVE = new Set(['pending', 'running', 'unknown']);
export const PANES_MAX = 16; // swarms up to this size show every node's transcript at once
const CHIPS_MAX = 64; // up to this size the targets are checkboxes; above, a node list to type

export function stateBadge(state, extra = '') {
  return h('span', { class: `badge state-${state} ${extra}`.trim() }, state);
}

export class Renderer {
  constructor({ store, listEl, mainEl, noticesEl, approvalsEl, queueEl, actions }) {
    this.store = store;
    this.listEl = listEl;
    this.mainEl = mainEl;
    this.noticesEl = noticesEl;
    this.approvalsEl = approvalsEl;
    this.queueEl = queueEl;
    this.actions = actions; // {select, openNode, inject, enqueue, terminate, approve, cancelQueued, dismiss}
    this.selected = null;
    this.focusNode = null;
    this.view = null; // DOM handles of the selected swarm's view
    this.lastAgeTick = 0;
  }

  flush() {
    const store = this.store;
    const tick = Math.floor(Date.now() / 5000); // ages move on every 5 s
    const ticked = tick !== this.lastAgeTick;
    if (ticked) {
      this.lastAgeTick = tick;
      // Information fades after a while; errors stay until dismissed.
      const old = store.notices.filter((n) => n.level === 'info' && Date.now() - n.at > 10000);
      for (const n of old) store.dismiss(n.id);
      store.listDirty = true;
      store.queueDirty = store.queueDirty || store.queue.length > 0;
      const sel = this.selected && store.swarms.get(this.selected);
      if (sel) store.touch(sel);
    }
    if (store.listDirty) {
      store.listDirty = false;
      this.renderList();
    }
    if (store.noticesDirty) {
      store.noticesDirty = false;
      this.renderNotices();
    }
    if (store.approvalsDirty) {
      store.approvalsDirty = false;
      store.listDirty = true; // the list shows approval counts
      renderApprovals(this.approvalsEl, store, this.actions);
    }
    const queueChanged = store.queueDirty;
    if (queueChanged) {
      store.queueDirty = false;
      renderQueueDock(this.queueEl, store, this.actions);
    }
    if (this.view && (store.changedSwarms.has(this.view.swarm.id) || queueChanged || ticked)) this.updateView(queueChanged);
    store.changedSwarms.clear();
  }

  // ------------------------------------------------------------------ swarm list

  renderList() {
    const store = this.store;
    const items = [];
    for (const op of store.pendingLaunches()) {
      items.push(h('li', { class: 'swarm-item launching', dataset: { request: op.requestId } },
        h('div', { class: 'row1' }, stateBadge('launching', 'optimistic'),
          h('span', { class: 'name' }, `${op.payload.alias ? `${op.payload.alias}: ` : ''}${op.payload.nodes} × ${op.payload.provider}`)),
        h('div', { class: 'row2' }, 'waiting for the router…')));
    }
    const approvals = new Map();
    for (const a of store.approvals.values()) approvals.set(a.swarm.id, (approvals.get(a.swarm.id) || 0) + 1);
    const swarms = [...store.swarms.values()].sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    for (const s of swarms) {
      const state = store.displayState(s);
      const tokens = store.tokenTotal(s);
      const cost = store.costTotal(s);
      const age = s.createdAt ? fmtAge(store.now() - s.createdAt) : '–';
      const pending = approvals.get(s.id) || 0;
      const selected = s.id === this.selected;
      items.push(h('li', null, h('button', {
        type: 'button',
        class: `swarm-item${selected ? ' selected' : ''}${state === 'removed' ? ' removed' : ''}${s.unseen && !selected ? ' unseen' : ''}`,
        dataset: { swarm: s.id, state },
        'aria-current': selected ? 'true' : null,
        'aria-label': `${s.alias ? `${s.alias}, ` : ''}swarm ${s.jobId || shortId(s.id)}, ${state}` +
          `${pending ? `, ${pending} pending approval${pending === 1 ? '' : 's'}` : ''}${s.unseen && !selected ? ', new output' : ''}`,
        onclick: () => this.actions.select(s.id),
      },
      h('div', { class: 'row1' }, stateBadge(state, s.optimistic ? 'optimistic' : ''),
        store.delayed(s) ? h('span', { class: 'badge delayed', title: 'pending longer than the preset expects' }, 'delayed') : null,
        s.alias ? h('span', { class: 'alias' }, s.alias) : null,
        h('span', { class: 'name' }, s.jobId || shortId(s.id)),
        pending ? h('span', { class: 'badge state-approval', title: 'pending approvals' }, `⚠ ${pending}`) : null,
        s.unseen && !selected ? h('span', { class: 'unseen-dot', title: 'new output' }) : null),
      h('div', { class: 'row2' },
        h('span', null, s.providerId || s.provider || '?'),
        h('span', null, `${s.nodeCount} node${s.nodeCount === 1 ? '' : 's'}`),
        h('span', { title: 'age' }, age),
        h('span', { class: 'tokens', title: 'total tokens' }, `${fmtTokens(tokens)} tok`),
        cost !== null ? h('span', { class: `cost${s.budgetState && s.budgetState !== 'ok' ? ` budget-${s.budgetState}` : ''}`,
          title: s.budgetUsd ? `estimated spend of a ${fmtCost(s.budgetUsd)} budget` : 'estimated spend' },
        `${fmtCost(cost)}${s.budgetUsd ? ` / ${fmtCost(s.budgetUsd)}` : ''}`) : null))));
    }
    if (!items.length) items.push(h('li', { class: 'empty' }, 'No swarms yet.'));
    const focus = rememberListFocus(this.listEl);
    this.listEl.replaceChildren(...items);
    focus();
  }

  renderNotices() {
    this.noticesEl.replaceChildren(...this.store.notices.map((n) => h('div', { class: `notice ${n.level}` },
      h('span', { class: 'text' }, n.text),
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Dismiss', onclick: () => this.actions.dismiss(n.id) }, '×'))));
  }

  // ------------------------------------------------------------------ selected swarm

  /** Show a swarm (and optionally one node's transcript). False when the swarm is not known yet. */
  show(swarmId, nodeId = null) {
    this.selected = swarmId;
    this.focusNode = nodeId;
    this.store.listDirty = true;
    const s = swarmId ? this.store.swarms.get(swarmId) : null;
    if (!s) {
      this.dropView();
      return false;
    }
    s.unseen = false;
    if (!this.view || this.view.swarm !== s) this.buildView(s);
    else this.updateView(true);
    return true;
  }

  dropView() {
    if (!this.view) return;
    this.view.overview.destroy();
    this.view.panes.destroy();
    this.view = null;
    this.store.viewed = null;
  }

  buildView(s) {
    this.dropView();
    const v = { swarm: s, nodeCount: -1, queueKey: '' };
    v.badge = h('span');
    v.alias = h('span', { class: 'alias' });
    v.facts = h('dl', { class: 'facts' });
    v.lifecycle = h('ol', { class: 'lifecycle', 'aria-label': 'Lifecycle' });
    v.notice = h('p', { class: 'swarm-notice', role: 'alert' });
    v.terminate = h('button', { type: 'button', class: 'danger', onclick: () => this.actions.terminate(s) }, 'Terminate…');
    this.buildPrompt(v);
    v.overview = new Overview({ store: this.store, swarm: s, onOpen: (id) => this.actions.openNode(s.id, id) });
    v.queueBox = h('section', { class: 'card swarm-queue', 'aria-label': 'Queued prompts for this swarm', hidden: true });
    v.archiveBox = h('section', { class: 'card swarm-archives', 'aria-label': 'Workspace archives', hidden: true });
    v.focusBar = h('div', { class: 'focus-bar' });
    v.panesEl = h('div', { class: 'panes' });
    v.panes = new Panes({ store: this.store, swarm: s, el: v.panesEl,
      approve: (block, decision) => this.actions.approve(s, block.nodeId, block, null, decision) });
    v.root = h('section', { class: 'detail', dataset: { swarm: s.id }, 'aria-label': 'Swarm' },
      h('header', { class: 'detail-head card' },
        h('div', { class: 'title-row' }, h('h2', null, 'Swarm ', h('code', null, s.jobId || shortId(s.id))), v.alias, v.badge,
          h('span', { class: 'spacer' }), v.terminate),
        v.facts, v.lifecycle, v.notice),
      v.form, v.overview.el, v.queueBox, v.archiveBox, v.focusBar, v.panesEl);
    this.view = v;
    this.mainEl.replaceChildren(v.root);
    this.updateView(true);
  }

  buildPrompt(v) {
    v.text = h('textarea', { id: 'inject-text', rows: 2,
      placeholder: 'Prompt (Ctrl+Enter sends). Prefixes: /all, /node[0,2-4], /swarm[alias]/idle|all|node[…]',
      'aria-describedby': 'route-preview',
      oninput: () => this.preview(),
      onkeydown: (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); v.form.requestSubmit(); } } });
    v.allRadio = h('input', { type: 'radio', name: 'inject-target', value: 'all', checked: true, onchange: () => this.syncTargets() });
    v.someRadio = h('input', { type: 'radio', name: 'inject-target', value: 'some', onchange: () => this.syncTargets() });
    v.checks = h('div', { class: 'node-checks', role: 'group', 'aria-label': 'Target nodes', onchange: () => this.preview() });
    v.sendBtn = h('button', { type: 'submit', class: 'primary' }, 'Send');
    v.routePreview = h('p', { id: 'route-preview', class: 'route-preview', 'aria-live': 'polite' });
    v.injectError = h('p', { class: 'form-error', role: 'alert' });
    v.targets = h('div', { class: 'targets' },
      h('label', { class: 'check' }, v.allRadio, ' All nodes'),
      h('label', { class: 'check' }, v.someRadio, ' Some:'), v.checks, v.sendBtn);
    v.form = h('form', { class: 'inject', 'aria-label': 'Send a prompt', onsubmit: (e) => this.sendInject(e) },
      h('label', { for: 'inject-text', class: 'sr-only' }, 'Prompt'), v.text, v.targets, v.routePreview, v.injectError);
  }

  syncTargets() {
    const v = this.view;
    for (const c of v.checks.querySelectorAll('input')) c.disabled = v.allRadio.checked;
    this.preview();
  }

  /** The picked targets (no prefix): 'all', or {nodes, ids}, or an error string. */
  pickedTargets() {
    const v = this.view;
    const s = v.swarm;
    if (v.allRadio.checked) return { nodes: 'all', ids: s.nodes.map((n) => n.id) };
    if (s.nodeCount <= CHIPS_MAX) {
      const ids = [...v.checks.querySelectorAll('input:checked')].map((c) => Number(c.value));
      return ids.length ? { nodes: ids, ids } : 'Pick at least one node.';
    }
    const text = v.checks.querySelector('input').value.trim();
    const r = expandSelector(text, s.nodeCount);
    return typeof r === 'string' ? r : { nodes: text.replace(/\s+/g, ''), ids: r };
  }

  route() {
    const v = this.view;
    const r = parseRoute(v.text.value, v.swarm, (alias) => this.store.byAlias(alias));
    if (r.kind !== 'plain') return r;
    const t = this.pickedTargets();
    if (typeof t === 'string') return { kind: 'error', error: t };
    return { kind: 'inject', nodes: t.nodes, ids: t.ids, content: v.text.value,
      preview: `→ ${describeNodes(t.ids, v.swarm.nodeCount)} of this swarm` };
  }

  preview() {
    const v = this.view;
    if (!v.text.value.trim()) {
      v.routePreview.textContent = '';
      v.routePreview.classList.remove('bad');
      return;
    }
    const r = this.route();
    v.routePreview.textContent = r.kind === 'error' ? `✗ ${r.error}` : r.preview;
    v.routePreview.classList.toggle('bad', r.kind === 'error');
  }

  sendInject(e) {
    e.preventDefault();
    const v = this.view;
    const raw = v.text.value;
    if (!raw.trim()) {
      v.injectError.textContent = 'Write a prompt first.';
      v.text.focus();
      return;
    }
    const r = this.route();
    if (r.kind === 'error') {
      v.injectError.textContent = r.error;
      v.text.focus();
      return;
    }
    v.injectError.textContent = '';
    const onRejected = (reason) => {
      if (this.view === v) {
        v.injectError.textContent = `${r.kind === 'enqueue' ? 'Enqueue' : 'Inject'} rejected: ${reason}`;
        if (!v.text.value) v.text.value = raw; // give the prompt back
      }
    };
    const sent = r.kind === 'enqueue'
      ? this.actions.enqueue(v.swarm, r, onRejected)
      : this.actions.inject(v.swarm, r.nodes, r.ids, r.content, onRejected);
    if (sent) {
      v.text.value = '';
      this.preview();
    }
  }

  /** The nodes whose transcripts are shown: the opened one, or all of a small swarm. */
  shownNodes() {
    const s = this.view.swarm;
    if (this.focusNode !== null && this.focusNode < s.nodes.length) return [this.focusNode];
    if (s.nodeCount <= PANES_MAX) return s.nodes.map((n) => n.id);
    return [];
  }

  updateView(structural = false) {
    const v = this.view;
    const s = v.swarm;
    // The header only when something in it changed: rewriting it on every streaming frame cost
    // a style and layout pass of the whole view.
    if (s.headDirty || v.nodeCount !== s.nodeCount) {
      s.headDirty = false;
      this.updateHead();
    }
    if (structural || v.shownKey !== `${this.focusNode}:${s.nodes.length}`) {
      v.shownKey = `${this.focusNode}:${s.nodes.length}`;
      const shown = this.shownNodes();
      v.panes.setShown(shown);
      this.store.viewed = { swarmId: s.id, nodes: new Set(shown) };
      v.overview.setOpen(this.focusNode);
      this.renderFocusBar(shown);
    }
    if (v.ovRev !== s.factsRev || structural) {
      v.ovRev = s.factsRev;
      v.overview.update();
    } else {
      v.overview.draw(); // ages
    }
    if (structural) this.renderSwarmExtras();
    v.panes.update();
  }

  renderFocusBar(shown) {
    const v = this.view;
    const s = v.swarm;
    if (this.focusNode !== null && shown.length === 1) {
      v.focusBar.replaceChildren(h('h3', null, `Transcript of node ${this.focusNode}`),
        h('button', { type: 'button', class: 'close-node', onclick: () => this.actions.openNode(s.id, null) },
          s.nodeCount <= PANES_MAX ? 'Show all nodes' : 'Close transcript'));
    } else if (!shown.length) {
      v.focusBar.replaceChildren(h('p', { class: 'hint' }, 'Pick a node in the overview to read its transcript.'));
    } else {
      v.focusBar.replaceChildren();
    }
  }

  renderSwarmExtras() {
    const v = this.view;
    const s = v.swarm;
    const items = this.store.queue.filter((i) => i.target_swarm_id === s.id);
    v.queueBox.hidden = !items.length;
    const focus = rememberFocus(v.queueBox);
    v.queueBox.replaceChildren(...(items.length ? [h('h3', null, `Queued for this swarm (${items.length})`),
      h('ul', { class: 'queue-list' }, queueRows(this.store, items, this.actions, { showTarget: false }))] : []));
    focus();
    v.archiveBox.hidden = !s.archives.length;
    if (s.archives.length) {
      v.archiveBox.replaceChildren(h('h3', null, 'Workspace archives'), h('ul', { class: 'archive-list' }, archiveLinks(s)));
    }
  }

  updateHead() {
    const v = this.view;
    const s = v.swarm;
    const store = this.store;
    const state = store.displayState(s);
    v.badge.replaceWith(v.badge = stateBadge(state, s.optimistic ? 'optimistic' : ''));
    v.alias.textContent = s.alias ? `${s.alias}${s.autoRoute ? ' · auto-route' : ''}` : '';
    v.alias.hidden = !s.alias;
    v.root.dataset.state = state;
    const tokens = store.tokenTotal(s);
    const facts = [
      ['ID', s.id], ['Provider', `${s.providerId || '?'} (${s.provider || '?'})`],
      ['Agent', [s.runtime, s.model].filter(Boolean).join(' / ') || '–'], ['Nodes', String(s.nodeCount)],
      ['Age', s.createdAt ? fmtAge(store.now() - s.createdAt) : '–'], ['Tokens', fmtTokens(tokens)],
    ];
    const cost = store.costTotal(s);
    if (cost !== null || s.budgetUsd) {
      const spend = `${cost === null ? '–' : fmtCost(cost)}${s.costUnknown ? ' (some usage unpriced)' : ''}`;
      facts.push(['Spend', s.budgetUsd ? h('span', { class: `budget budget-${s.budgetState || 'ok'}` },
        h('meter', { min: '0', max: String(s.budgetUsd), low: String(0.8 * s.budgetUsd), high: String(0.999 * s.budgetUsd),
          optimum: '0', value: String(Math.min(cost ?? 0, s.budgetUsd)), 'aria-label': 'budget used' }),
        ` ${spend} of ${fmtCost(s.budgetUsd)}${s.budgetState === 'exceeded' ? ' — exceeded' : ''}`) : spend]);
    }
    const ctx = store.contextUse(s);
    if (ctx !== null) facts.push(['Context', `${ctx.toFixed(ctx < 10 ? 1 : 0)}% (max of nodes)`]);
    if (s.terminationReason) facts.push(['Ended', s.terminationReason]);
    v.facts.replaceChildren(...facts.map(([k, val]) => h('div', { class: 'fact' },
      h('dt', null, k), h('dd', { dataset: { fact: k.toLowerCase() } }, val))));
    v.lifecycle.replaceChildren(...s.history.map((x) => h('li', { dataset: { state: x.state } }, x.state)));
    const notice = s.notice ? s.notice.text
      : store.delayed(s) ? 'The launch is taking longer than this preset expects (still pending).' : '';
    v.notice.textContent = notice;
    v.notice.hidden = !notice;
    const active = ACTIVE.has(state);
    v.terminate.disabled = !active || !!s.optimistic;
    v.sendBtn.disabled = !active;
    v.text.disabled = !active;
    if (v.nodeCount !== s.nodeCount) this.buildChecks();
    this.renderSwarmExtras();
  }

  buildChecks() {
    const v = this.view;
    const s = v.swarm;
    v.nodeCount = s.nodeCount;
    if (s.nodeCount <= CHIPS_MAX) {
      v.checks.replaceChildren(...s.nodes.map((n) => h('label', { class: 'chip' },
        h('input', { type: 'checkbox', value: String(n.id), disabled: v.allRadio.checked, 'aria-label': `node ${n.id}` }),
        ` ${n.id}`)));
    } else {
      v.checks.replaceChildren(h('input', { type: 'text', class: 'node-list', placeholder: `e.g. 0,2-4 (0-${s.nodeCount - 1})`,
        'aria-label': 'Target nodes, e.g. 0,2-4', disabled: v.allRadio.checked, oninput: () => this.preview() }));
    }
  }
}

/** Keep the keyboard focus on the same swarm's button across a redraw of the list. */
function rememberListFocus(listEl) {
  const active = document.activeElement;
  const id = active && listEl.contains(active) ? active.dataset.swarm : null;
  return () => {
    if (!id) return;
    const btn = listEl.querySelector(`button[data-swarm="${CSS.escape(id)}"]`);
    if (btn) btn.focus();
  };
}

export { LIFECYCLE };

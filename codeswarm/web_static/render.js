// Drawing the store: the swarm list, the selected swarm (header, inject box, one pane per node)
// and the notices. Called at most once per animation frame; it only touches what the store
// marked as changed, which is what keeps thousands of deltas per second cheap.

import { createBlock, updateBlock } from './blocks.js';
import { LIFECYCLE } from './store.js';
import { h, fmtAge, fmtTokens, nowSec, shortId } from './util.js';

const ACTIVE = new Set(['pending', 'running', 'unknown']);

export function stateBadge(state, extra = '') {
  return h('span', { class: `badge state-${state} ${extra}`.trim() }, state);
}

export class Renderer {
  constructor({ store, listEl, mainEl, noticesEl, actions }) {
    this.store = store;
    this.listEl = listEl;
    this.mainEl = mainEl;
    this.noticesEl = noticesEl;
    this.actions = actions; // {select, inject, terminate, approve, dismiss}
    this.selected = null;
    this.view = null; // DOM handles of the selected swarm's view
    this.lastAgeTick = 0;
  }

  flush() {
    const store = this.store;
    const tick = Math.floor(Date.now() / 5000); // ages move on every 5 s
    if (tick !== this.lastAgeTick) {
      this.lastAgeTick = tick;
      store.listDirty = true;
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
    if (this.view && store.changedSwarms.has(this.view.swarm.id)) this.updateView();
    store.changedSwarms.clear();
  }

  // ------------------------------------------------------------------ swarm list

  renderList() {
    const store = this.store;
    const items = [];
    for (const op of store.pendingLaunches()) {
      items.push(h('li', { class: 'swarm-item launching', dataset: { request: op.requestId } },
        h('div', { class: 'row1' }, stateBadge('launching', 'optimistic'),
          h('span', { class: 'name' }, `${op.payload.nodes} × ${op.payload.provider}`)),
        h('div', { class: 'row2' }, 'waiting for the router…')));
    }
    const swarms = [...store.swarms.values()].sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
    for (const s of swarms) {
      const state = store.displayState(s);
      const tokens = store.tokenTotal(s);
      const age = s.createdAt ? fmtAge(nowSec() - s.createdAt) : '–';
      items.push(h('li', null, h('button', {
        type: 'button',
        class: `swarm-item${s.id === this.selected ? ' selected' : ''}${state === 'removed' ? ' removed' : ''}`,
        dataset: { swarm: s.id, state },
        'aria-current': s.id === this.selected ? 'true' : null,
        onclick: () => this.actions.select(s.id),
      },
      h('div', { class: 'row1' }, stateBadge(state, s.optimistic ? 'optimistic' : ''),
        store.delayed(s) ? h('span', { class: 'badge delayed', title: 'pending longer than the preset expects' }, 'delayed') : null,
        h('span', { class: 'name' }, s.jobId || shortId(s.id))),
      h('div', { class: 'row2' },
        h('span', null, s.providerId || s.provider || '?'),
        h('span', null, `${s.nodeCount} node${s.nodeCount === 1 ? '' : 's'}`),
        h('span', { title: 'age' }, age),
        h('span', { class: 'tokens', title: 'total tokens' }, `${fmtTokens(tokens)} tok`)))));
    }
    if (!items.length) items.push(h('li', { class: 'empty' }, 'No swarms yet.'));
    this.listEl.replaceChildren(...items);
  }

  renderNotices() {
    this.noticesEl.replaceChildren(...this.store.notices.map((n) => h('div', { class: `notice ${n.level}` },
      h('span', { class: 'text' }, n.text),
      h('button', { type: 'button', class: 'icon', 'aria-label': 'Dismiss', onclick: () => this.actions.dismiss(n.id) }, '×'))));
  }

  // ------------------------------------------------------------------ selected swarm

  show(swarmId) {
    this.selected = swarmId;
    this.store.listDirty = true;
    const s = swarmId ? this.store.swarms.get(swarmId) : null;
    if (!s) {
      this.view = null;
      return false;
    }
    this.buildView(s);
    return true;
  }

  buildView(s) {
    const v = { swarm: s, panes: [], nodeCount: -1 };
    v.badge = h('span');
    v.facts = h('dl', { class: 'facts' });
    v.lifecycle = h('ol', { class: 'lifecycle', 'aria-label': 'Lifecycle' });
    v.notice = h('p', { class: 'swarm-notice', role: 'alert' });
    v.terminate = h('button', { type: 'button', class: 'danger', onclick: () => this.actions.terminate(s) }, 'Terminate…');
    v.text = h('textarea', { id: 'inject-text', rows: 2, placeholder: 'Prompt to inject (Ctrl+Enter sends)',
      onkeydown: (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) v.form.requestSubmit(); } });
    v.allRadio = h('input', { type: 'radio', name: 'inject-target', value: 'all', checked: true,
      onchange: () => this.syncTargets() });
    v.someRadio = h('input', { type: 'radio', name: 'inject-target', value: 'some', onchange: () => this.syncTargets() });
    v.checks = h('div', { class: 'node-checks', role: 'group', 'aria-label': 'Target nodes' });
    v.sendBtn = h('button', { type: 'submit', class: 'primary' }, 'Inject');
    v.injectError = h('p', { class: 'form-error', role: 'alert' });
    v.form = h('form', { class: 'inject', 'aria-label': 'Inject a prompt', onsubmit: (e) => this.sendInject(e) },
      h('label', { for: 'inject-text', class: 'sr-only' }, 'Prompt'), v.text,
      h('div', { class: 'targets' },
        h('label', { class: 'check' }, v.allRadio, ' All nodes'),
        h('label', { class: 'check' }, v.someRadio, ' Some:'), v.checks, v.sendBtn),
      v.injectError);
    v.panesEl = h('div', { class: 'panes' });
    v.root = h('section', { class: 'detail', dataset: { swarm: s.id }, 'aria-label': 'Swarm' },
      h('header', { class: 'detail-head card' },
        h('div', { class: 'title-row' }, h('h2', null, 'Swarm ', h('code', null, s.jobId || shortId(s.id))), v.badge,
          h('span', { class: 'spacer' }), v.terminate),
        v.facts, v.lifecycle, v.notice),
      v.form, v.panesEl);
    this.view = v;
    this.mainEl.replaceChildren(v.root);
    for (const n of s.nodes) {
      n.headDirty = true;
      n.removed = [];
      for (const b of n.blocks) b.el = null;
      n.dirty = new Set(n.blocks);
    }
    this.updateView();
  }

  syncTargets() {
    const v = this.view;
    for (const c of v.checks.querySelectorAll('input')) c.disabled = v.allRadio.checked;
  }

  sendInject(e) {
    e.preventDefault();
    const v = this.view;
    const content = v.text.value;
    if (!content.trim()) {
      v.injectError.textContent = 'Write a prompt first.';
      v.text.focus();
      return;
    }
    let nodes = 'all';
    if (v.someRadio.checked) {
      nodes = [...v.checks.querySelectorAll('input:checked')].map((c) => Number(c.value));
      if (!nodes.length) {
        v.injectError.textContent = 'Pick at least one node.';
        return;
      }
    }
    v.injectError.textContent = '';
    const sent = this.actions.inject(v.swarm, nodes, content, (reason) => {
      if (this.view === v) {
        v.injectError.textContent = `Inject rejected: ${reason}`;
        if (!v.text.value) v.text.value = content; // give the prompt back
      }
    });
    if (sent) v.text.value = '';
  }

  updateView() {
    const v = this.view;
    const s = v.swarm;
    // The header only when something in it changed: rewriting it on every streaming frame cost
    // a style and layout pass of the whole view.
    if (s.headDirty || v.nodeCount !== s.nodeCount) {
      s.headDirty = false;
      this.updateHead();
    }
    this.updatePanes();
  }

  updateHead() {
    const v = this.view;
    const s = v.swarm;
    const store = this.store;
    const state = store.displayState(s);
    v.badge.replaceWith(v.badge = stateBadge(state, s.optimistic ? 'optimistic' : ''));
    v.root.dataset.state = state;
    const tokens = store.tokenTotal(s);
    const facts = [
      ['ID', s.id], ['Provider', `${s.providerId || '?'} (${s.provider || '?'})`],
      ['Agent', [s.runtime, s.model].filter(Boolean).join(' / ') || '–'], ['Nodes', String(s.nodeCount)],
      ['Age', s.createdAt ? fmtAge(nowSec() - s.createdAt) : '–'], ['Tokens', fmtTokens(tokens)],
    ];
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
  }

  buildChecks() {
    const v = this.view;
    v.nodeCount = v.swarm.nodeCount;
    v.checks.replaceChildren(...v.swarm.nodes.map((n) => h('label', { class: 'chip' },
      h('input', { type: 'checkbox', value: String(n.id), disabled: v.allRadio.checked, 'aria-label': `node ${n.id}` }),
      ` ${n.id}`)));
  }

  updatePanes() {
    const v = this.view;
    const s = v.swarm;
    const ctx = { approve: (block, decision) => this.actions.approve(s, block, decision) };
    while (v.panes.length < s.nodes.length) {
      const id = v.panes.length;
      const pane = {
        head: h('header', { class: 'pane-head' }),
        body: h('div', { class: 'pane-body', tabindex: '0', 'aria-label': `node ${id} stream` }),
      };
      pane.el = h('section', { class: 'pane', dataset: { node: String(id) }, 'aria-label': `Node ${id}` }, pane.head, pane.body);
      // Follow the stream while the reader is at the bottom. Measured on scroll only: reading
      // scrollHeight per pane per frame forced a layout each time and halved the frame rate.
      pane.pinned = true;
      pane.body.addEventListener('scroll', () => {
        const b = pane.body;
        pane.pinned = b.scrollHeight - b.scrollTop - b.clientHeight < 48;
      }, { passive: true });
      v.panes.push(pane);
      v.panesEl.append(pane.el);
    }
    const follow = [];
    for (const node of s.nodes) {
      const pane = v.panes[node.id];
      if (node.headDirty) {
        node.headDirty = false;
        this.renderPaneHead(pane, node);
      }
      if (!node.dirty.size && !node.removed.length) continue;
      const body = pane.body;
      if (pane.pinned) follow.push(body);
      for (const b of node.removed) if (b.el) b.el.remove();
      node.removed = [];
      for (const b of node.dirty) {
        if (b.el) updateBlock(b, ctx);
        else body.append(createBlock(b, ctx));
      }
      node.dirty.clear();
    }
    // All writes first, then the scrolls: one layout per frame, not one per pane.
    for (const body of follow) body.scrollTop = body.scrollHeight;
  }

  renderPaneHead(pane, node) {
    const u = node.usage;
    const parts = [h('h3', null, `Node ${node.id}`)];
    if (node.worker) parts.push(h('span', { class: `worker worker-${node.worker}` }, node.worker));
    parts.push(h('span', { class: `busy${node.busy ? ' on' : ''}`, title: node.busy ? 'working' : 'idle' }, node.busy ? 'working' : 'idle'));
    parts.push(h('span', { class: 'spacer' }));
    if (u) {
      parts.push(h('span', { class: 'tokens', title: `input ${u.input_tokens ?? '–'} (cached ${u.cached_input_tokens ?? '–'}), output ${u.output_tokens ?? '–'} (reasoning ${u.reasoning_output_tokens ?? '–'})` },
        `${fmtTokens(u.total_tokens)} tok`));
      const used = u.last_total_tokens ?? u.last_input_tokens;
      const win = u.model_context_window;
      if (Number.isFinite(used) && Number.isFinite(win) && win > 0) {
        const pct = Math.min(100, (100 * used) / win);
        parts.push(h('span', { class: 'ctx', title: `context window: ${used} of ${win} tokens` },
          h('meter', { min: '0', max: String(win), value: String(used), 'aria-label': 'context window used' }),
          ` ${pct.toFixed(pct < 10 ? 1 : 0)}%`));
      }
    }
    pane.head.replaceChildren(...parts);
  }
}

export { LIFECYCLE };

// The transcripts of the nodes the swarm view shows: every node of a small swarm, or the one
// node opened from the overview. Only shown nodes have DOM; a node that stops being shown drops
// its elements and is drawn afresh from the model when it comes back.
//
// A pane follows its stream while the reader is at the bottom; once they scroll up it stays put
// and a "New output below" button appears instead (one click, or Enter, goes back down).

import { createBlock, updateBlock } from './blocks.js';
import { h, fmtCost, fmtTokens } from './util.js';

export class Panes {
  constructor({ store, swarm, el, approve }) {
    this.store = store;
    this.swarm = swarm;
    this.el = el;
    this.ctx = { approve };
    this.panes = new Map(); // node id -> pane
    this.shown = [];
  }

  /** Show exactly these nodes (in this order). */
  setShown(ids) {
    const same = ids.length === this.shown.length && ids.every((id, i) => id === this.shown[i]);
    if (same) return;
    const keep = new Set(ids);
    for (const [id, pane] of this.panes) {
      if (keep.has(id)) continue;
      pane.el.remove();
      this.panes.delete(id);
      forget(this.swarm.nodes[id]);
    }
    this.shown = [...ids];
    const els = [];
    for (const id of ids) {
      let pane = this.panes.get(id);
      if (!pane) {
        pane = this.makePane(id);
        this.panes.set(id, pane);
        const node = this.swarm.nodes[id];
        if (node) {
          forget(node);
          node.dirty = new Set(node.blocks);
          node.headDirty = true;
        }
      }
      els.push(pane.el);
    }
    this.el.replaceChildren(...els);
  }

  makePane(id) {
    const pane = {
      head: h('header', { class: 'pane-head' }),
      body: h('div', { class: 'pane-body', tabindex: '0', 'aria-label': `node ${id} stream` }),
      pinned: true,
    };
    pane.more = h('button', {
      type: 'button', class: 'more-below', hidden: true,
      onclick: () => {
        pane.pinned = true;
        pane.more.hidden = true;
        pane.body.scrollTop = pane.body.scrollHeight;
        pane.body.focus();
      },
    }, 'New output below ↓');
    pane.el = h('section', { class: 'pane', dataset: { node: String(id) }, 'aria-label': `Node ${id}` },
      pane.head, h('div', { class: 'pane-wrap' }, pane.body, pane.more));
    // Measured on scroll only: reading scrollHeight per pane per frame forced a layout each time.
    pane.body.addEventListener('scroll', () => {
      const b = pane.body;
      if (performance.now() < pane.heldUntil) return; // the reader's own scroll is still moving
      pane.pinned = b.scrollHeight - b.scrollTop - b.clientHeight < 48;
      if (pane.pinned) pane.more.hidden = true;
    }, { passive: true });
    // The reader scrolling up lets go of the stream at once: a smooth scroll's first scroll event
    // comes a frame later, and following the stream in that frame would cancel the scroll.
    const release = () => {
      pane.pinned = false;
      pane.heldUntil = performance.now() + 500;
    };
    pane.heldUntil = 0;
    pane.body.addEventListener('wheel', (e) => { if (e.deltaY < 0) release(); }, { passive: true });
    pane.body.addEventListener('touchmove', release, { passive: true });
    pane.body.addEventListener('keydown', (e) => { if (['ArrowUp', 'PageUp', 'Home'].includes(e.key)) release(); });
    return pane;
  }

  /** Draw what changed in the shown nodes; forget the drawing marks of the others. */
  update() {
    const s = this.swarm;
    const follow = [];
    for (const node of s.nodes) {
      const pane = this.panes.get(node.id);
      if (!pane) {
        if (node.dirty.size) node.dirty.clear();
        continue;
      }
      if (node.unseen) {
        node.unseen = false; // drawn where the reader looks: seen
        node.rev += 1;
        s.factsRev += 1;
      }
      if (node.headDirty) {
        node.headDirty = false;
        this.renderHead(pane, node);
      }
      if (!node.dirty.size && !node.removed.length) continue;
      if (pane.pinned) follow.push(pane.body);
      else pane.more.hidden = false;
      for (const b of node.removed) if (b.el) b.el.remove();
      node.removed = [];
      for (const b of node.dirty) {
        if (b.el) updateBlock(b, this.ctx);
        else pane.body.append(createBlock(b, this.ctx));
      }
      node.dirty.clear();
    }
    // All writes first, then the scrolls: one layout per frame, not one per pane.
    for (const body of follow) body.scrollTop = body.scrollHeight;
  }

  /** Scroll a shown node's pane to an approval block and focus its first button. */
  focusApproval(nodeId, block) {
    const pane = this.panes.get(nodeId);
    if (!pane || !block.el) return false;
    block.el.scrollIntoView({ block: 'center' });
    pane.pinned = false;
    const btn = block.el.querySelector('.actions button:not(:disabled)');
    (btn || pane.body).focus();
    return true;
  }

  renderHead(pane, node) {
    const u = node.usage;
    const parts = [h('h3', null, `Node ${node.id}`)];
    if (node.worker) parts.push(h('span', { class: `worker worker-${node.worker}` }, node.worker));
    parts.push(h('span', { class: `busy${node.busy ? ' on' : ''}`, title: node.busy ? 'working' : 'idle' }, node.busy ? 'working' : 'idle'));
    if (node.approvals) parts.push(h('span', { class: 'badge state-approval' }, `${node.approvals} approval${node.approvals === 1 ? '' : 's'}`));
    if (node.failed) parts.push(h('span', { class: 'failed', title: String(node.failed) }, 'failed'));
    parts.push(h('span', { class: 'spacer' }));
    if (u) {
      parts.push(h('span', { class: 'tokens', title: `input ${u.input_tokens ?? '–'} (cached ${u.cached_input_tokens ?? '–'}), output ${u.output_tokens ?? '–'} (reasoning ${u.reasoning_output_tokens ?? '–'})` },
        `${fmtTokens(u.total_tokens)} tok`));
      if (Number.isFinite(node.spendUsd)) parts.push(h('span', { class: 'cost', title: 'estimated spend of this node' }, fmtCost(node.spendUsd)));
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

  destroy() {
    for (const id of this.panes.keys()) forget(this.swarm.nodes[id]);
    this.panes.clear();
  }
}

/** Drop a node's drawing (its blocks' elements); the model keeps everything. */
function forget(node) {
  if (!node) return;
  for (const b of node.blocks) {
    b.el = null;
    b.tail = null;
  }
  node.removed = [];
}

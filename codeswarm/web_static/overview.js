// The swarm overview: one small cell per node (state colour, busy, last activity, tokens/spend,
// pending approvals, unseen output), filters and a search over node output. Virtualized: only the
// rows in (or near) the viewport have DOM, so 1,000 nodes cost ~100 buttons, and a frame only
// rewrites the visible cells whose node changed.
//
// Keyboard: the cells are buttons with one tab stop (roving tabindex); arrows, Home/End and
// PageUp/PageDown move, Enter/Space opens the node's transcript.

import { h, fmtAge, fmtCost, fmtTokens } from './util.js';

const CELL_W = 124;
const CELL_H = 56;
const OVERSCAN_ROWS = 2;
const RECOUNT_MS = 250; // filter counts and search matches are recomputed at most this often

export const FILTERS = [
  { key: 'all', label: 'All', test: () => true },
  { key: 'busy', label: 'Busy', test: (n) => n.busy },
  { key: 'idle', label: 'Idle', test: (n) => !n.busy && n.worker === 'running' },
  { key: 'failed', label: 'Failed', test: (n, active) => !!n.failed || (active && n.worker === 'exited') },
  { key: 'approval', label: 'Waiting for approval', test: (n) => n.approvals > 0 },
  { key: 'stale', label: 'Stale', test: (n) => n.worker === 'stale' },
  { key: 'unseen', label: 'Unseen', test: (n) => n.unseen },
];

/** The colour class of a node: the most urgent thing about it. */
export function nodeState(n, active) {
  if (n.approvals > 0) return 'approval';
  if (n.failed || (active && n.worker === 'exited')) return 'failed';
  if (n.worker === 'stale') return 'stale';
  if (n.busy) return 'busy';
  if (n.worker === 'running') return 'idle';
  if (n.worker === 'exited') return 'exited';
  return 'waiting';
}

const STATE_WORDS = {
  approval: 'waiting for approval', failed: 'failed', stale: 'stale', busy: 'busy', idle: 'idle',
  exited: 'exited', waiting: 'not started',
};

export class Overview {
  /** @param {{store: object, swarm: object, onOpen: (nodeId: number) => void}} o */
  constructor({ store, swarm, onOpen }) {
    this.store = store;
    this.swarm = swarm;
    this.onOpen = onOpen;
    this.filter = 'all';
    this.query = '';
    this.list = []; // node ids passing the filter and the search, in order
    this.counts = {};
    this.listRev = -1; // swarm.factsRev the list was computed at
    this.listAt = 0;
    this.listKey = '';
    this.active = 0; // index into list of the roving tab stop
    this.openNode = null;
    this.cols = 1;
    this.viewH = 320;
    this.scrollTop = 0;
    this.cells = []; // pool: {btn, id, idEl, metaEl, flagEl, key}
    this.first = -1;
    this.renderedKey = '';

    this.buttons = new Map();
    const filters = FILTERS.map((f) => {
      const count = h('span', { class: 'count' });
      const b = h('button', {
        type: 'button', class: 'chip-btn', dataset: { filter: f.key }, 'aria-pressed': f.key === 'all' ? 'true' : 'false',
        onclick: () => this.setFilter(f.key),
      }, f.label, ' ', count);
      this.buttons.set(f.key, { b, count });
      return b;
    });
    this.search = h('input', {
      type: 'search', class: 'ov-search', placeholder: 'Search node output', 'aria-label': 'Search node output',
      oninput: () => { this.query = this.search.value.trim().toLowerCase(); this.listRev = -1; this.update(); },
    });
    this.summary = h('span', { class: 'ov-summary', role: 'status', 'aria-live': 'polite' });
    this.win = h('div', { class: 'ov-win', role: 'group', 'aria-label': 'Nodes', onkeydown: (e) => this.key(e) });
    this.sizer = h('div', { class: 'ov-sizer' }, this.win);
    this.scroller = h('div', { class: 'ov-scroll' }, this.sizer);
    this.scroller.addEventListener('scroll', () => { this.scrollTop = this.scroller.scrollTop; this.update(); }, { passive: true });
    this.el = h('section', { class: 'overview card', 'aria-label': 'Overview of the nodes' },
      h('div', { class: 'ov-bar' }, h('div', { class: 'ov-filters', role: 'group', 'aria-label': 'Filter nodes' }, filters),
        this.search, this.summary),
      this.scroller);
    this.resize = new ResizeObserver(() => {
      const w = this.scroller.clientWidth;
      this.cols = Math.max(1, Math.floor((w - 4) / CELL_W));
      this.viewH = this.scroller.clientHeight || 320;
      this.renderedKey = '';
      this.update();
    });
    this.resize.observe(this.scroller);
  }

  destroy() {
    this.resize.disconnect();
  }

  setFilter(key) {
    this.filter = key;
    for (const [k, { b }] of this.buttons) b.setAttribute('aria-pressed', k === key ? 'true' : 'false');
    this.listRev = -1;
    this.active = 0;
    this.scroller.scrollTop = 0;
    this.scrollTop = 0;
    this.update();
  }

  setOpen(nodeId) {
    this.openNode = nodeId;
    this.renderedKey = '';
    this.update();
  }

  /** Bring the overview up to date; cheap when nothing it shows changed. */
  update() {
    const s = this.swarm;
    const now = performance.now();
    const stale = this.listRev !== s.factsRev;
    if (this.listRev === -1 || (stale && now - this.listAt >= RECOUNT_MS)) this.recount();
    else if (stale && !this.timer) this.timer = setTimeout(() => { this.timer = null; this.update(); }, RECOUNT_MS);
    this.draw();
  }

  recount() {
    const s = this.swarm;
    const active = ['pending', 'running'].includes(s.state);
    const f = FILTERS.find((x) => x.key === this.filter) || FILTERS[0];
    const counts = Object.fromEntries(FILTERS.map((x) => [x.key, 0]));
    const list = [];
    const q = this.query;
    for (const n of s.nodes) {
      for (const x of FILTERS) if (x.test(n, active)) counts[x.key] += 1;
      if (f.test(n, active) && (!q || n.search.includes(q) || String(n.id) === q)) list.push(n.id);
    }
    this.list = list;
    this.counts = counts;
    this.listRev = s.factsRev;
    this.listAt = performance.now();
    for (const [k, { count }] of this.buttons) count.textContent = String(counts[k]);
    const what = `${list.length} of ${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}`;
    this.summary.textContent = q ? `${what} match “${q}”` : `${what}`;
    if (!this.marked && s.nodes.length && list.length === s.nodes.length) {
      this.marked = true;
      performance.mark('codeswarm-overview-complete'); // for the benchmark: every node listed
    }
    if (this.active >= list.length) this.active = Math.max(0, list.length - 1);
    this.renderedKey = '';
  }

  draw() {
    const rows = Math.ceil(this.list.length / this.cols);
    const total = `${rows * CELL_H}px`;
    if (this.sizer.style.height !== total) this.sizer.style.height = total;
    // As tall as its rows, up to ~5 rows (less on a phone): the transcripts stay in view below.
    const maxH = Math.min(5.5 * CELL_H, Math.max(2 * CELL_H, window.innerHeight * 0.4));
    const height = `${Math.max(CELL_H, Math.min(maxH, rows * CELL_H + 6))}px`;
    if (this.scroller.style.height !== height) this.scroller.style.height = height;
    const first = Math.max(0, Math.floor(this.scrollTop / CELL_H) - OVERSCAN_ROWS);
    const last = Math.min(rows - 1, Math.ceil((this.scrollTop + this.viewH) / CELL_H) + OVERSCAN_ROWS);
    const start = first * this.cols;
    const end = Math.min(this.list.length, (last + 1) * this.cols);
    const key = `${start}:${end}:${this.cols}:${this.listRev}:${this.openNode}:${this.active}`;
    const count = Math.max(0, end - start);
    if (key !== this.renderedKey) {
      this.renderedKey = key;
      this.win.style.transform = `translateY(${first * CELL_H}px)`;
      this.win.style.gridTemplateColumns = `repeat(${this.cols}, ${CELL_W - 6}px)`;
      while (this.cells.length < count) this.cells.push(this.makeCell());
      while (this.win.childElementCount > count) this.win.lastElementChild.remove();
      for (let i = 0; i < count; i++) if (!this.cells[i].btn.isConnected) this.win.append(this.cells[i].btn);
    }
    const tick = Math.floor(Date.now() / 5000); // ages move on every 5 s
    const active = ['pending', 'running'].includes(this.swarm.state);
    for (let i = 0; i < count; i++) this.fill(this.cells[i], start + i, tick, active);
  }

  makeCell() {
    const c = { idEl: h('span', { class: 'id' }), metaEl: h('span', { class: 'meta' }), flagEl: h('span', { class: 'flag' }), key: '' };
    c.btn = h('button', { type: 'button', class: 'cell', onclick: () => this.open(c.index), onfocus: () => { this.active = c.index; } },
      c.idEl, c.flagEl, c.metaEl);
    return c;
  }

  fill(c, index, tick, active) {
    const id = this.list[index];
    const n = this.swarm.nodes[id];
    if (!n) return;
    const key = `${id}:${n.rev}:${tick}:${index === this.active}:${id === this.openNode}`;
    c.index = index;
    if (c.key === key) return;
    c.key = key;
    // Streaming changes a node's rev on every delta, but rarely what its cell shows: compute the
    // cell's strings and touch the DOM only where one differs (no style work for unchanged cells).
    const st = nodeState(n, active);
    const u = n.usage;
    const cost = Number.isFinite(n.spendUsd) ? ` ${fmtCost(n.spendUsd)}` : '';
    const age = n.lastTs ? fmtAge(this.store.now() - n.lastTs) : '–';
    const tokens = u ? `${u.total_tokens ?? '–'} tokens${cost ? `, ${cost.trim()}` : ''}` : 'no usage yet';
    const v = {
      cls: `cell st-${st}${n.unseen ? ' unseen' : ''}${id === this.openNode ? ' open' : ''}`,
      node: String(id),
      tab: index === this.active ? 0 : -1,
      current: id === this.openNode,
      flag: n.approvals > 0 ? `⚠ ${n.approvals}` : n.busy ? '●' : '',
      meta: `${u ? fmtTokens(u.total_tokens) : '–'} tok${cost} · ${age}`,
      label: `Node ${id}: ${STATE_WORDS[st]}${n.approvals ? `, ${n.approvals} pending approval` : ''}` +
        `${n.unseen ? ', new output' : ''}, ${tokens}, last activity ${age}${n.failed ? `, ${n.failed}` : ''}`,
      title: n.failed ? String(n.failed) : STATE_WORDS[st],
    };
    const old = c.v || {};
    const b = c.btn;
    if (old.cls !== v.cls) b.className = v.cls;
    if (old.node !== v.node) {
      b.dataset.node = v.node;
      c.idEl.textContent = v.node;
    }
    if (old.tab !== v.tab) b.tabIndex = v.tab;
    if (old.current !== v.current) {
      if (v.current) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
    if (old.flag !== v.flag) c.flagEl.textContent = v.flag;
    if (old.meta !== v.meta) c.metaEl.textContent = v.meta;
    if (old.label !== v.label) b.setAttribute('aria-label', v.label);
    if (old.title !== v.title) b.title = v.title;
    c.v = v;
  }

  open(index) {
    const id = this.list[index];
    if (id === undefined) return;
    this.active = index;
    this.onOpen(id);
  }

  key(e) {
    if (!this.list.length) return;
    const rowsInView = Math.max(1, Math.floor(this.viewH / CELL_H));
    const moves = {
      ArrowRight: 1, ArrowLeft: -1, ArrowDown: this.cols, ArrowUp: -this.cols,
      PageDown: this.cols * rowsInView, PageUp: -this.cols * rowsInView,
    };
    let next;
    if (e.key in moves) next = this.active + moves[e.key];
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = this.list.length - 1;
    else return;
    e.preventDefault();
    this.focusIndex(Math.max(0, Math.min(this.list.length - 1, next)));
  }

  /** Move the tab stop to list[index], scroll it into view and focus its cell. */
  focusIndex(index) {
    this.active = index;
    const row = Math.floor(index / this.cols);
    const top = row * CELL_H;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + CELL_H > this.scroller.scrollTop + this.viewH) this.scroller.scrollTop = top + CELL_H - this.viewH;
    this.scrollTop = this.scroller.scrollTop;
    this.renderedKey = '';
    this.draw();
    const cell = this.cells.find((c) => c.index === index && c.btn.isConnected);
    if (cell) cell.btn.focus();
  }
}

// The page's model: swarms, their nodes and each node's stream of blocks, plus the optimistic
// operations (launch, inject, terminate, approve) waiting for the router's answer.
//
// Events change the model and mark what changed; render.js draws the marks once per frame.
// Lifecycle state only ever comes from the router (events or swarm_list); optimistic state is
// kept apart (swarm.optimistic, op records) so a rejection can drop it without guessing.

import { OPERATIONS } from './ops.js';
import { applyNodeEvent, closeOpen } from './streams.js';

export const LIFECYCLE = ['pending', 'running', 'terminating', 'terminated', 'removed'];
const MAX_BLOCKS_PER_NODE = 400;
const SEARCH_CHARS = 16384; // per node: the newest output the overview's search looks through

export class Store {
  constructor() {
    this.swarms = new Map(); // swarm_id -> swarm
    this.providers = [];
    this.ops = new Map(); // request_id -> optimistic operation
    this.notices = []; // {id, level, text, at}
    this.listDirty = true;
    this.providersDirty = true;
    this.noticesDirty = true;
    this.changedSwarms = new Set(); // swarm ids whose header/panes need a look
    this.nextBlockId = 1;
    this.nextNoticeId = 1;
    this.stats = { applied: 0, errors: 0, newestTs: 0 };
    this.onLaunched = null; // (swarm, op) => void, set by the app to follow a launch
    this.approvals = new Map(); // approval_id -> {swarm, node, block}: every open approval
    this.approvalsDirty = true;
    this.queue = []; // queue items of every swarm (queue_list / queue_updated snapshots)
    this.queueDirty = true;
    this.viewed = null; // {swarmId, nodes: Set} what the renderer shows: activity there is seen
    // Router clock minus browser clock, in seconds, estimated from live events (the smallest
    // receipt-minus-emission difference); ages are computed on the router's clock.
    this.skew = null;
  }

  /** Epoch seconds on the router's clock (the browser's, corrected by the observed skew). */
  now() {
    return Date.now() / 1000 + (this.skew ?? 0);
  }

  // ------------------------------------------------------------------ model helpers

  swarm(id, create = true) {
    let s = this.swarms.get(id);
    if (!s && create) {
      s = {
        id, jobId: null, nodeCount: 0, provider: null, providerId: null, runtime: null, model: null,
        createdAt: null, terminatedAt: null, terminationReason: null, systemPrompt: null,
        state: null, stateSeq: -1, history: [], optimistic: null, notice: null, nodes: [],
        alias: null, autoRoute: false, archives: [], unseen: false, factsRev: 0, lastTs: null,
        spendUsd: null, spendSeq: -1, budgetUsd: null, budgetState: null, costUnknown: false,
      };
      this.swarms.set(id, s);
      this.listDirty = true;
    }
    return s;
  }

  node(swarm, nodeId) {
    if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > 100000) return null;
    while (swarm.nodes.length <= nodeId) {
      swarm.nodes.push({
        id: swarm.nodes.length, worker: null, busy: false, usage: null,
        blocks: [], dirty: new Set(), removed: [], headDirty: true, open: null,
        lastTs: null, failed: null, approvals: 0, unseen: false, search: '', rev: 0, spendUsd: null,
      });
    }
    if (swarm.nodeCount < swarm.nodes.length) swarm.nodeCount = swarm.nodes.length;
    return swarm.nodes[nodeId];
  }

  displayState(swarm) {
    return swarm.optimistic || swarm.state || 'unknown';
  }

  setState(swarm, state, seq, ts) {
    if (!state || seq < swarm.stateSeq) return;
    swarm.stateSeq = seq;
    if (swarm.state !== state) {
      swarm.state = state;
      swarm.history.push({ state, at: ts ?? this.now() });
      this.touch(swarm);
    }
    if (swarm.optimistic === 'terminating' && (state === 'terminating' || state === 'terminated' || state === 'removed')) {
      swarm.optimistic = null;
    }
  }

  touch(swarm) {
    swarm.headDirty = true;
    this.changedSwarms.add(swarm.id);
    this.listDirty = true;
  }

  addBlock(swarm, node, block) {
    block.id = this.nextBlockId++;
    block.nodeId = node.id;
    node.blocks.push(block);
    node.dirty.add(block);
    if (node.blocks.length > MAX_BLOCKS_PER_NODE) {
      const gone = node.blocks.shift();
      node.dirty.delete(gone);
      if (gone.el) node.removed.push(gone); // only drawn blocks have something to remove
    }
    this.changedSwarms.add(swarm.id);
    return block;
  }

  changed(swarm, node, block) {
    node.dirty.add(block);
    this.changedSwarms.add(swarm.id);
  }

  /** A node fact the overview shows changed (busy, worker, usage, failure, approvals). */
  fact(swarm, node) {
    node.headDirty = true;
    node.rev += 1;
    swarm.factsRev += 1;
    this.changedSwarms.add(swarm.id);
  }

  isViewed(swarm, node) {
    const v = this.viewed;
    return !!v && v.swarmId === swarm.id && (!node || v.nodes.has(node.id));
  }

  /** Output or a lifecycle step on a node: last activity, unseen markers, searchable text. */
  activity(swarm, node, ts, text) {
    if (ts) {
      node.lastTs = ts;
      swarm.lastTs = ts;
    }
    if (text) {
      node.search += text.toLowerCase();
      if (node.search.length > 2 * SEARCH_CHARS) node.search = node.search.slice(-SEARCH_CHARS);
    }
    node.rev += 1;
    swarm.factsRev += 1;
    if (!this.live) return; // a replay is history, not news: only live output is "unseen"
    if (!this.isViewed(swarm, node)) node.unseen = true;
    if (!swarm.unseen && !this.isViewed(swarm)) {
      swarm.unseen = true;
      this.listDirty = true;
    }
  }

  approvalOpen(swarm, node, block) {
    if (!this.approvals.has(block.approvalId)) {
      this.approvals.set(block.approvalId, { swarm, node, block });
      node.approvals += 1;
      this.fact(swarm, node);
    }
    this.approvalsDirty = true;
  }

  approvalClosed(approvalId) {
    const a = this.approvals.get(approvalId);
    if (!a) return;
    this.approvals.delete(approvalId);
    a.node.approvals = Math.max(0, a.node.approvals - 1);
    this.fact(a.swarm, a.node);
    this.approvalsDirty = true;
  }

  /** Open approvals, oldest first, optionally of one swarm. */
  openApprovals(swarmId = null) {
    const out = [];
    for (const a of this.approvals.values()) if (!swarmId || a.swarm.id === swarmId) out.push(a);
    return out.sort((x, y) => (x.block.at ?? 0) - (y.block.at ?? 0));
  }

  /** The active swarm with this alias, if any (aliases are unique among active swarms). */
  byAlias(alias) {
    for (const s of this.swarms.values()) {
      if (s.alias === alias && ['pending', 'running'].includes(s.state)) return s;
    }
    return null;
  }

  swarmName(s) {
    return s.alias || s.jobId || (s.id || '').slice(0, 8);
  }

  notify(level, text) {
    this.notices.push({ id: this.nextNoticeId++, level, text, at: Date.now() });
    if (this.notices.length > 6) this.notices.shift();
    this.noticesDirty = true;
  }

  dismiss(id) {
    this.notices = this.notices.filter((n) => n.id !== id);
    this.noticesDirty = true;
  }

  /** Forget all router-derived history (the router's log was reset). Keeps pending ops. */
  reset() {
    this.swarms.clear();
    this.approvals.clear();
    this.approvalsDirty = true;
    this.queue = [];
    this.queueDirty = true;
    this.listDirty = true;
    for (const op of this.ops.values()) if (op.kind !== 'launch') this.ops.delete(op.requestId);
  }

  /** Pending longer than its preset's launch_soft_timeout_seconds: the UI calls it delayed. */
  delayed(swarm) {
    if (swarm.state !== 'pending' || !swarm.createdAt) return false;
    const p = this.providers.find((x) => x.id === swarm.providerId);
    const soft = p && p.launch_soft_timeout_seconds;
    return Number.isFinite(soft) && this.now() - swarm.createdAt > soft;
  }

  /** Highest context-window use of any node, in percent, or null when nobody reported one. */
  contextUse(swarm) {
    let best = null;
    for (const n of swarm.nodes) {
      const u = n.usage;
      const used = u && (u.last_total_tokens ?? u.last_input_tokens);
      if (Number.isFinite(used) && u.model_context_window > 0) best = Math.max(best ?? 0, (100 * used) / u.model_context_window);
    }
    return best;
  }

  tokenTotal(swarm) {
    let total = null;
    for (const n of swarm.nodes) {
      if (n.usage && Number.isFinite(n.usage.total_tokens)) total = (total ?? 0) + n.usage.total_tokens;
    }
    return total;
  }

  /**
   * The swarm's estimated spend in USD, or null when nothing was priced: the router's figure
   * (spend_usd of swarm_list / swarm_status) unless node usage since then says more.
   */
  costTotal(swarm) {
    let total = null;
    for (const n of swarm.nodes) if (Number.isFinite(n.spendUsd)) total = (total ?? 0) + n.spendUsd;
    if (Number.isFinite(swarm.spendUsd) && (total === null || swarm.spendUsd > total)) return swarm.spendUsd;
    return total;
  }

  // ------------------------------------------------------------------ events

  /** Apply one event; `live` is true for events that arrived after the resume (clock skew). */
  apply(env, live = false) {
    try {
      this._apply(env, live);
      this.stats.applied += 1;
    } catch (err) {
      this.stats.errors += 1;
      this.stats.lastError = String(err && err.stack ? err.stack : err);
    }
  }

  _apply(env, live) {
    const d = env.data || {};
    const seq = typeof env.seq === 'number' ? env.seq : 0;
    let ts = null;
    if (env.timestamp) {
      this.stats.newestTs = env.timestamp;
      const ms = Date.parse(env.timestamp);
      if (Number.isFinite(ms)) {
        ts = ms / 1000;
        if (live && !env.directed) {
          const skew = ts - Date.now() / 1000;
          if (this.skew === null || skew > this.skew) this.skew = skew;
        }
      }
    }
    this.ts = ts;
    this.live = live;
    switch (env.event) {
      case 'providers_list':
        this.providers = Array.isArray(d.providers) ? d.providers : [];
        this.providersDirty = true;
        return;
      case 'swarm_list':
        this._swarmList(d.swarms || {}, seq);
        return;
      case 'swarm_launched': {
        const s = this.swarm(d.swarm_id);
        this._fill(s, d);
        if (s.createdAt === null) s.createdAt = ts ?? this.now();
        this.setState(s, d.state || 'pending', seq, ts);
        const op = this.ops.get(d.request_id);
        if (op && op.kind === 'launch') {
          this.ops.delete(d.request_id);
          if (this.onLaunched) this.onLaunched(s, op);
        }
        return;
      }
      case 'swarm_status': {
        const s = this.swarm(d.swarm_id);
        this._fill(s, d);
        if (!env.directed) this.setState(s, d.state || d.status, seq, ts);
        this._finishOp(d.request_id, 'terminate');
        return;
      }
      case 'swarm_terminated': {
        const s = this.swarm(d.swarm_id);
        if (d.job_id) s.jobId = d.job_id;
        if (d.reason) s.terminationReason = d.reason;
        s.terminatedAt = s.terminatedAt ?? ts ?? this.now();
        this.setState(s, 'terminated', seq, ts);
        this._finishOp(d.request_id, 'terminate');
        for (const n of s.nodes) closeOpen(n);
        return;
      }
      case 'swarm_removed': {
        const s = this.swarm(d.swarm_id, false);
        if (s) this.setState(s, 'removed', seq, ts);
        if (s) this._dropApprovals(s);
        return;
      }
      case 'command_rejected':
        this._rejected(d);
        return;
      case 'workspace_archive_ready': {
        const s = this.swarm(d.swarm_id);
        const name = d.archive_name || String(d.archive_path || '').split('/').pop();
        if (!s.archives.some((a) => a.name === name)) {
          s.archives.push({ nodeId: d.node_id, name, path: d.archive_path, size: d.size_bytes });
          s.archives.sort((a, b) => (a.nodeId ?? 0) - (b.nodeId ?? 0));
        }
        this.touch(s);
        return;
      }
      case 'budget_updated':
      case 'budget_warning':
      case 'budget_exceeded': {
        if (typeof d.swarm_id !== 'string' || (d.scope && d.scope !== 'swarm')) return;
        const s = this.swarm(d.swarm_id);
        this._fill(s, d);
        if (env.event !== 'budget_updated') {
          s.budgetState = env.event === 'budget_exceeded' ? 'exceeded' : 'warning';
          this.notify(env.event === 'budget_exceeded' ? 'error' : 'info',
            `${this.swarmName(s)}: ${Math.round(d.percent ?? 0)}% of its $${d.budget_usd} budget spent` +
            `${env.event === 'budget_exceeded' ? ' — budget exceeded, work stopped' : ''}`);
        }
        return;
      }
      case 'inter_swarm_enqueued':
      case 'inter_swarm_dropped':
      case 'queue_cancelled':
        if (d.request_id && this.ops.has(d.request_id) && this.ops.get(d.request_id).kind !== 'inject') this.ops.delete(d.request_id);
        return;
      case 'inter_swarm_blocked': {
        // PROTOCOL.md 5.6: its inbox line could not be written; the item is back at the head of its
        // queue (queue_updated follows with it, `blocked` set) until the node's next idle transition.
        const item = this.queue.find((i) => i.queue_id === d.queue_id);
        if (item) item.blocked = { node_id: d.node_id, reason: d.reason };
        this.queueDirty = true;
        if (live) {
          const target = this.swarms.get(d.target_swarm_id);
          this.notify('error', `Queued prompt for ${target ? this.swarmName(target) : String(d.target_swarm_id).slice(0, 8)} ` +
            `blocked on node ${d.node_id} (${d.reason}): it waits at the head of the queue`);
        }
        return;
      }
      case 'queue_list':
      case 'queue_updated':
        this.queue = Array.isArray(d.items) ? d.items : [];
        this.queueDirty = true;
        return;
      case 'approvals_list':
        this._approvalsList(d);
        return;
      case 'workspace_archive_failed':
        this.notify('error', `Workspace archive failed: ${d.reason}`);
        return;
      default:
        break;
    }
    if (typeof d.swarm_id !== 'string') return; // queue events, pong, unknown events
    const s = this.swarm(d.swarm_id);
    const node = this.node(s, d.node_id);
    if (!node) return;
    applyNodeEvent(this, env.event, d, s, node, ts);
  }

  /** The router's list of open approvals (approvals_list): the truth after a replay window. */
  _approvalsList(d) {
    const list = Array.isArray(d.approvals) ? d.approvals : [];
    const open = new Set();
    for (const a of list) {
      if (!a || typeof a.swarm_id !== 'string' || typeof a.approval_id !== 'string') continue;
      open.add(a.approval_id);
      if (this.approvals.has(a.approval_id)) continue; // known from the events already
      const s = this.swarm(a.swarm_id);
      const node = this.node(s, a.node_id);
      if (node) applyNodeEvent(this, 'exec_approval_required', a, s, node, epoch(a.created_at));
    }
    for (const [id, a] of [...this.approvals]) {
      if (!open.has(id) && (!d.swarm_id || a.swarm.id === d.swarm_id)) {
        a.block.resolved = a.block.resolved || { approved: false, decision: null, source: 'gone' };
        this.changed(a.swarm, a.node, a.block);
        this.approvalClosed(id);
      }
    }
  }

  _dropApprovals(s) {
    for (const [id, a] of [...this.approvals]) if (a.swarm === s) this.approvalClosed(id);
  }

  _fill(s, d) {
    if (d.job_id) s.jobId = d.job_id;
    if (Number.isInteger(d.node_count) && d.node_count > 0) {
      s.nodeCount = d.node_count;
      if (s.nodes.length < d.node_count) this.node(s, d.node_count - 1);
    }
    if (d.provider) s.provider = d.provider;
    if (d.provider_id) s.providerId = d.provider_id;
    if (d.agent_runtime) s.runtime = d.agent_runtime;
    if (d.agent_model) s.model = d.agent_model;
    const created = epoch(d.created_at);
    if (created !== null) s.createdAt = created;
    const ended = epoch(d.terminated_at);
    if (ended !== null) s.terminatedAt = ended;
    if (d.termination_reason) s.terminationReason = d.termination_reason;
    if (typeof d.system_prompt === 'string') s.systemPrompt = d.system_prompt;
    if (typeof d.alias === 'string' && d.alias) s.alias = d.alias;
    if (Number.isFinite(d.spend_usd)) s.spendUsd = d.spend_usd;
    if ('budget_usd' in d) s.budgetUsd = Number.isFinite(d.budget_usd) ? d.budget_usd : null;
    if (typeof d.budget_state === 'string') s.budgetState = d.budget_state;
    if (typeof d.cost_unknown === 'boolean') s.costUnknown = d.cost_unknown;
    if (typeof d.auto_route === 'boolean') s.autoRoute = d.auto_route;
    this.touch(s);
  }

  _swarmList(swarms, seq) {
    const seen = new Set();
    for (const [id, rec] of Object.entries(swarms)) {
      seen.add(id);
      const s = this.swarm(id);
      this._fill(s, rec);
      if (s.createdAt === null) s.createdAt = this.now();
      this.setState(s, rec.state || rec.status, seq);
    }
    for (const s of this.swarms.values()) {
      // Gone from the router's list and not newer than the list itself: it was removed.
      if (!seen.has(s.id) && s.state !== 'removed' && s.stateSeq <= seq) this.setState(s, 'removed', seq);
    }
    // A terminate we are still waiting for is settled once the list shows the outcome.
    for (const op of [...this.ops.values()]) {
      if (op.kind !== 'terminate') continue;
      const s = this.swarms.get(op.swarmId);
      if (s && ['terminating', 'terminated', 'removed'].includes(s.state)) this._finishOp(op.requestId, 'terminate');
    }
    this.listDirty = true;
  }
}

Object.assign(Store.prototype, OPERATIONS);

/** A router time (epoch seconds or an ISO-8601 string) as epoch seconds, or null. */
export function epoch(value) {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isFinite(ms) ? ms / 1000 : null;
  }
  return null;
}

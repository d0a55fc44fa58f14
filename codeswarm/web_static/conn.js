// The WebSocket to the bridge: reconnect with backoff, resume from the last processed seq,
// and never hand the same broadcast event to the store twice (PROTOCOL.md 3.3, 3.4).
//
// Resume recipe: on open send `ping`; its `pong` tells the router's log_id and head; then
// `subscribe {since, log_id}`. Until `subscribed` arrives, broadcast events are only buffered
// (keyed by seq): live events queued before the subscribe took effect come again in the replay,
// and applying them early would move lastSeq past replayed events we have not seen yet.

import { uuid } from './util.js';

const PROTOCOL = 'codeswarm.router.v1';
const REPLAY_WINDOW = 50000; // first load: show this many recent log events, not the whole log
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 8000;
const SLICE_MS = 8;

export class Connection {
  /**
   * @param {object} o
   * @param {string} o.url WebSocket URL
   * @param {(env: object, live: boolean) => void} o.onEvent called for every event to apply, in
   *   order; `live` is false for the replay of a resume
   * @param {(state: string, info: object) => void} o.onState connection state changes
   * @param {() => void} o.onSynced resume finished (after `subscribed`)
   * @param {() => void} o.onReset the router's log is a different one: drop local history
   */
  constructor({ url, onEvent, onState, onSynced, onReset }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onSynced = onSynced;
    this.onReset = onReset;
    this.ws = null;
    this.state = 'idle';
    this.lastSeq = 0;
    this.logId = null;
    this.syncing = false;
    this.buffer = new Map();
    this.attempt = 0;
    this.timer = null;
    this.retryAt = 0;
    this.closeReason = '';
    this.stats = { received: 0, lastMessageAt: 0 };
    // Lines received and not yet handled. A burst of thousands (a replay, a firehose) is handled
    // in slices of SLICE_MS, yielding between them so typing and clicks are never held up long.
    this.pending = [];
    this.pendingAt = 0;
    this.pumping = false;
    this.yielder = new MessageChannel();
    this.yielder.port1.onmessage = () => this._pump();
  }

  _pump() {
    const t0 = performance.now();
    const lines = this.pending;
    let i = this.pendingAt;
    while (i < lines.length) {
      this._message(lines[i]);
      i += 1;
      if ((i & 31) === 0 && performance.now() - t0 > SLICE_MS) break;
    }
    if (lines !== this.pending) return; // the socket closed meanwhile; a new pump runs for the new one
    if (i >= lines.length) {
      this.pending = [];
      this.pendingAt = 0;
      this.pumping = false;
    } else {
      this.pendingAt = i;
      this.yielder.port2.postMessage(null); // continue after pending input and rendering
    }
  }

  start() {
    this._open();
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a command; returns its request_id, or null when not connected. */
  send(command, payload = {}) {
    if (!this.open) return null;
    const requestId = uuid();
    this.ws.send(JSON.stringify({ protocol: PROTOCOL, type: 'command', command, request_id: requestId, payload }));
    return requestId;
  }

  /** Reconnect now (the user clicked "retry"). */
  retryNow() {
    if (this.state === 'reconnecting') {
      clearTimeout(this.timer);
      this._open();
    }
  }

  _setState(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  _open() {
    this._setState(this.attempt ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleRetry(String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (!this.stats.openedAt) this.stats.openedAt = performance.now();
      this.syncing = true;
      this.buffer = new Map();
      this._setState('syncing');
      this.send('ping');
    };
    // The bridge packs the lines of one read into one frame (`?batch=1`): one envelope per line.
    ws.onmessage = (msg) => {
      const text = msg.data;
      if (typeof text !== 'string' || this.ws !== ws) return;
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        if (nl > start) this.pending.push(text.slice(start, nl));
        start = nl + 1;
      }
      if (start < text.length) this.pending.push(text.slice(start));
      if (!this.pumping) {
        this.pumping = true;
        this._pump();
      }
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // Lines not yet handled are dropped: the resume replays everything after lastSeq.
      this.pending = [];
      this.pendingAt = 0;
      this.syncing = false;
      this.buffer = new Map();
      this._scheduleRetry(ev.reason || `closed (${ev.code})`);
    };
    // onerror is always followed by onclose; nothing to do here.
    ws.onerror = () => {};
  }

  _scheduleRetry(reason) {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.closeReason = reason;
    this._setState('reconnecting', { delay, reason });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this._open(), delay);
  }

  _message(text) {
    this.stats.received += 1;
    this.stats.lastMessageAt = performance.now();
    let env;
    try {
      env = JSON.parse(text);
    } catch {
      return; // the bridge relays router lines; a broken one is not ours to show
    }
    if (!env || typeof env !== 'object' || env.type !== 'event') return;
    if (env.directed) {
      this._directed(env);
      return;
    }
    const seq = env.seq;
    if (typeof seq !== 'number') {
      this.onEvent(env);
      return;
    }
    if (this.syncing) {
      this.buffer.set(seq, env);
      return;
    }
    if (seq <= this.lastSeq) return; // already processed (replay overlap)
    this.lastSeq = seq;
    this.onEvent(env, true);
  }

  _directed(env) {
    const data = env.data || {};
    if (env.event === 'pong' && this.syncing) {
      let since = this.lastSeq;
      if (this.logId !== null && data.log_id !== this.logId) {
        // A different log (router state wiped): our seq numbers mean nothing there.
        this.onReset();
        this.lastSeq = 0;
        since = null;
      }
      if (since === 0 || since === null) since = Math.max(0, (data.head_seq || 0) - REPLAY_WINDOW);
      this.logId = data.log_id ?? null;
      const payload = { since };
      if (this.logId) payload.log_id = this.logId;
      this.send('subscribe', payload);
      return;
    }
    if (env.event === 'subscribed' && this.syncing) {
      if (data.reset) {
        this.onReset();
        this.lastSeq = 0;
      }
      this.logId = data.log_id ?? this.logId;
      const events = [...this.buffer.values()].sort((a, b) => a.seq - b.seq);
      this.buffer = new Map();
      this.syncing = false;
      for (const ev of events) {
        if (ev.seq <= this.lastSeq) continue;
        this.lastSeq = ev.seq;
        this.onEvent(ev);
      }
      if (typeof env.seq === 'number' && env.seq > this.lastSeq) this.lastSeq = env.seq;
      this.attempt = 0;
      this._setState('connected', { truncated: !!data.truncated });
      this.onSynced(data);
      return;
    }
    this.onEvent(env);
  }
}

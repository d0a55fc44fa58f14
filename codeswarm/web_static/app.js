// Entry point: wires the connection, the store and the renderer, and turns clicks into commands.

import { Connection } from './conn.js';
import { LaunchForm } from './launch.js';
import { Projects } from './projects.js';
import { Renderer } from './render.js';
import { Store } from './store.js';
import { decisionApproves, decisionLabel } from './blocks.js';
import { h } from './util.js';

const RECONCILE_MS = 10000;

const store = new Store();
const $ = (sel) => document.querySelector(sel);

// The token came in the URL; the server has set the cookie by now, so drop it from the address
// bar (and from history) before anything else can read or share it.
if (new URLSearchParams(location.search).has('token')) {
  history.replaceState(null, '', location.pathname + location.hash);
}

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?batch=1`;

// Queries a router may not know yet (older routers): their rejection is not the user's concern.
const quiet = new Set();
function query(command, payload = {}) {
  const id = conn.send(command, payload);
  if (id && ['approvals_list', 'queue_list', 'project_list'].includes(command)) quiet.add(id);
  return id;
}

const projects = new Projects({ store, send: (command, payload) => query(command, payload), listEl: $('#project-list') });

let pendingFocus = null; // {swarmId, nodeId, frames}: the node whose open approval to bring into view once drawn

const actions = {
  select(id) {
    location.hash = `#/swarm/${id}`;
  },
  openNode(swarmId, nodeId) {
    location.hash = nodeId === null ? `#/swarm/${swarmId}` : `#/swarm/${swarmId}/node/${nodeId}`;
  },
  /** From the approvals summary: open the node's transcript with its approval in view. */
  focus(swarm, nodeId) {
    pendingFocus = { swarmId: swarm.id, nodeId, frames: 0 };
    const hash = `#/swarm/${swarm.id}/node/${nodeId}`;
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  dismiss(id) {
    store.dismiss(id);
    schedule();
  },
  inject(swarm, nodes, ids, content, onRejected) {
    const requestId = conn.send('inject', { swarm_id: swarm.id, nodes, content });
    if (!requestId) {
      onRejected('not connected to the router');
      return false;
    }
    store.beginInject(requestId, swarm, ids, content, onRejected);
    schedule();
    return true;
  },
  enqueue(swarm, r, onRejected) {
    const payload = { source_swarm_id: swarm.id, target_swarm_id: r.target.id, selector: r.selector, content: r.content };
    if (r.selector === 'nodes') payload.nodes = r.nodes;
    const requestId = conn.send('enqueue_inject', payload);
    if (!requestId) {
      onRejected('not connected to the router');
      return false;
    }
    store.begin(requestId, 'enqueue', 'Enqueue', onRejected);
    store.notify('info', `Queued for ${store.swarmName(r.target)}: ${r.preview.replace(/^→ /, '')}`);
    schedule();
    return true;
  },
  cancelQueued(item) {
    const requestId = conn.send('queue_cancel', { queue_id: item.queue_id });
    if (!requestId) {
      store.notify('error', 'Not connected to the router: cancel not sent.');
    } else {
      item._cancelling = true;
      store.queueDirty = true;
      store.begin(requestId, 'cancel', 'Cancel', () => {
        item._cancelling = false;
        store.queueDirty = true;
      });
    }
    schedule();
  },
  terminate(swarm) {
    const dialog = $('#confirm');
    $('#confirm-text').textContent = `Terminate swarm ${store.swarmName(swarm)} (${swarm.nodeCount} nodes)? Its agents are stopped.`;
    $('#confirm-archive').checked = false;
    dialog.returnValue = '';
    dialog.onclose = () => {
      if (dialog.returnValue !== 'terminate') return;
      const payload = { swarm_id: swarm.id };
      if ($('#confirm-archive').checked) payload.terminate_params = { download_workspaces_on_shutdown: true };
      const requestId = conn.send('swarm_terminate', payload);
      if (!requestId) {
        store.notify('error', 'Not connected to the router: terminate not sent.');
      } else {
        store.beginTerminate(requestId, swarm);
      }
      schedule();
    };
    dialog.showModal();
    $('#confirm-cancel').focus();
  },
  /** Answer an approval: a precise `decision` from its block, or just approved/declined. */
  approve(swarm, nodeId, block, approved, decision) {
    const payload = { job_id: block.jobId || swarm.jobId, call_id: block.callId, node_id: nodeId };
    if (decision !== undefined && decision !== null) {
      payload.approved = decisionApproves(decision);
      payload.decision = decision;
    } else {
      payload.approved = !!approved;
    }
    if (block.injectionId) payload.injection_id = block.injectionId;
    const requestId = conn.send('approve_execution', payload);
    if (!requestId) {
      store.notify('error', 'Not connected to the router: decision not sent.');
    } else {
      const label = decision !== undefined && decision !== null ? decisionLabel(decision) : approved ? 'Accept' : 'Decline';
      store.beginApprove(requestId, swarm, nodeId, block, label);
    }
    schedule();
  },
};

const renderer = new Renderer({
  store, listEl: $('#swarm-list'), mainEl: $('#main'), noticesEl: $('#notices'),
  approvalsEl: $('#approvals-dock'), queueEl: $('#queue-dock'), actions,
});

const launchForm = new LaunchForm((payload, done) => {
  const requestId = conn.send('swarm_launch', payload);
  if (!requestId) {
    done('not connected to the router');
    return;
  }
  store.beginLaunch(requestId, payload, (reason) => done(reason));
  const op = store.ops.get(requestId);
  op.done = done;
  schedule();
});

store.onLaunched = (swarm, op) => {
  if (op.done) op.done(null);
  // Follow the launch if the user is still looking at the form.
  if (location.hash === '' || location.hash === '#/' || location.hash === '#/launch') actions.select(swarm.id);
};

// ------------------------------------------------------------------ rendering, batched per frame

let scheduled = false;
let synced = false; // a first resume has completed: "unknown swarm" is then a fact
let listed = false; // the router's swarm list has arrived at least once
const perf = { frames: 0, maxLagMs: 0, lastLagMs: 0, eventsAtFrame: 0 };

function flush() {
  if (!scheduled) return;
  scheduled = false;
  if (store.providersDirty) {
    store.providersDirty = false;
    launchForm.setProviders(store.providers);
  }
  if (renderer.selected && !renderer.view) {
    if (store.swarms.has(renderer.selected)) renderer.show(renderer.selected, renderer.focusNode);
    else if (synced) $('#main').replaceChildren(h('p', { class: 'hint card' }, 'The router does not know this swarm (it may have been removed).'));
  }
  if (home && (listed || (synced && defaultSwarm()))) route();
  renderer.flush();
  projects.flush();
  if (!perf.firstViewAt && renderer.view) perf.firstViewAt = performance.now();
  if (pendingFocus) focusPending();
  perf.frames += 1;
  // How far the page is behind the router: emission time of the newest drawn event.
  if (store.stats.newestTs) {
    const lag = Date.now() - Date.parse(store.stats.newestTs);
    if (Number.isFinite(lag)) {
      perf.lastLagMs = lag;
      perf.maxLagMs = Math.max(perf.maxLagMs, lag);
    }
  }
  perf.eventsAtFrame = store.stats.applied;
}

/** Focus the approval the summary asked for, for the next 120 frames: its block appears a frame or
 *  more after the route changes, and a redraw of the pane can drop the focus to <body>; the swarm is
 *  usually idle (waiting for this very approval), so no event would ask for those frames. Looked up
 *  again each frame (the node's page may draw its transcript from new block objects); the focus is
 *  never taken back from where the user moved it. */
function focusPending() {
  const { swarmId, nodeId } = pendingFocus;
  const a = store.openApprovals(swarmId).find((x) => x.node.id === nodeId);
  if (!a || ++pendingFocus.frames > 120) {
    pendingFocus = null;
    return;
  }
  const active = document.activeElement;
  const held = a.block.el && a.block.el.contains(active);
  if (!held && (!pendingFocus.focused || !active || active === document.body)) {
    if (renderer.view && renderer.view.panes.focusApproval(nodeId, a.block)) pendingFocus.focused = true;
  }
  schedule();
}

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(flush);
  // rAF does not run in background tabs; keep the model drawn there too, just less often.
  setTimeout(flush, 500);
}

// ------------------------------------------------------------------ routing

let home = false; // the page opened without a route: pick a swarm once the router has answered

/** The most recent running (else pending) swarm: what a user opening the page wants to see. */
function defaultSwarm() {
  const live = [...store.swarms.values()].filter((s) => s.state === 'running' || s.state === 'pending');
  live.sort((a, b) => (a.state === 'running') - (b.state === 'running') || (a.createdAt || 0) - (b.createdAt || 0));
  return live.length ? live[live.length - 1] : null;
}

function route() {
  if (location.hash === '' || location.hash === '#' || location.hash === '#/') {
    if (!listed && !(synced && defaultSwarm())) {
      home = true; // decide once the router has listed its swarms (or the replay showed one running)
      $('#launch-view').hidden = true;
      $('#main').hidden = false;
      $('#main').replaceChildren(h('p', { class: 'hint card' }, 'Loading…'));
      return;
    }
    home = false;
    const s = defaultSwarm();
    location.replace(s ? `#/swarm/${s.id}` : '#/launch'); // hashchange comes later: go on at once
  }
  home = false;
  const pm = location.hash.match(/^#\/project\/([\w.-]+)$/);
  if (pm) {
    $('#launch-view').hidden = true;
    $('#main').hidden = false;
    renderer.show(null);
    projects.show(decodeURIComponent(pm[1]), $('#main'));
    schedule();
    return;
  }
  projects.show(null, null);
  const m = location.hash.match(/^#\/swarm\/([\w-]+)(?:\/node\/(\d+))?$/);
  const launch = $('#launch-view');
  if (m) {
    launch.hidden = true;
    $('#main').hidden = false;
    const nodeId = m[2] === undefined ? null : Number(m[2]);
    if (!renderer.show(m[1], nodeId)) $('#main').replaceChildren(h('p', { class: 'hint card' }, 'Loading swarm…'));
  } else {
    renderer.show(null);
    $('#main').hidden = true;
    launch.hidden = false;
  }
  schedule();
}
window.addEventListener('hashchange', route);
$('#new-swarm').addEventListener('click', () => { location.hash = '#/launch'; });

// ------------------------------------------------------------------ connection

const connEl = $('#conn');
let retryTicker = null;

function showConn(state, info) {
  connEl.dataset.state = state;
  const label = connEl.querySelector('.label');
  clearInterval(retryTicker);
  if (state === 'reconnecting') {
    const tick = () => {
      const left = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
      const what = /router/.test(info.reason || '') ? 'Router unavailable · retry' : 'Reconnecting';
      label.textContent = `${what}${left ? ` in ${left}s` : '…'}`;
    };
    tick();
    retryTicker = setInterval(tick, 500);
    connEl.title = info.reason || '';
  } else {
    label.textContent = { connecting: 'Connecting…', syncing: 'Syncing…', connected: 'Connected' }[state] || state;
    connEl.title = '';
  }
  $('#retry').hidden = state !== 'reconnecting';
  if (info.truncated) store.notify('info', 'Older events are no longer in the router log; streams start later.');
}

const conn = new Connection({
  url: wsUrl,
  onEvent: (env, live) => {
    const d = env.data || {};
    if (env.event === 'command_rejected' && quiet.has(d.request_id)) {
      quiet.delete(d.request_id);
      return;
    }
    if (env.directed && quiet.has(d.request_id)) quiet.delete(d.request_id);
    if (projects.apply(env)) {
      // Project events are the project view's; task events name a swarm and node, but they are
      // not that node's stream. A rejected project command still reaches the store below.
      if (d.request_id && store.ops.has(d.request_id)) store.ops.delete(d.request_id);
      schedule();
      return;
    }
    store.apply(env, live);
    if (env.event === 'swarm_list' && !listed) perf.listedAt = performance.now();
    if (env.event === 'swarm_list') listed = true;
    // A rejection may mean our picture is stale (e.g. the swarm ended): ask for the truth.
    if (env.event === 'command_rejected' && conn.state === 'connected') conn.send('swarm_list');
    // A new swarm: its list record has what the launch event may lack (alias, auto-route).
    if (env.event === 'swarm_launched' && live) conn.send('swarm_list');
    schedule();
  },
  onState: showConn,
  onSynced: () => {
    if (!synced) perf.syncedAt = performance.now();
    synced = true;
    conn.send('providers_list');
    conn.send('swarm_list');
    query('queue_list');
    query('approvals_list');
    query('project_list');
    if (projects.shown) projects.show(projects.shown, $('#main'));
    schedule();
  },
  onReset: () => {
    store.reset();
    renderer.dropView();
    renderer.show(renderer.selected, renderer.focusNode);
    schedule();
  },
});
$('#retry').addEventListener('click', () => conn.retryNow());

// Reconcile the list now and then: states we may have missed, TTL removals, other clients.
setInterval(() => { if (conn.state === 'connected') conn.send('swarm_list'); }, RECONCILE_MS);

// Hooks for tests and the benchmark (no behavior depends on them).
window.codeswarm = { store, conn, renderer, projects, perf, schedule };

route();
$('#launch-view').append(launchForm.el);
launchForm.setProviders([]);
conn.start();

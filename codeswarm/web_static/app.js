// Entry point: wires the connection, the store and the renderer, and turns clicks into commands.

import { Connection } from './conn.js';
import { LaunchForm } from './launch.js';
import { Renderer } from './render.js';
import { Store } from './store.js';
import { decisionApproves, decisionLabel } from './blocks.js';
import { h, shortId } from './util.js';

const RECONCILE_MS = 10000;

const store = new Store();
const $ = (sel) => document.querySelector(sel);

// The token came in the URL; the server has set the cookie by now, so drop it from the address
// bar (and from history) before anything else can read or share it.
if (new URLSearchParams(location.search).has('token')) {
  history.replaceState(null, '', location.pathname + location.hash);
}

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;

const actions = {
  select(id) {
    location.hash = `#/swarm/${id}`;
  },
  dismiss(id) {
    store.dismiss(id);
    schedule();
  },
  inject(swarm, nodes, content, onRejected) {
    const payload = { swarm_id: swarm.id, nodes, content };
    const requestId = conn.send('inject', payload);
    if (!requestId) {
      onRejected('not connected to the router');
      return false;
    }
    const ids = nodes === 'all' ? swarm.nodes.map((n) => n.id) : nodes;
    store.beginInject(requestId, swarm, ids, content, onRejected);
    schedule();
    return true;
  },
  terminate(swarm) {
    const dialog = $('#confirm');
    $('#confirm-text').textContent = `Terminate swarm ${swarm.jobId || shortId(swarm.id)} (${swarm.nodeCount} nodes)? Its agents are stopped.`;
    dialog.returnValue = '';
    dialog.onclose = () => {
      if (dialog.returnValue !== 'terminate') return;
      const requestId = conn.send('swarm_terminate', { swarm_id: swarm.id });
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
  approve(swarm, block, decision) {
    const nodeId = swarm.nodes.findIndex((n) => n.blocks.includes(block));
    const payload = {
      job_id: block.jobId || swarm.jobId, call_id: block.callId, node_id: nodeId,
      approved: decisionApproves(decision), decision,
    };
    if (block.injectionId) payload.injection_id = block.injectionId;
    const requestId = conn.send('approve_execution', payload);
    if (!requestId) {
      store.notify('error', 'Not connected to the router: decision not sent.');
    } else {
      store.beginApprove(requestId, swarm, nodeId, block, decisionLabel(decision));
    }
    schedule();
  },
};

const renderer = new Renderer({
  store, listEl: $('#swarm-list'), mainEl: $('#main'), noticesEl: $('#notices'), actions,
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
const perf = { frames: 0, maxLagMs: 0, lastLagMs: 0, eventsAtFrame: 0 };

function flush() {
  if (!scheduled) return;
  scheduled = false;
  if (store.providersDirty) {
    store.providersDirty = false;
    launchForm.setProviders(store.providers);
  }
  if (renderer.selected && !renderer.view) {
    if (store.swarms.has(renderer.selected)) renderer.show(renderer.selected);
    else if (synced) $('#main').replaceChildren(h('p', { class: 'hint card' }, 'The router does not know this swarm (it may have been removed).'));
  }
  renderer.flush();
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

function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(flush);
  // rAF does not run in background tabs; keep the model drawn there too, just less often.
  setTimeout(flush, 500);
}

// ------------------------------------------------------------------ routing

function route() {
  const m = location.hash.match(/^#\/swarm\/([\w-]+)$/);
  const launch = $('#launch-view');
  if (m) {
    launch.hidden = true;
    $('#main').hidden = false;
    if (!renderer.show(m[1])) $('#main').replaceChildren(h('p', { class: 'hint card' }, 'Loading swarm…'));
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
  onEvent: (env) => {
    store.apply(env);
    // A rejection may mean our picture is stale (e.g. the swarm ended): ask for the truth.
    if (env.event === 'command_rejected' && conn.state === 'connected') conn.send('swarm_list');
    schedule();
  },
  onState: showConn,
  onSynced: () => {
    synced = true;
    conn.send('providers_list');
    conn.send('swarm_list');
    schedule();
  },
  onReset: () => {
    store.reset();
    renderer.show(renderer.selected);
    schedule();
  },
});
$('#retry').addEventListener('click', () => conn.retryNow());

// Reconcile the list now and then: states we may have missed, TTL removals, other clients.
setInterval(() => { if (conn.state === 'connected') conn.send('swarm_list'); }, RECONCILE_MS);

// Hooks for tests and the benchmark (no behavior depends on them).
window.codeswarm = { store, conn, renderer, perf, schedule };

route();
$('#launch-view').append(launchForm.el);
launchForm.setProviders([]);
conn.start();

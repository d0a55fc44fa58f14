// Per-node stream events -> blocks of that node (prompt, turn, reasoning, text, tool, file
// change, approval, error) and its facts (worker state, busy, usage, failure, pending approvals,
// last activity, searchable text). Split from store.js; `st` is the Store.

import { commandText } from './util.js';

/** The last block of a node, if it is an open stream of this kind for this injection. */
function openOf(node, kind, injectionId) {
  const b = node.open;
  if (b && b.kind === kind && b.injectionId === injectionId && node.blocks[node.blocks.length - 1] === b) return b;
  return null;
}

export function closeOpen(node) {
  node.open = null;
}

function stream(st, s, node, kind, d, text, final) {
  let b = openOf(node, kind, d.injection_id ?? null);
  if (!b) {
    b = st.addBlock(s, node, { kind, injectionId: d.injection_id ?? null, text: '', pending: '', replace: true, final: false });
    node.open = b;
  }
  if (final) {
    // The complete item is authoritative: it replaces what the deltas built.
    if (typeof text === 'string' && text.length) {
      // Deltas must add up to the complete item; a difference means a lost or doubled delta.
      if (b.text && b.text !== text) st.stats.textMismatches = (st.stats.textMismatches || 0) + 1;
      b.text = text;
      b.replace = true;
      b.pending = '';
    }
    b.final = true;
    if (d.final_answer) b.finalAnswer = true;
    node.open = null;
  } else if (typeof text === 'string' && text.length) {
    b.text += text;
    b.pending += text;
  }
  st.changed(s, node, b);
}

// Events that count as a node's activity (unseen markers, "last activity"), and the text of
// each that the overview's search looks through.
const ACTIVITY = {
  inject_ack: (d) => d.prompt, turn_started: () => '', turn_complete: () => '',
  reasoning_delta: (d) => d.content, assistant_delta: (d) => d.content,
  reasoning: () => '', assistant: () => '', // the deltas already carried the text
  command_started: (d) => commandText(d.command), command_completed: (d) => `${d.stdout || ''}${d.stderr || ''}`,
  file_change: (d) => (Array.isArray(d.changes) ? d.changes.map((c) => c && c.path).join(' ') : ''),
  exec_approval_required: (d) => commandText(d.command), agent_error: (d) => d.message, inject_failed: (d) => d.error,
};

export function applyNodeEvent(st, event, d, s, node, ts) {
  const inj = d.injection_id ?? null;
  const text = ACTIVITY[event];
  if (text) {
    // A complete item replaces its deltas; if no delta came (some runtimes send none) it is the text.
    const t = event === 'assistant' || event === 'reasoning' ? (node.open && node.open.text ? '' : d.content) : text(d);
    st.activity(s, node, ts, typeof t === 'string' ? t : '');
  }
  switch (event) {
    case 'node_status':
      node.worker = d.worker || node.worker;
      if (d.worker === 'exited' && d.exit_code !== 0 && d.exit_code !== undefined && d.exit_code !== null) {
        node.failed = `worker exited (${d.exit_code})`;
      }
      st.fact(s, node);
      return;
    case 'thread_status':
      node.busy = !!(d.status && d.status.type === 'active');
      st.fact(s, node);
      return;
    case 'usage':
      // node_spend_usd is the node's running total. Without it: a router that also sends
      // last_estimated_cost_usd has a cumulative estimated_cost_usd; otherwise it is this event's.
      if (Number.isFinite(d.node_spend_usd)) node.spendUsd = d.node_spend_usd;
      else if (Number.isFinite(d.estimated_cost_usd)) {
        node.spendUsd = 'last_estimated_cost_usd' in d ? d.estimated_cost_usd : (node.spendUsd ?? 0) + d.estimated_cost_usd;
      }
      node.usage = d;
      st.fact(s, node);
      st.touch(s);
      return;
    case 'inject_ack': {
      const op = st.ops.get(d.request_id);
      let b = op && op.kind === 'inject' ? op.blocks.get(node.id) : null;
      if (b) {
        op.blocks.delete(node.id);
        if (op.blocks.size === 0) st.ops.delete(op.requestId);
      } else {
        b = st.addBlock(s, node, { kind: 'prompt', text: d.prompt ?? '' });
      }
      b.injectionId = inj;
      b.status = 'acked';
      if (typeof d.prompt === 'string') b.text = d.prompt;
      st.changed(s, node, b);
      closeOpen(node);
      return;
    }
    case 'inject_delivered':
    case 'inject_failed': {
      const b = node.blocks.find((x) => x.kind === 'prompt' && x.injectionId === inj);
      if (!b) return;
      b.status = event === 'inject_delivered' ? (d.queued ? 'queued' : 'delivered') : 'failed';
      if (event === 'inject_failed') {
        b.error = d.error || d.reason;
        node.failed = `prompt failed: ${b.error}`;
        st.fact(s, node);
      }
      st.changed(s, node, b);
      return;
    }
    case 'turn_started':
      closeOpen(node);
      node.busy = true;
      node.failed = null;
      st.fact(s, node);
      st.addBlock(s, node, { kind: 'turn', phase: 'start', turnId: d.turn_id, injectionId: inj });
      return;
    case 'turn_complete':
      closeOpen(node);
      node.busy = false;
      st.fact(s, node);
      st.addBlock(s, node, { kind: 'turn', phase: 'end', turnId: d.turn_id, injectionId: inj, aborted: !!d.aborted,
        costUsd: Number.isFinite(d.turn_cost_usd) ? d.turn_cost_usd : null, costUnknown: !!d.turn_cost_unknown });
      return;
    case 'turn_cost_updated': {
      // usage that arrived after the turn completed (docs/SPEND.md): the turn's corrected cost
      const b = node.blocks.find((x) => x.kind === 'turn' && x.phase === 'end' && x.injectionId === inj);
      if (!b) return;
      if (Number.isFinite(d.turn_cost_usd)) b.costUsd = d.turn_cost_usd;
      b.costUnknown = b.costUnknown || !!d.turn_cost_unknown;
      st.changed(s, node, b);
      return;
    }
    case 'reasoning_delta':
      stream(st, s, node, 'reasoning', d, d.content, false);
      return;
    case 'reasoning':
      stream(st, s, node, 'reasoning', d, d.content, true);
      return;
    case 'assistant_delta':
      stream(st, s, node, 'assistant', d, d.content, false);
      return;
    case 'assistant':
      stream(st, s, node, 'assistant', d, d.content, true);
      return;
    case 'command_started':
    case 'command_completed': {
      closeOpen(node);
      let b = node.blocks.find((x) => x.kind === 'tool' && x.callId === d.call_id && x.injectionId === inj);
      if (!b) b = st.addBlock(s, node, { kind: 'tool', callId: d.call_id, injectionId: inj, status: 'running' });
      b.command = d.command ?? b.command;
      b.cwd = d.cwd ?? b.cwd;
      if (event === 'command_completed') {
        b.status = d.status || (d.exit_code === 0 ? 'completed' : 'failed');
        b.exitCode = d.exit_code;
        b.duration = d.duration;
        b.stdout = d.stdout || '';
        b.stderr = d.stderr || '';
        b.truncated = !!d.truncated;
      }
      st.changed(s, node, b);
      return;
    }
    case 'file_change': {
      closeOpen(node);
      let b = node.blocks.find((x) => x.kind === 'file' && x.callId === d.call_id && x.injectionId === inj);
      if (!b) b = st.addBlock(s, node, { kind: 'file', callId: d.call_id, injectionId: inj });
      b.changes = Array.isArray(d.changes) ? d.changes : b.changes || [];
      b.status = d.status;
      st.changed(s, node, b);
      return;
    }
    case 'exec_approval_required': {
      closeOpen(node);
      let b = node.blocks.find((x) => x.kind === 'approval' && x.approvalId === d.approval_id);
      if (!b) b = st.addBlock(s, node, { kind: 'approval', approvalId: d.approval_id, injectionId: inj });
      Object.assign(b, {
        callId: d.call_id, jobId: d.job_id, command: d.command, reason: d.reason, cwd: d.cwd,
        approvalKind: d.kind, decisions: d.available_decisions || [], at: b.at ?? ts,
      });
      if (!b.resolved) st.approvalOpen(s, node, b);
      st.changed(s, node, b);
      return;
    }
    case 'exec_approval_resolved': {
      const b = node.blocks.find((x) => x.kind === 'approval' && x.approvalId === d.approval_id);
      if (d.request_id) st.ops.delete(d.request_id);
      st.approvalClosed(d.approval_id);
      if (!b) return;
      b.resolved = { approved: !!d.approved, decision: d.decision, source: d.source };
      b.sending = null;
      b.error = null;
      st.changed(s, node, b);
      return;
    }
    case 'agent_error':
      closeOpen(node);
      node.failed = d.message || 'error';
      st.fact(s, node);
      st.addBlock(s, node, { kind: 'error', text: d.message || 'error', code: d.error_code, fatal: !!d.fatal });
      return;
    default:
      return; // task_started, task_complete and unknown events: nothing to show
  }
}

// Per-node stream events -> blocks of that node (prompt, turn, reasoning, text, tool, file
// change, approval, error) and its header facts (worker state, busy, usage). Split from store.js;
// `st` is the Store.

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

export function applyNodeEvent(st, event, d, s, node) {
  const inj = d.injection_id ?? null;
  switch (event) {
    case 'node_status':
      node.worker = d.worker || node.worker;
      node.headDirty = true;
      st.changedSwarms.add(s.id);
      return;
    case 'thread_status':
      node.busy = !!(d.status && d.status.type === 'active');
      node.headDirty = true;
      st.changedSwarms.add(s.id);
      return;
    case 'usage':
      node.usage = d;
      node.headDirty = true;
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
      if (event === 'inject_failed') b.error = d.error || d.reason;
      st.changed(s, node, b);
      return;
    }
    case 'turn_started':
      closeOpen(node);
      node.busy = true;
      node.headDirty = true;
      st.addBlock(s, node, { kind: 'turn', phase: 'start', turnId: d.turn_id, injectionId: inj });
      return;
    case 'turn_complete':
      closeOpen(node);
      node.busy = false;
      node.headDirty = true;
      st.addBlock(s, node, { kind: 'turn', phase: 'end', turnId: d.turn_id, injectionId: inj, aborted: !!d.aborted });
      return;
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
        approvalKind: d.kind, decisions: d.available_decisions || [],
      });
      st.changed(s, node, b);
      return;
    }
    case 'exec_approval_resolved': {
      const b = node.blocks.find((x) => x.kind === 'approval' && x.approvalId === d.approval_id);
      if (d.request_id) st.ops.delete(d.request_id);
      if (!b) return;
      b.resolved = { approved: !!d.approved, decision: d.decision, source: d.source };
      b.sending = null;
      b.error = null;
      st.changed(s, node, b);
      return;
    }
    case 'agent_error':
      closeOpen(node);
      st.addBlock(s, node, { kind: 'error', text: d.message || 'error', code: d.error_code, fatal: !!d.fatal });
      return;
    default:
      return; // task_started, task_complete and unknown events: nothing to show
  }
}

// The optimistic operations of the Store (launch, inject, enqueue, terminate, approve, cancel):
// what the page shows at once, and how the router's answer settles it or a rejection undoes it.
// Mixed into Store.prototype (store.js); `this` is the Store.

import { closeOpen } from './streams.js';

export const OPERATIONS = {
  _finishOp(requestId, kind) {
    const op = requestId && this.ops.get(requestId);
    if (!op || op.kind !== kind) return;
    this.ops.delete(requestId);
    if (kind === 'terminate') {
      const s = this.swarms.get(op.swarmId);
      if (s) {
        s.optimistic = null;
        this.touch(s);
      }
    }
  },

  _rejected(d) {
    const reason = d.reason || d.code || 'rejected';
    const op = d.request_id ? this.ops.get(d.request_id) : null;
    if (!op) {
      this.notify('error', `Command ${d.command || ''} rejected: ${reason}`);
      return;
    }
    this.ops.delete(d.request_id);
    const s = op.swarmId ? this.swarms.get(op.swarmId) : null;
    switch (op.kind) {
      case 'launch':
        this.listDirty = true;
        this.notify('error', `Launch rejected: ${reason}`);
        if (op.onRejected) op.onRejected(reason);
        break;
      case 'terminate':
        if (s) {
          s.optimistic = null;
          s.notice = { level: 'error', text: `Terminate rejected: ${reason}` };
          this.touch(s);
        }
        this.notify('error', `Terminate rejected: ${reason}`);
        break;
      case 'inject':
        if (s) {
          for (const [nodeId, block] of op.blocks) {
            const node = s.nodes[nodeId];
            if (!node) continue;
            const i = node.blocks.indexOf(block);
            if (i >= 0) node.blocks.splice(i, 1);
            node.dirty.delete(block);
            node.removed.push(block);
          }
          this.touch(s);
        }
        this.notify('error', `Inject rejected: ${reason}`);
        if (op.onRejected) op.onRejected(reason);
        break;
      case 'approve':
        if (s) {
          const node = s.nodes[op.nodeId];
          const block = node && node.blocks.find((b) => b.kind === 'approval' && b.approvalId === op.approvalId);
          if (block) {
            block.sending = null;
            block.error = reason;
            this.changed(s, node, block);
          }
        }
        this.notify('error', `Approval rejected: ${reason}`);
        break;
      default:
        this.notify('error', `${op.label || op.kind} rejected: ${reason}`);
        if (op.onRejected) op.onRejected(reason);
    }
  },


  // ------------------------------------------------------------------ beginning them
  beginLaunch(requestId, payload, onRejected) {
    this.ops.set(requestId, { kind: 'launch', requestId, payload, at: Date.now(), onRejected });
    this.listDirty = true;
  },

  beginInject(requestId, swarm, nodeIds, content, onRejected) {
    const blocks = new Map();
    for (const id of nodeIds) {
      const node = this.node(swarm, id);
      blocks.set(id, this.addBlock(swarm, node, { kind: 'prompt', text: content, status: 'sending' }));
      closeOpen(node);
    }
    swarm.notice = null;
    this.touch(swarm);
    this.ops.set(requestId, { kind: 'inject', requestId, swarmId: swarm.id, blocks, onRejected });
  },

  beginTerminate(requestId, swarm) {
    this.ops.set(requestId, { kind: 'terminate', requestId, swarmId: swarm.id });
    swarm.optimistic = 'terminating';
    swarm.notice = null;
    this.touch(swarm);
  },

  beginApprove(requestId, swarm, nodeId, block, label) {
    this.ops.set(requestId, { kind: 'approve', requestId, swarmId: swarm.id, nodeId, approvalId: block.approvalId });
    block.sending = label;
    block.error = null;
    this.changed(swarm, swarm.nodes[nodeId], block);
  },

  /** An operation that only needs its rejection shown (enqueue, cancel of a queued item). */
  begin(requestId, kind, label, onRejected) {
    this.ops.set(requestId, { kind, requestId, label, onRejected });
  },

  pendingLaunches() {
    return [...this.ops.values()].filter((op) => op.kind === 'launch');
  }
};

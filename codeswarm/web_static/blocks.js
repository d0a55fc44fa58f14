// One DOM element per stream block (prompt, turn boundary, reasoning, assistant text, tool run,
// file change, approval, error). create() builds it once; update() brings it up to date cheaply:
// streaming text is appended to a Text node instead of re-setting the whole string.

import { renderMarkdown } from './md.js';
import { h, commandText, fmtDuration } from './util.js';

const DECISION_LABELS = {
  accept: 'Accept', acceptForSession: 'Accept for session', decline: 'Decline', cancel: 'Cancel turn',
  approved: 'Approve', approved_for_session: 'Approve for session', denied: 'Deny', abort: 'Abort turn',
};
const APPROVING = new Set(['accept', 'acceptForSession', 'approved', 'approved_for_session']);

export function decisionLabel(decision) {
  if (typeof decision === 'string') return DECISION_LABELS[decision] || decision;
  if (decision && typeof decision === 'object') return 'Accept and remember rule';
  return String(decision);
}

export function decisionApproves(decision) {
  return typeof decision === 'string' ? APPROVING.has(decision) : true;
}

/** Build the element for a block. `ctx.approve(block, decision)` answers approvals. */
export function createBlock(block, ctx) {
  let el;
  switch (block.kind) {
    case 'assistant':
      el = h('div', { class: 'blk assistant' }, h('div', { class: 'text' }));
      break;
    case 'reasoning':
      el = h('details', { class: 'blk reasoning' },
        h('summary', null, h('span', { class: 'label' }, 'Reasoning'), ' ', h('span', { class: 'meta' })),
        h('div', { class: 'text' }));
      break;
    case 'prompt':
      el = h('div', { class: 'blk prompt' },
        h('div', { class: 'blk-head' }, h('span', { class: 'label' }, 'Prompt'), h('span', { class: 'status' })),
        h('div', { class: 'text' }));
      break;
    case 'turn':
      el = h('div', { class: `blk turn turn-${block.phase}`, role: 'separator' }, h('span', { class: 'label' }));
      break;
    case 'tool':
      el = h('div', { class: 'blk tool' },
        h('div', { class: 'blk-head' }, h('span', { class: 'icon', 'aria-hidden': 'true' }, '$'),
          h('code', { class: 'cmd' }), h('span', { class: 'meta' })),
        h('div', { class: 'cwd' }),
        h('pre', { class: 'out', tabindex: '0' }));
      break;
    case 'file':
      el = h('div', { class: 'blk file' },
        h('div', { class: 'blk-head' }, h('span', { class: 'label' }, 'File changes'), h('span', { class: 'status' })),
        h('ul', { class: 'changes' }));
      break;
    case 'approval':
      el = h('div', { class: 'blk approval', role: 'group', 'aria-label': 'Approval request' },
        h('div', { class: 'blk-head' }, h('span', { class: 'label' }, 'Approval needed'), h('span', { class: 'status' })),
        h('code', { class: 'cmd' }), h('div', { class: 'reason' }), h('div', { class: 'actions' }),
        h('div', { class: 'err' }));
      break;
    case 'error':
      el = h('div', { class: 'blk error', role: 'alert' }, h('span', { class: 'label' }, 'Error'), ' ',
        h('span', { class: 'text' }));
      break;
    default:
      el = h('div', { class: 'blk' });
  }
  el.dataset.kind = block.kind;
  block.el = el;
  block.replace = true;
  updateBlock(block, ctx);
  return el;
}

// Streaming text is kept in chunks of about CHUNK_SOFT characters, cut after a newline (so the
// cut is invisible), or at CHUNK_HARD when the text has no newline. The browser then re-lays out
// only the last chunk on each frame instead of the whole, ever longer, text.
const CHUNK_SOFT = 2048;
const CHUNK_HARD = 4096;

function setText(block, el, markdown = false) {
  const box = el.querySelector(':scope > .text');
  if (markdown && block.final) {
    // Streaming text is drawn as it comes; the complete item is drawn once more, as Markdown.
    if (block.replace || !box.classList.contains('md')) {
      box.replaceChildren(renderMarkdown(block.text));
      box.classList.add('md');
    }
    block.tail = null;
    block.pending = '';
    block.replace = false;
    return;
  }
  box.classList.remove('md');
  if (block.replace) {
    box.replaceChildren();
    block.tail = null;
    appendChunked(block, box, block.text);
  } else if (block.pending) {
    appendChunked(block, box, block.pending);
  }
  block.pending = '';
  block.replace = false;
}

function appendChunked(block, box, text) {
  while (text) {
    if (!block.tail) {
      block.tail = document.createTextNode('');
      block.tailLen = 0;
      box.append(h('div', { class: 'chunk' }, block.tail));
    }
    let cut = text.length;
    const soft = CHUNK_SOFT - block.tailLen;
    if (text.length > soft) {
      const nl = text.indexOf('\n', Math.max(0, soft - 1));
      if (nl >= 0) cut = nl + 1;
      else if (block.tailLen + text.length > CHUNK_HARD) cut = Math.max(1, CHUNK_HARD - block.tailLen);
    }
    block.tail.appendData(cut === text.length ? text : text.slice(0, cut));
    block.tailLen += cut;
    text = text.slice(cut);
    if (text) block.tail = null;
  }
}

export function updateBlock(block, ctx) {
  const el = block.el;
  switch (block.kind) {
    case 'assistant':
      setText(block, el, true);
      el.classList.toggle('streaming', !block.final);
      el.classList.toggle('final-answer', !!block.finalAnswer);
      break;
    case 'reasoning':
      setText(block, el, true);
      el.querySelector('.meta').textContent = `${block.text.length} chars${block.final ? '' : ' …'}`;
      break;
    case 'prompt': {
      setText(block, el);
      const status = block.status || 'sending';
      el.dataset.status = status;
      el.querySelector('.status').textContent = block.error ? `${status}: ${block.error}` : status;
      break;
    }
    case 'turn': {
      const id = block.turnId ? String(block.turnId) : '';
      const name = /^turn/i.test(id) ? id : `turn ${id}`.trim();
      const cost = block.phase === 'end' && Number.isFinite(block.costUsd)
        ? ` · $${block.costUsd.toFixed(4)}${block.costUnknown ? '+?' : ''}` : '';
      el.querySelector('.label').textContent = block.phase === 'start'
        ? `${name} started` : `${name} ${block.aborted ? 'aborted' : 'complete'}${cost}`;
      if (block.phase === 'end') el.dataset.costUsd = Number.isFinite(block.costUsd) ? String(block.costUsd) : '';
      break;
    }
    case 'tool':
      updateTool(block, el);
      break;
    case 'file':
      updateFile(block, el);
      break;
    case 'approval':
      updateApproval(block, el, ctx);
      break;
    case 'error':
      el.querySelector('.text').textContent = block.text;
      el.classList.toggle('fatal', block.fatal);
      break;
    default:
      break;
  }
}

function updateTool(block, el) {
  el.dataset.status = block.status;
  el.querySelector('.cmd').textContent = commandText(block.command);
  el.querySelector('.cwd').textContent = block.cwd || '';
  const meta = [];
  if (block.status === 'running') meta.push('running…');
  else {
    if (block.exitCode !== undefined && block.exitCode !== null) meta.push(`exit ${block.exitCode}`);
    else if (block.status) meta.push(block.status);
    const dur = fmtDuration(block.duration);
    if (dur) meta.push(dur);
  }
  el.querySelector('.meta').textContent = meta.join(' · ');
  const out = el.querySelector('.out');
  out.replaceChildren();
  if (block.stdout) out.append(block.stdout);
  if (block.stderr) out.append(h('span', { class: 'stderr' }, block.stderr));
  if (block.truncated) out.append(h('span', { class: 'note' }, '\n[output truncated]'));
  out.hidden = !block.stdout && !block.stderr;
}

function updateFile(block, el) {
  el.querySelector('.status').textContent = block.status || '';
  const list = el.querySelector('.changes');
  list.replaceChildren(...(block.changes || []).map((c) => {
    const row = h('li', null, h('span', { class: `kind kind-${c.kind}` }, c.kind || 'change'), ' ', h('code', null, c.path || '?'));
    if (c.diff) row.append(h('details', null, h('summary', null, 'diff'), h('pre', { class: 'diff' }, c.diff)));
    return row;
  }));
}

function updateApproval(block, el, ctx) {
  el.querySelector('.cmd').textContent = commandText(block.command);
  el.querySelector('.reason').textContent = [block.reason, block.cwd ? `in ${block.cwd}` : null].filter(Boolean).join(' · ');
  const status = el.querySelector('.status');
  const actions = el.querySelector('.actions');
  el.querySelector('.err').textContent = block.error ? `Not sent: ${block.error}` : '';
  if (block.resolved) {
    const r = block.resolved;
    el.dataset.status = r.approved ? 'approved' : 'denied';
    const by = r.source && r.source !== 'client' ? ` (${r.source})` : '';
    status.textContent = `${r.approved ? 'approved' : 'denied'}${r.decision ? `: ${decisionLabel(r.decision)}` : ''}${by}`;
    actions.replaceChildren();
    return;
  }
  el.dataset.status = block.sending ? 'sending' : 'pending';
  status.textContent = block.sending ? `sending ${block.sending}…` : 'waiting for you';
  const decisions = block.decisions && block.decisions.length ? block.decisions : ['accept', 'decline'];
  if (actions.childElementCount !== decisions.length) {
    actions.replaceChildren(...decisions.map((dec) => h('button', {
      type: 'button',
      class: decisionApproves(dec) ? 'primary' : '',
      dataset: { decision: typeof dec === 'string' ? dec : 'amend' },
      onclick: () => ctx.approve(block, dec),
    }, decisionLabel(dec))));
  }
  for (const b of actions.children) b.disabled = !!block.sending;
}

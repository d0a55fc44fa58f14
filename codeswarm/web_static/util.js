// Small DOM and formatting helpers shared by the page modules.

/** Create an element: h('div', {class: 'x', onclick: fn}, child, 'text', ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'class') el.className = value;
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key in el && typeof value !== 'string') el[key] = value;
      else el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Random UUIDv4 that also works outside secure contexts (crypto.randomUUID does not). */
export function uuid() {
  if (globalThis.crypto && crypto.randomUUID && globalThis.isSecureContext) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export function fmtTokens(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1000).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

export function fmtAge(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

export function fmtDuration(d) {
  if (!d) return null;
  const ms = (d.secs || 0) * 1000 + (d.nanos || 0) / 1e6;
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(0)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}

export function commandText(cmd) {
  if (cmd === null || cmd === undefined) return '';
  if (typeof cmd === 'string') return cmd;
  if (Array.isArray(cmd)) {
    // ["bash", "-lc", "echo hi"] reads better as its script.
    if (cmd.length === 3 && /(^|\/)(ba|z)?sh$/.test(cmd[0]) && /^-l?c$/.test(cmd[1])) return cmd[2];
    return cmd.map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(' ');
  }
  if (cmd.changes) return `apply changes to ${Object.keys(cmd.changes).length || cmd.changes.length} file(s)`;
  if (cmd.tool_name) return `${cmd.tool_name} ${JSON.stringify(cmd.input ?? {})}`;
  return JSON.stringify(cmd);
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : '?';
}

/** Epoch seconds now. */
export function nowSec() {
  return Date.now() / 1000;
}

/** US dollars, short: $0.0042, $1.37, $120. */
export function fmtCost(usd) {
  if (!Number.isFinite(usd)) return '–';
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  if (usd < 100) return `$${usd.toFixed(2)}`;
  return `$${Math.round(usd)}`;
}

/** Bytes, short: 512 B, 12.3 KB, 4.0 MB. */
export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// Markdown for assistant and reasoning text, rendered safely: the result is built from
// createElement / createTextNode only, never from HTML strings, so nothing in the text can become
// markup, a script or a request. Raw HTML in the source is shown as the text it is; links keep
// only http(s) targets (anything else stays text) and open with rel=noopener; images become plain
// links, because an <img> would fetch on render.
//
// Covers what agents write: paragraphs, headings, fenced and indented code, block quotes, bullet
// and numbered lists (one level of nesting by indentation), tables, rules, and inline code, bold,
// italic, strike-through, links and bare URLs. Everything else is literal text.

const MAX_MARKDOWN_CHARS = 200_000; // beyond this, the text stays plain (cheap and still readable)
const MAX_DEPTH = 4; // nested quotes/lists deeper than this are shown flat

/** A DocumentFragment rendering `text` as Markdown. */
export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  if (typeof text !== 'string' || !text) return frag;
  if (text.length > MAX_MARKDOWN_CHARS) {
    frag.append(el('p', null, text));
    return frag;
  }
  blocks(text.replace(/\r\n?/g, '\n').split('\n'), frag, 0);
  return frag;
}

/** Only absolute http(s) URLs become links; returns the normalized href or null. */
export function safeHref(raw) {
  if (typeof raw !== 'string') return null;
  const s = raw.trim();
  if (!/^https?:\/\//i.test(s)) return null;
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// ---------------------------------------------------------------------------------- blocks

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const BULLET = /^( {0,3})([-*+])\s+(.*)$/;
const ORDERED = /^( {0,3})(\d{1,9})[.)]\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

function blocks(lines, parent, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    let m = line.match(FENCE);
    if (m) {
      const fence = m[1];
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence)) body.push(lines[i++]);
      i += 1; // the closing fence (or the end of an unterminated block)
      const code = el('code', null, body.join('\n'));
      if (m[2]) code.dataset.lang = m[2].slice(0, 32);
      parent.append(el('pre', 'md-code', code));
      continue;
    }
    if (/^( {4}|\t)/.test(line)) {
      const body = [];
      while (i < lines.length && (/^( {4}|\t)/.test(lines[i]) || !lines[i].trim())) body.push(lines[i++].replace(/^( {4}|\t)/, ''));
      while (body.length && !body[body.length - 1].trim()) body.pop();
      parent.append(el('pre', 'md-code', el('code', null, body.join('\n'))));
      continue;
    }
    m = line.match(HEADING);
    if (m) {
      const h = el(`h${Math.min(6, m[1].length + 2)}`, 'md-h');
      inline(m[2], h);
      parent.append(h);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(el('hr'));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && lines[i].trim() && QUOTE.test(lines[i])) body.push(lines[i++].match(QUOTE)[1]);
      const q = el('blockquote');
      if (depth < MAX_DEPTH) blocks(body, q, depth + 1);
      else q.append(body.join('\n'));
      parent.append(q);
      continue;
    }
    if (BULLET.test(line) || ORDERED.test(line)) {
      i = list(lines, i, parent, depth);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      i = table(lines, i, parent);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) para.push(lines[i++]);
    if (!para.length) para.push(lines[i++]); // a line no rule took: keep it as text
    const p = el('p');
    inline(para.join('\n'), p);
    parent.append(p);
  }
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
    || BULLET.test(line) || ORDERED.test(line)
    || (line.includes('|') && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes('-'));
}

function list(lines, i, parent, depth) {
  const first = lines[i].match(BULLET) || lines[i].match(ORDERED);
  const ordered = !lines[i].match(BULLET);
  const box = el(ordered ? 'ol' : 'ul');
  if (ordered && first[2] !== '1') box.start = Math.min(1e9, Number(first[2]));
  let item = null;
  let body = [];
  const flush = () => {
    if (!item) return;
    const [head, ...rest] = body;
    inline(head, item);
    if (rest.length) {
      if (depth < MAX_DEPTH) blocks(rest, item, depth + 1);
      else item.append(`\n${rest.join('\n')}`);
    }
    box.append(item);
  };
  while (i < lines.length) {
    const line = lines[i];
    const m = ordered ? line.match(ORDERED) : line.match(BULLET);
    if (m && m[1].length <= 1) {
      flush();
      item = el('li');
      body = [m[3]];
      i += 1;
    } else if (line.trim() && /^\s{2,}/.test(line)) {
      body.push(line.replace(/^\s{2,4}/, ''));
      i += 1;
    } else if (!line.trim() && i + 1 < lines.length && /^\s{2,}\S/.test(lines[i + 1])) {
      body.push('');
      i += 1;
    } else if (line.trim() && !startsBlock(lines, i) && item && body.length === 1) {
      body[0] += `\n${line}`; // lazy continuation of the item's first line
      i += 1;
    } else {
      break;
    }
  }
  flush();
  parent.append(box);
  return i;
}

function cells(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const out = [];
  let cur = '';
  for (let k = 0; k < s.length; k++) {
    if (s[k] === '\\' && s[k + 1] === '|') {
      cur += '|';
      k += 1;
    } else if (s[k] === '|') {
      out.push(cur.trim());
      cur = '';
    } else {
      cur += s[k];
    }
  }
  out.push(cur.trim());
  return out;
}

function table(lines, i, parent) {
  const head = cells(lines[i]);
  const aligns = cells(lines[i + 1]).map((c) => (c.endsWith(':') ? (c.startsWith(':') ? 'center' : 'right') : c.startsWith(':') ? 'left' : ''));
  const thead = el('thead');
  const hr = el('tr');
  head.forEach((c, k) => {
    const th = el('th');
    if (aligns[k]) th.style.textAlign = aligns[k];
    inline(c, th);
    hr.append(th);
  });
  thead.append(hr);
  const tbody = el('tbody');
  i += 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const tr = el('tr');
    const row = cells(lines[i]);
    for (let k = 0; k < head.length; k++) {
      const td = el('td');
      if (aligns[k]) td.style.textAlign = aligns[k];
      inline(row[k] ?? '', td);
      tr.append(td);
    }
    tbody.append(tr);
    i += 1;
  }
  parent.append(el('div', 'md-table', el('table', null, thead, tbody)));
  return i;
}

// ---------------------------------------------------------------------------------- inline

// One scanner, left to right; the first construct that matches at a position wins.
const INLINE = [
  [/(`+)([^`][\s\S]{0,4000}?)\1(?!`)/y, (m, out) => out.append(el('code', null, m[2].replace(/^ (.*) $/s, '$1')))],
  [/!?\[([^\]\n]{0,1000})\]\(\s*<?([^()\s<>]{0,2048})>?(?:\s+"[^"\n]{0,200}")?\s*\)/y, (m, out) => link(m[1], m[2], out, m[0])],
  [/<(https?:\/\/[^\s<>]{1,2048})>/iy, (m, out) => link(m[1], m[1], out, m[0])],
  [/https?:\/\/[^\s<>()\[\]"']{0,2048}[^\s<>()\[\].,;:!?'"*_~]/iy, (m, out) => link(m[0], m[0], out, m[0])],
  [/\*\*(?=\S)([\s\S]{0,4000}?\S)\*\*/y, (m, out, d) => nest('strong', m[1], out, d)],
  [/__(?=\S)([\s\S]{0,4000}?\S)__(?![A-Za-z0-9_])/y, (m, out, d) => nest('strong', m[1], out, d)],
  [/~~(?=\S)([\s\S]{0,4000}?\S)~~/y, (m, out, d) => nest('del', m[1], out, d)],
  [/\*(?=[^\s*])([\s\S]{0,4000}?[^\s*])\*(?!\*)/y, (m, out, d) => nest('em', m[1], out, d)],
  [/_(?=[^\s_])([\s\S]{0,4000}?[^\s_])_(?![A-Za-z0-9_])/y, (m, out, d) => nest('em', m[1], out, d)],
];

function nest(tag, text, out, depth) {
  const e = el(tag);
  inline(text, e, depth + 1);
  out.append(e);
}

function link(label, href, out, source) {
  const safe = safeHref(href);
  if (!safe) {
    out.append(document.createTextNode(source)); // not a web link: the text as written
    return;
  }
  const a = document.createElement('a');
  a.href = safe;
  a.rel = 'noopener noreferrer';
  a.target = '_blank';
  a.textContent = label || safe;
  out.append(a);
}

function inline(text, out, depth = 0) {
  if (depth > MAX_DEPTH) {
    out.append(document.createTextNode(text));
    return;
  }
  let plain = '';
  let i = 0;
  const flushPlain = () => {
    if (plain) out.append(document.createTextNode(plain));
    plain = '';
  };
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length && /[\\`*_{}[\]()#+\-.!|~<>]/.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '\n') {
      // Line breaks stay line breaks: agents write line-oriented text.
      flushPlain();
      out.append(el('br'));
      i += 1;
      continue;
    }
    // Underscores inside a word (snake_case, __dunder__) are not emphasis; a bare URL starts a
    // word (not inside quotes such as src="http://...").
    const prev = i > 0 ? text[i - 1] : ' ';
    const midWord = (c === '_' && /[A-Za-z0-9]/.test(prev)) || ((c === 'h' || c === 'H') && !/[\s*_~(]/.test(prev));
    if (!midWord && '`![<hH*_~'.includes(c)) {
      let hit = null;
      for (const [re, make] of INLINE) {
        re.lastIndex = i;
        const m = re.exec(text);
        if (m) {
          hit = [m, make];
          break;
        }
      }
      if (hit) {
        flushPlain();
        hit[1](hit[0], out, depth);
        i += hit[0][0].length;
        continue;
      }
    }
    plain += c;
    i += 1;
  }
  flushPlain();
}

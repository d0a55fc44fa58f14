// The persona picker of the launch form: an AGENTS.md file, or a directory holding AGENTS.md and
// skills/ (every file under skills/ goes to .agents/skills/<path> in each node workspace,
// PROTOCOL.md 4.1 agents_bundle). Files are read in the browser; what will be sent is listed
// before launching, and anything that cannot be sent is said, not dropped silently.

import { fmtBytes, h } from './util.js';

// The whole launch command must stay under the router's 1 MiB line limit, JSON escaping included.
const MAX_BUNDLE_BYTES = 768 * 1024;
const MAX_SKILL_FILES = 500;

export class PersonaPicker {
  constructor() {
    this.bundle = null; // agents_bundle to send, or null
    this.error = '';
    this.file = h('input', { id: 'persona-file', type: 'file', accept: '.md,text/markdown,text/plain', onchange: () => this.readFile() });
    this.dir = h('input', { id: 'persona-dir', type: 'file', webkitdirectory: true, multiple: true, onchange: () => this.readDir() });
    this.summary = h('p', { class: 'hint persona-summary', role: 'status', 'aria-live': 'polite' });
    this.clearBtn = h('button', { type: 'button', class: 'persona-clear', hidden: true, onclick: () => this.clear() }, 'Clear persona');
    this.el = h('fieldset', { class: 'persona' },
      h('legend', null, 'Persona'),
      h('label', { for: 'persona-file' }, 'AGENTS.md file', this.file),
      h('label', { for: 'persona-dir' }, 'or a directory (AGENTS.md + skills/)', this.dir),
      h('div', { class: 'persona-foot' }, this.summary, this.clearBtn));
  }

  clear() {
    this.bundle = null;
    this.error = '';
    this.file.value = '';
    this.dir.value = '';
    this.show('');
  }

  show(text, isError = false) {
    this.summary.textContent = text;
    this.summary.classList.toggle('form-error', isError);
    this.clearBtn.hidden = !this.bundle && !isError;
  }

  async readFile() {
    this.dir.value = '';
    const f = this.file.files[0];
    if (!f) return this.clear();
    if (f.size > MAX_BUNDLE_BYTES) return this.fail(`${f.name} is ${fmtBytes(f.size)}; at most ${fmtBytes(MAX_BUNDLE_BYTES)} can be sent`);
    const text = await readText(f);
    if (text === null) return this.fail(`${f.name} is not UTF-8 text`);
    this.bundle = { mode: 'file', agents_md_content: text, skills_files: [] };
    this.error = '';
    this.show(`AGENTS.md from ${f.name} (${fmtBytes(f.size)})`);
    return undefined;
  }

  async readDir() {
    this.file.value = '';
    const files = [...this.dir.files];
    if (!files.length) return this.clear();
    // webkitRelativePath is "<picked dir>/<path inside it>".
    const inside = (f) => f.webkitRelativePath.split('/').slice(1).join('/');
    const agents = files.find((f) => inside(f) === 'AGENTS.md');
    const skills = files.filter((f) => inside(f).startsWith('skills/') && !inside(f).split('/').some((p) => p.startsWith('.')));
    const skipped = files.length - skills.length - (agents ? 1 : 0);
    if (!agents && !skills.length) return this.fail('the directory has neither AGENTS.md nor a skills/ directory');
    if (skills.length > MAX_SKILL_FILES) return this.fail(`${skills.length} files under skills/; at most ${MAX_SKILL_FILES}`);
    const total = files.reduce((n, f) => n + (f === agents || skills.includes(f) ? f.size : 0), 0);
    if (total > MAX_BUNDLE_BYTES) return this.fail(`the persona is ${fmtBytes(total)}; at most ${fmtBytes(MAX_BUNDLE_BYTES)} can be sent`);
    const bundle = { mode: 'directory', agents_md_content: '', skills_files: [] };
    if (agents) {
      const text = await readText(agents);
      if (text === null) return this.fail('AGENTS.md is not UTF-8 text');
      bundle.agents_md_content = text;
    }
    const binary = [];
    for (const f of skills) {
      const text = await readText(f);
      if (text === null) binary.push(inside(f));
      else bundle.skills_files.push({ path: inside(f).slice('skills/'.length), content: text });
    }
    if (binary.length) return this.fail(`not text, cannot be sent: ${binary.slice(0, 3).join(', ')}${binary.length > 3 ? ', …' : ''}`);
    this.bundle = bundle;
    this.error = '';
    const root = files[0].webkitRelativePath.split('/')[0];
    this.show(`${root}/: ${agents ? 'AGENTS.md + ' : 'no AGENTS.md, '}${bundle.skills_files.length} skill file${bundle.skills_files.length === 1 ? '' : 's'}` +
      ` (${fmtBytes(total)})${skipped ? `; ${skipped} other file${skipped === 1 ? '' : 's'} ignored` : ''}`);
    return undefined;
  }

  fail(message) {
    this.bundle = null;
    this.error = message;
    this.show(message, true);
  }
}

/** A file's text, or null when it is not valid UTF-8 (or holds NUL bytes). */
async function readText(file) {
  const buf = await file.arrayBuffer();
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
    return text.includes('\u0000') ? null : text;
  } catch {
    return null;
  }
}

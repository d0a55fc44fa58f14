// The launch form, built from providers_list: preset picker, node count, alias (+ auto-route),
// prompts, the persona (AGENTS.md text, file or directory), and the preset's launch_fields
// (text/number/boolean/select, which become provider_params), grouped by its launch_panels.
//
// launch_panels is passed through from the config unchanged (PROTOCOL.md 9.4). Each entry is
// drawn as a group: a string is a heading; an object gives `title`/`label`, an optional
// `description`, and `fields` (launch field keys) that are drawn inside it. Fields no panel
// claims come first; anything else in a panel is shown as text, never as markup.

import { PersonaPicker } from './persona.js';
import { h } from './util.js';

const ALIAS = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/; // as the router checks it

export class LaunchForm {
  /** @param {(payload: object, done: (error: string|null) => void) => void} onLaunch */
  constructor(onLaunch) {
    this.onLaunch = onLaunch;
    this.providers = [];
    this.fieldsBox = h('div', { class: 'fields' });
    this.defaultsLine = h('p', { class: 'hint' });
    this.error = h('p', { class: 'form-error', role: 'alert' });
    this.provider = h('select', { id: 'launch-provider', name: 'provider', required: true,
      onchange: () => this.renderFields() });
    this.nodes = h('input', { id: 'launch-nodes', name: 'nodes', type: 'number', min: '1', max: '1024', value: '1', required: true });
    this.systemPrompt = h('textarea', { id: 'launch-prompt', name: 'system_prompt', rows: 3,
      placeholder: 'First prompt for every node (optional)' });
    this.agentsMd = h('textarea', { id: 'launch-agents', name: 'agents_md_content', rows: 4,
      placeholder: 'Written as AGENTS.md in every node workspace (optional)' });
    this.alias = h('input', { id: 'launch-alias', name: 'alias', type: 'text', maxlength: '64', autocomplete: 'off',
      placeholder: 'e.g. reviewers (optional)' });
    this.autoRoute = h('input', { id: 'launch-auto-route', type: 'checkbox' });
    this.persona = new PersonaPicker();
    this.submit = h('button', { type: 'submit', class: 'primary' }, 'Launch swarm');
    this.el = h('form', { class: 'launch card', 'aria-labelledby': 'launch-title', onsubmit: (e) => this.send(e) },
      h('h2', { id: 'launch-title' }, 'Launch a swarm'),
      h('div', { class: 'row' },
        h('label', { for: 'launch-provider' }, 'Provider', this.provider),
        h('label', { for: 'launch-nodes', class: 'narrow' }, 'Nodes', this.nodes)),
      this.defaultsLine,
      h('div', { class: 'row' },
        h('label', { for: 'launch-alias' }, 'Alias', this.alias),
        h('label', { for: 'launch-auto-route', class: 'check auto-route',
          title: 'Routing directives in final answers (/swarm[alias]/idle …) are sent on automatically' },
        this.autoRoute, ' Auto-route answers')),
      h('label', { for: 'launch-prompt' }, 'System prompt', this.systemPrompt),
      this.fieldsBox,
      this.persona.el,
      h('details', { class: 'advanced' }, h('summary', null, 'AGENTS.md as text'),
        h('label', { for: 'launch-agents' }, 'AGENTS.md content (used when no persona file or directory is picked)', this.agentsMd)),
      this.error,
      h('div', { class: 'actions' }, this.submit));
  }

  setProviders(providers) {
    const keep = this.provider.value;
    this.providers = providers;
    this.provider.replaceChildren(...providers.map((p) => h('option', {
      value: p.id, disabled: !!p.disabled,
      title: p.disabled ? p.disabled_reason || 'disabled' : null,
    }, `${p.label || p.id}${p.disabled ? ' (disabled)' : ''}`)));
    const firstEnabled = providers.find((p) => !p.disabled);
    if (providers.some((p) => p.id === keep && !p.disabled)) this.provider.value = keep;
    else if (firstEnabled) this.provider.value = firstEnabled.id;
    this.submit.disabled = !firstEnabled;
    this.renderFields();
  }

  current() {
    return this.providers.find((p) => p.id === this.provider.value) || null;
  }

  renderFields() {
    const p = this.current();
    if (!p) {
      this.fieldsBox.replaceChildren();
      this.defaultsLine.textContent = this.providers.length ? '' : 'Waiting for the router’s provider list…';
      return;
    }
    const d = p.defaults || {};
    this.defaultsLine.textContent = [
      `${p.backend}`, d.worker_mode && `agent: ${d.worker_mode}`,
      d.approval_policy && `approvals: ${d.approval_policy}`, d.sandbox_mode && `sandbox: ${d.sandbox_mode}`,
    ].filter(Boolean).join(' · ');
    const fields = Array.isArray(p.launch_fields) ? p.launch_fields : [];
    const panels = Array.isArray(p.launch_panels) ? p.launch_panels : [];
    const claimed = new Set();
    for (const panel of panels) {
      if (panel && typeof panel === 'object' && Array.isArray(panel.fields)) panel.fields.forEach((k) => claimed.add(k));
    }
    const loose = fields.filter((f) => !claimed.has(f.key)).map((f) => this.fieldInput(f));
    const groups = panels.map((panel, i) => this.panel(panel, i, fields));
    this.fieldsBox.replaceChildren(...loose, ...groups);
  }

  panel(panel, i, fields) {
    if (typeof panel === 'string') return h('h3', { class: 'launch-panel-title' }, panel);
    if (!panel || typeof panel !== 'object') return h('p', { class: 'hint' }, String(panel));
    const title = panel.title ?? panel.label ?? panel.name ?? panel.id ?? `Panel ${i + 1}`;
    const keys = Array.isArray(panel.fields) ? panel.fields : [];
    const inner = keys.map((k) => fields.find((f) => f.key === k)).filter(Boolean).map((f) => this.fieldInput(f));
    const known = new Set(['title', 'label', 'name', 'id', 'description', 'fields']);
    const extra = Object.entries(panel).filter(([k]) => !known.has(k));
    return h('fieldset', { class: 'launch-panel', dataset: { panel: String(panel.id ?? i) } },
      h('legend', null, String(title)),
      panel.description ? h('p', { class: 'hint' }, String(panel.description)) : null,
      inner,
      extra.length ? h('dl', { class: 'panel-extra' }, extra.map(([k, v]) => [h('dt', null, k),
        h('dd', null, typeof v === 'string' ? v : JSON.stringify(v))])) : null);
  }

  fieldInput(f) {
    const id = `launch-field-${f.key}`;
    const dflt = f.default ?? (p_default(this.current(), f.key));
    let input;
    if (f.type === 'boolean') {
      input = h('input', { id, type: 'checkbox', dataset: { key: f.key, type: 'boolean' }, checked: !!dflt });
      return h('label', { for: id, class: 'check' }, input, ' ', f.label || f.key);
    }
    if (f.type === 'select') {
      input = h('select', { id, dataset: { key: f.key, type: 'select' }, required: !!f.required },
        f.required ? null : h('option', { value: '' }, '(default)'),
        ...(f.options || []).map((o) => h('option', { value: String(o.value) }, o.label ?? String(o.value))));
      if (dflt !== undefined && dflt !== null) input.value = String(dflt);
    } else {
      input = h('input', {
        id, type: f.type === 'number' ? 'number' : 'text', dataset: { key: f.key, type: f.type || 'text' },
        placeholder: f.placeholder || '', required: !!f.required,
        value: dflt === undefined || dflt === null ? '' : String(dflt),
      });
    }
    return h('label', { for: id }, f.label || f.key, input);
  }

  params() {
    const out = {};
    for (const input of this.fieldsBox.querySelectorAll('[data-key]')) {
      const { key, type } = input.dataset;
      if (type === 'boolean') out[key] = input.checked;
      else if (input.value === '') continue;
      else if (type === 'number') out[key] = Number(input.value);
      else {
        const opt = (this.current().launch_fields || []).find((f) => f.key === key);
        const match = opt && (opt.options || []).find((o) => String(o.value) === input.value);
        out[key] = match ? match.value : input.value;
      }
    }
    return out;
  }

  send(e) {
    e.preventDefault();
    const p = this.current();
    if (!p) return;
    const nodes = Number(this.nodes.value);
    if (!Number.isInteger(nodes) || nodes < 1) {
      this.error.textContent = 'Nodes must be a whole number ≥ 1.';
      this.nodes.focus();
      return;
    }
    const alias = this.alias.value.trim();
    if (alias && !ALIAS.test(alias)) {
      this.error.textContent = 'Alias: 1-64 letters, digits, “-” or “_”, starting with a letter or digit.';
      this.alias.focus();
      return;
    }
    if (this.persona.error) {
      this.error.textContent = `Persona: ${this.persona.error}`;
      this.persona.dir.focus();
      return;
    }
    const payload = { provider: p.id, nodes, provider_params: this.params() };
    if (alias) payload.alias = alias;
    if (this.autoRoute.checked) payload.auto_route = true;
    if (this.systemPrompt.value.trim()) payload.system_prompt = this.systemPrompt.value;
    if (this.persona.bundle) payload.agents_bundle = this.persona.bundle;
    else if (this.agentsMd.value.trim()) payload.agents_md_content = this.agentsMd.value;
    this.error.textContent = '';
    this.submit.disabled = true;
    this.submit.textContent = 'Launching…';
    this.onLaunch(payload, (error) => {
      this.submit.disabled = false;
      this.submit.textContent = 'Launch swarm';
      this.error.textContent = error ? `Launch rejected: ${error}` : '';
    });
  }
}

function p_default(provider, key) {
  return provider && provider.defaults ? provider.defaults[key] : undefined;
}

// The launch form, built from providers_list: preset picker, node count, prompts, and the
// preset's launch_fields (text/number/boolean/select) which become provider_params.

import { h } from './util.js';

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
    this.submit = h('button', { type: 'submit', class: 'primary' }, 'Launch swarm');
    this.el = h('form', { class: 'launch card', 'aria-labelledby': 'launch-title', onsubmit: (e) => this.send(e) },
      h('h2', { id: 'launch-title' }, 'Launch a swarm'),
      h('div', { class: 'row' },
        h('label', { for: 'launch-provider' }, 'Provider', this.provider),
        h('label', { for: 'launch-nodes', class: 'narrow' }, 'Nodes', this.nodes)),
      this.defaultsLine,
      h('label', { for: 'launch-prompt' }, 'System prompt', this.systemPrompt),
      this.fieldsBox,
      h('details', { class: 'advanced' }, h('summary', null, 'AGENTS.md'),
        h('label', { for: 'launch-agents' }, 'AGENTS.md content', this.agentsMd)),
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
    this.fieldsBox.replaceChildren(...fields.map((f) => this.fieldInput(f)));
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
    const payload = { provider: p.id, nodes, provider_params: this.params() };
    if (this.systemPrompt.value.trim()) payload.system_prompt = this.systemPrompt.value;
    if (this.agentsMd.value.trim()) payload.agents_md_content = this.agentsMd.value;
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

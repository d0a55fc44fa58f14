// Projects (docs/PROJECTS.md): the list in the sidebar, and a project's view with its task graph,
// live. The router answers `project_list` / `project_status`; every project event makes the page
// ask for the status of the project it shows again (at most every PROJECT_REFRESH_MS), so the view
// is always the router's picture, never a guess. Tasks link to the node that runs them.
//
// Actions: Start (created), Cancel (created/running/integrating), Resume (failed/cancelled/
// completed/running/integrating) after a preview of what the resume will reset and run.

import { h, fmtAge, fmtCost } from './util.js';

const PROJECT_REFRESH_MS = 300;
const OPEN_PROJECT = new Set(['created', 'running', 'integrating']);
const RESUMABLE = new Set(['failed', 'cancelled', 'completed', 'running', 'integrating']);

export class Projects {
  /** @param {{store: object, send: (cmd: string, payload: object) => string|null, listEl: Element}} o */
  constructor({ store, send, listEl }) {
    this.store = store;
    this.send = send;
    this.listEl = listEl;
    this.list = new Map(); // project_id -> summary
    this.status = null; // the shown project's status (project_status)
    this.shown = null; // project id of the view, or null
    this.preview = null; // {project_id, ...project_resume_preview}
    this.view = null;
    this.dirty = true;
    this.available = false; // the router answered project_list at least once
    this.refreshTimer = null;
  }

  /** Handle an event; true when it was a project event. */
  apply(env) {
    const d = env.data || {};
    const name = env.event || '';
    if (name === 'project_list') {
      this.available = true;
      this.list = new Map((d.projects || []).filter((p) => p && p.project_id).map((p) => [p.project_id, p]));
      this.dirty = true;
      return true;
    }
    if (name === 'project_status') {
      if (d.project && d.project.project_id === this.shown) this.status = d.project;
      if (d.project) this.list.set(d.project.project_id, { ...this.list.get(d.project.project_id), ...summaryOf(d.project) });
      this.dirty = true;
      return true;
    }
    if (name === 'project_resume_preview') {
      this.preview = { ...d, project_id: d.project_id ?? this.shown };
      this.dirty = true;
      return true;
    }
    if (name === 'projects_updated' && d.project && d.project.project_id) {
      this.available = true;
      this.list.set(d.project.project_id, d.project);
      this.dirty = true;
    }
    if (!name.startsWith('project')) {
      // a task's usage or a project budget event changes the shown project's spend (docs/SPEND.md);
      // the event is still the node's or the store's (false)
      if (typeof d.project_id === 'string' && d.project_id === this.shown
          && (name === 'usage' || d.scope === 'project')) this.refresh();
      if (d.scope === 'project' && d.project_id && name.startsWith('budget_')) {
        const p = this.list.get(d.project_id);
        if (p) {
          this.list.set(d.project_id, { ...p, spend_usd: d.spend_usd ?? p.spend_usd, budget_usd: name === 'budget_updated' ? d.budget_usd : p.budget_usd,
            budget_state: name === 'budget_exceeded' ? 'exceeded' : name === 'budget_warning' ? 'warning' : d.budget_state ?? p.budget_state });
          this.dirty = true;
        }
      }
      return false;
    }
    if (d.project_id && d.project_id === this.shown) this.refresh();
    return true;
  }

  refresh() {
    if (this.refreshTimer || !this.shown) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      if (this.shown) this.send('project_status', { project_id: this.shown });
    }, PROJECT_REFRESH_MS);
  }

  show(projectId, mainEl) {
    this.shown = projectId;
    this.status = null;
    this.preview = null;
    this.mainEl = mainEl;
    if (projectId) this.send('project_status', { project_id: projectId });
    this.dirty = true;
  }

  flush() {
    if (!this.dirty) return;
    this.dirty = false;
    this.renderList();
    if (this.shown && this.mainEl) this.renderView();
  }

  renderList() {
    const items = [...this.list.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0));
    this.listEl.closest('.projects-nav').hidden = !this.available && !items.length;
    this.listEl.replaceChildren(...(items.length ? items.map((p) => h('li', null, h('a', {
      href: `#/project/${encodeURIComponent(p.project_id)}`,
      class: `project-item${p.project_id === this.shown ? ' selected' : ''}`,
      dataset: { project: p.project_id, state: p.state },
      'aria-current': p.project_id === this.shown ? 'page' : null,
    }, h('span', { class: `badge pstate-${p.state}` }, p.state), ' ', h('span', { class: 'name' }, p.name || p.project_id),
    h('span', { class: 'counts' }, countsText(p.tasks)),
    Number.isFinite(p.spend_usd) ? h('span', { class: `spend${p.budget_state && p.budget_state !== 'ok' ? ` budget-${p.budget_state}` : ''}` },
      ` ${fmtCost(p.spend_usd)}${p.budget_usd ? ` / ${fmtCost(p.budget_usd)}` : ''}`) : null))) : [h('li', { class: 'empty' }, 'No projects.')]));
  }

  renderView() {
    const p = this.status;
    if (!p) {
      this.mainEl.replaceChildren(h('p', { class: 'hint card' }, 'Loading project…'));
      return;
    }
    const now = this.store.now();
    const act = (command, label, cls = '') => h('button', { type: 'button', class: `${cls} project-${command}`,
      onclick: () => this.action(command, p.project_id) }, label);
    const actions = [];
    if (p.state === 'created') actions.push(act('start', 'Start', 'primary'));
    if (RESUMABLE.has(p.state)) actions.push(act('resume_preview', 'Resume…'));
    if (OPEN_PROJECT.has(p.state)) actions.push(act('cancel', 'Cancel project', 'danger'));
    const facts = [
      ['Repo', p.repo], ['Base', p.base], ['Tasks', countsText(p.tasks_count || countStates(p.tasks))],
      ['Swarms', (p.swarms || []).map((id) => h('a', { href: `#/swarm/${id}`, class: 'swarm-link' }, this.swarmName(id)))],
      ['Age', p.created_at ? fmtAge(now - p.created_at) : '–'],
    ];
    facts.push(['Spend', spendFact(p)]);
    if (p.integration_branch) facts.push(['Integration', `${p.integration_branch}${p.integration_commit ? ` @ ${String(p.integration_commit).slice(0, 10)}` : ''}`]);
    if (p.error) facts.push(['Error', p.error]);
    const root = h('section', { class: 'project-view', dataset: { project: p.project_id, state: p.state }, 'aria-label': 'Project' },
      h('header', { class: 'detail-head card' },
        h('div', { class: 'title-row' }, h('h2', null, 'Project ', h('code', null, p.name || p.project_id)),
          h('span', { class: `badge pstate-${p.state}` }, p.state), h('span', { class: 'spacer' }), actions),
        h('dl', { class: 'facts' }, facts.map(([k, v]) => h('div', { class: 'fact' }, h('dt', null, k), h('dd', { dataset: { fact: k.toLowerCase() } }, v))))),
      this.previewBox(p),
      h('section', { class: 'card task-graph', 'aria-label': 'Task graph' }, h('h3', null, 'Task graph'), this.graph(p.tasks || [])));
    this.mainEl.replaceChildren(root);
  }

  previewBox(p) {
    const pv = this.preview;
    if (!pv || pv.project_id !== p.project_id) return null;
    const list = (label, xs) => h('div', { class: 'pv-row' }, h('strong', null, `${label}: `), (xs && xs.length) ? xs.join(', ') : 'none');
    return h('section', { class: 'card resume-preview', role: 'group', 'aria-label': 'Resume preview' },
      h('h3', null, 'Resume: what will happen'),
      list('Reset', pv.reset), list('Requeued', pv.requeue), list('Will run', pv.will_run), list('Missing branches', pv.missing_branches),
      h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => { this.preview = null; this.dirty = true; } }, 'Keep as is'),
        h('button', { type: 'button', class: 'primary project-resume', onclick: () => this.action('resume', p.project_id) }, 'Resume')));
  }

  /** Tasks in columns by depth (longest chain of dependencies before them), in the router's order. */
  graph(tasks) {
    const byId = new Map(tasks.map((t) => [t.id, t]));
    const depth = new Map();
    const depthOf = (t, seen = new Set()) => {
      if (depth.has(t.id)) return depth.get(t.id);
      if (seen.has(t.id)) return 0; // a cycle cannot come from the router; never loop on one
      seen.add(t.id);
      const deps = (t.depends_on || []).map((id) => byId.get(id)).filter(Boolean);
      const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
      depth.set(t.id, d);
      return d;
    };
    const columns = [];
    for (const t of tasks) {
      const d = depthOf(t);
      (columns[d] = columns[d] || []).push(t);
    }
    return h('div', { class: 'graph-cols' }, columns.map((col, i) => h('ol', { class: 'graph-col', 'aria-label': `Step ${i + 1}` },
      col.map((t) => this.taskCard(t)))));
  }

  taskCard(t) {
    const node = t.swarm_id && Number.isInteger(t.node_id)
      ? h('a', { href: `#/swarm/${t.swarm_id}/node/${t.node_id}`, class: 'node-link' }, `${this.swarmName(t.swarm_id)} · node ${t.node_id}`) : null;
    return h('li', { class: `task-card tstate-${t.state}`, dataset: { task: t.id, state: t.state } },
      h('div', { class: 'task-head' }, h('strong', null, t.id), h('span', { class: `badge tstate-${t.state}` }, t.state)),
      t.title ? h('div', { class: 'task-title' }, t.title) : null,
      (t.depends_on || []).length ? h('div', { class: 'task-deps' }, `after ${t.depends_on.join(', ')}`) : null,
      h('div', { class: 'task-meta' }, `attempts ${t.attempts ?? 0}`,
        Number.isFinite(t.spend_usd) ? h('span', { class: 'task-spend', dataset: { spendUsd: String(t.spend_usd) } }, ` · ${fmtCost(t.spend_usd)}`) : '',
        t.commit ? ` · ${String(t.commit).slice(0, 10)}` : ''),
      node, t.error ? h('div', { class: 'task-error' }, String(t.error).slice(0, 300)) : null);
  }

  swarmName(id) {
    const s = this.store.swarms.get(id);
    return s ? this.store.swarmName(s) : String(id).slice(0, 8);
  }

  action(command, projectId) {
    const name = { start: 'project_start', cancel: 'project_cancel', resume: 'project_resume', resume_preview: 'project_resume_preview' }[command];
    const rid = this.send(name, { project_id: projectId });
    if (!rid) {
      this.store.notify('error', 'Not connected to the router.');
      return;
    }
    this.store.begin(rid, command, `Project ${command.replace('_', ' ')}`, () => {});
    if (command === 'resume') this.preview = null;
    this.refresh();
    this.dirty = true;
  }
}

function countStates(tasks) {
  const out = {};
  for (const t of tasks || []) out[t.state] = (out[t.state] || 0) + 1;
  return out;
}

function countsText(counts) {
  if (!counts || typeof counts !== 'object') return '';
  const total = Object.values(counts).reduce((a, b) => a + (Number(b) || 0), 0);
  const done = counts.completed || 0;
  return `${done}/${total} done${counts.failed ? `, ${counts.failed} failed` : ''}${counts.running ? `, ${counts.running} running` : ''}`;
}

function summaryOf(p) {
  return { project_id: p.project_id, name: p.name, state: p.state, repo: p.repo, created_at: p.created_at,
    tasks: countStates(p.tasks), swarms: p.swarms, spend_usd: p.spend_usd, budget_usd: p.budget_usd,
    budget_state: p.budget_state };
}

/** The project's spend, with the budget bar the swarm view has (docs/SPEND.md). */
function spendFact(p) {
  const cost = Number.isFinite(p.spend_usd) ? p.spend_usd : 0;
  const spend = `${fmtCost(cost)}${p.cost_unknown ? ' (some usage unpriced)' : ''}`;
  if (!p.budget_usd) return h('span', { class: 'project-spend', dataset: { spendUsd: String(cost) } }, spend);
  return h('span', { class: `project-spend budget budget-${p.budget_state || 'ok'}`, dataset: { spendUsd: String(cost), budgetUsd: String(p.budget_usd) } },
    h('meter', { min: '0', max: String(p.budget_usd), low: String(0.8 * p.budget_usd), high: String(0.999 * p.budget_usd),
      optimum: '0', value: String(Math.min(cost, p.budget_usd)), 'aria-label': 'budget used' }),
    ` ${spend} of ${fmtCost(p.budget_usd)}${p.budget_state === 'exceeded' ? ' — exceeded, no task starts until it is raised' : ''}`);
}

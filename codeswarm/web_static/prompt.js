// The prompt box's routing prefixes, as the CLI and the routing directives spell them:
//
//   /all PROMPT                          every node of this swarm
//   /node[0,2-4] PROMPT                  those nodes of this swarm
//   /swarm[ALIAS]/idle PROMPT            queued for the first idle node of the swarm with that alias
//   /swarm[ALIAS]/all PROMPT             every node of that swarm (through its queue)
//   /swarm[ALIAS]/node[0,2-4] PROMPT     those nodes of that swarm (through its queue)
//
// Without a prefix the targets picked under the box apply. parseRoute() only reads the text;
// the preview under the box shows where it goes before anything is sent.

const SELECTOR = /^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$/;
const HEAD = /^\/(?:(all)|node\[([^\]]*)\]|swarm\[([^\]]*)\]\/(?:(idle|first-idle|all)|node\[([^\]]*)\]))(?=\s|$)/;
const ALIAS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** "0,2-4" -> [0, 2, 3, 4], or an error string; every index must be < count. */
export function expandSelector(text, count) {
  if (!SELECTOR.test(text)) return `not a node list: “${text}” (write e.g. 0,2-4)`;
  const out = new Set();
  for (const part of text.replace(/\s+/g, '').split(',')) {
    const [a, b = a] = part.split('-').map(Number);
    if (a > b) return `backwards range: ${part}`;
    if (b >= count) return `node ${b} does not exist (the swarm has ${count} node${count === 1 ? '' : 's'})`;
    if (b - a > 100000) return 'range too large';
    for (let i = a; i <= b; i++) out.add(i);
  }
  return [...out].sort((x, y) => x - y);
}

export function describeNodes(ids, count) {
  if (ids.length === count) return `all ${count} node${count === 1 ? '' : 's'}`;
  if (ids.length <= 8) return `node${ids.length === 1 ? '' : 's'} ${ids.join(', ')}`;
  return `${ids.length} nodes (${ids.slice(0, 4).join(', ')}, …)`;
}

/**
 * Where the text goes. Returns one of
 *   {kind: 'plain', content}                                   no prefix: the picked targets apply
 *   {kind: 'inject', nodes: 'all'|string, ids, content, preview}
 *   {kind: 'enqueue', target, selector, nodes, ids, content, preview}
 *   {kind: 'error', error}
 * `swarm` is the swarm the box belongs to; `byAlias(alias)` finds an active swarm.
 */
export function parseRoute(text, swarm, byAlias) {
  const m = text.match(HEAD);
  if (!m) return { kind: 'plain', content: text };
  const content = text.slice(m[0].length).trim();
  const [, all, here, alias, kw, there] = m;
  if (all || here !== undefined) {
    let ids = swarm.nodes.map((n) => n.id);
    let nodes = 'all';
    if (here !== undefined) {
      const r = expandSelector(here, swarm.nodeCount);
      if (typeof r === 'string') return { kind: 'error', error: r };
      ids = r;
      nodes = here.replace(/\s+/g, '');
    }
    if (!content) return { kind: 'error', error: 'write the prompt after the prefix' };
    return { kind: 'inject', nodes, ids, content, preview: `→ ${describeNodes(ids, swarm.nodeCount)} of this swarm` };
  }
  if (!ALIAS.test(alias)) return { kind: 'error', error: `not an alias: “${alias}”` };
  const target = byAlias(alias);
  if (!target) return { kind: 'error', error: `no running swarm has the alias “${alias}”` };
  if (!content) return { kind: 'error', error: 'write the prompt after the prefix' };
  const name = `swarm ${alias}${target === swarm ? ' (this swarm)' : ''}`;
  if (kw === 'idle' || kw === 'first-idle') {
    return { kind: 'enqueue', target, selector: 'idle', nodes: null, ids: [], content,
      preview: `→ queued for the first idle node of ${name}` };
  }
  if (kw === 'all') {
    return { kind: 'enqueue', target, selector: 'all', nodes: null, ids: target.nodes.map((n) => n.id), content,
      preview: `→ all ${target.nodeCount} nodes of ${name} (through its queue)` };
  }
  const r = expandSelector(there, target.nodeCount);
  if (typeof r === 'string') return { kind: 'error', error: r };
  return { kind: 'enqueue', target, selector: 'nodes', nodes: there.replace(/\s+/g, ''), ids: r, content,
    preview: `→ ${describeNodes(r, target.nodeCount)} of ${name} (through its queue)` };
}

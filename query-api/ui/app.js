// Activity Audit web UI: one page over the public HTTP API (/api/v1/activity/…).
// State lives in the URL (filter, scope, data sources, range, live, selected entry, trace),
// so any view can be linked to. No build step: this file is served as is by query-api.
'use strict';

const TYPES = ['command', 'connection', 'fileaccess', 'kubernetes'];
const LABEL = { command: 'Commands', connection: 'Connections', fileaccess: 'File access', kubernetes: 'Kube exec' };
const PRESETS = { '10m': 600, '30m': 1800, '1h': 3600, '6h': 21600, '24h': 86400, '3d': 259200, '7d': 604800, '14d': 1209600 };
const SHELLS = ['sh', 'bash', 'zsh', 'ash', 'dash', 'ksh', 'fish', 'tcsh', 'csh', 'sshd', 'dropbear'];
const GROUPS = [
  ['Kubernetes request', ['verb', 'resource', 'subResource', 'command', 'container', 'stdin', 'user.username', 'user.groups', 'userAgent', 'sourceAddresses', 'auditId', 'responseCode', 'stages.started', 'stages.completed']],
  ['Command', ['comm', 'cmdline', 'exe', 'cwd', 'pid', 'ppid', 'pcomm', 'uid', 'username', 'userLoginUid', 'userLoginName', 'tty', 'loginShellId', 'loginShellDistance']],
  ['Connection', ['direction', 'l4protocol', 'clientIp', 'clientPort', 'serverIp', 'serverPort']],
  ['File', ['filename', 'directory', 'permissions']],
  ['Scope', ['kubernetes.cluster.name', 'kubernetes.namespace.name', 'kubernetes.workload.kind', 'kubernetes.workload.name', 'kubernetes.pod.name', 'kubernetes.pod.labels', 'kubernetes.namespace.labels', 'container.name', 'containerId', 'container.image']],
  ['Host', ['hostname', 'host.mac', 'kubernetes.node.name']],
  ['Trace', ['traceId', 'traceConfidence', 'traceLink', 'traceCandidates']],
];

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat(Infinity)) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
};

// ---------------------------------------------------------------------------------------
// State and the URL

const state = {
  filter: '', scope: '', types: new Set(), preset: '1h', from: null, to: null,
  live: false, entry: null, trace: null,
};
let attributes = []; // from supported-filters
let granted = [...TYPES];
let next = null; // cursor of the next (older) page
let loading = false;
let liveAbort = null;
let liveTimer = null;
let lastHistogram = null;

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.filter = p.get('filter') || '';
  state.scope = p.get('scope') || '';
  state.types = new Set((p.get('types') || '').split(',').filter((t) => TYPES.includes(t)));
  state.from = p.get('from') ? BigInt(p.get('from')) : null;
  state.to = p.get('to') ? BigInt(p.get('to')) : null;
  state.preset = state.from !== null ? 'custom' : (PRESETS[p.get('range')] ? p.get('range') : '1h');
  state.live = p.get('live') === '1';
  state.entry = p.get('entry');
  state.trace = p.get('trace');
}

function writeUrl(push) {
  const p = new URLSearchParams();
  if (state.filter) p.set('filter', state.filter);
  if (state.scope) p.set('scope', state.scope);
  if (state.types.size) p.set('types', [...state.types].join(','));
  if (state.preset === 'custom' && state.from !== null) {
    p.set('from', state.from.toString());
    p.set('to', state.to.toString());
  } else p.set('range', state.preset);
  if (state.live) p.set('live', '1');
  if (state.entry) p.set('entry', state.entry);
  if (state.trace) p.set('trace', state.trace);
  const url = `${location.pathname}?${p}`;
  if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
}

const nowNs = () => BigInt(Date.now()) * 1000000n;

function range() {
  if (state.preset === 'custom' && state.from !== null) return [state.from, state.to];
  const to = nowNs();
  return [to - BigInt(PRESETS[state.preset]) * 1000000000n, to];
}

function selection(withTypes = true) {
  const [from, to] = range();
  const p = [['from', from.toString()], ['to', to.toString()]];
  if (state.filter) p.push(['filter', state.filter]);
  if (state.scope) p.push(['scope', state.scope]);
  if (withTypes) for (const t of state.types) p.push(['types', t]);
  return p;
}

// ---------------------------------------------------------------------------------------
// The API

const token = () => localStorage.getItem('aa-token') || '';

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, params = [], signal) {
  const qs = params.length ? `?${new URLSearchParams(params)}` : '';
  const r = await fetch(`/api/v1/activity${path}${qs}`, { headers: { Authorization: `Bearer ${token()}` }, signal });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (r.status === 401) { signOut(body && body.error); throw new ApiError(401, body); }
  if (!r.ok) throw new ApiError(r.status, body);
  return body;
}

// ---------------------------------------------------------------------------------------
// Formatting

const pad = (n, w = 2) => String(n).padStart(w, '0');
function fmtTime(ns) {
  const d = new Date(Number(ns) / 1e6);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
const toLocalInput = (ns) => fmtTime(ns).slice(0, 19).replace(' ', 'T');
const fromLocalInput = (v) => BigInt(new Date(v).getTime()) * 1000000n;

function where(e) {
  if (e['kubernetes.pod.name']) {
    return [['kubernetes.cluster.name', e['kubernetes.cluster.name']], ['kubernetes.namespace.name', e['kubernetes.namespace.name']], ['kubernetes.pod.name', e['kubernetes.pod.name']]];
  }
  return [['hostname', e.hostname]];
}

function what(e) {
  switch (e.type) {
    case 'command': return [['cmdline', e.cmdline || e.comm], ['username', e.username]];
    case 'connection': return [['comm', e.comm], ['direction', e.direction], ['serverIp', e.serverIp], ['serverPort', e.serverPort]];
    case 'fileaccess': return [['comm', e.comm], ['permissions', e.permissions], ['filename', e.filename]];
    case 'kubernetes': return [['user.username', e['user.username']], ['subResource', e.subResource], ['container', e.container], ['command', e.command]];
    default: return [];
  }
}

// Columns when one data source is shown (otherwise: time, type, where, what).
const COLUMNS = {
  command: [['comm', 'Process'], ['cmdline', 'Command line'], ['username', 'User'], ['pid', 'PID'], ['loginShellDistance', 'Depth']],
  connection: [['comm', 'Process'], ['direction', 'Dir'], ['l4protocol', 'Proto'], ['clientIp', 'Client'], ['clientPort', 'Port'], ['serverIp', 'Server'], ['serverPort', 'Port']],
  fileaccess: [['comm', 'Process'], ['permissions', 'Access'], ['filename', 'File']],
  kubernetes: [['user.username', 'User'], ['subResource', 'Request'], ['container', 'Container'], ['command', 'Command'], ['sourceAddresses', 'Source IPs']],
};

function single() { return state.types.size === 1 ? [...state.types][0] : null; }

function renderHead() {
  const one = single();
  const cols = one ? ['Time', 'Where', ...COLUMNS[one].map(([, label]) => label)] : ['Time', 'Type', 'Where', 'What'];
  $('head').replaceChildren(el('tr', {}, cols.map((c) => el('th', {}, c))));
}

function summary(e) {
  return what(e).map(([, v]) => v).filter((v) => v !== undefined && v !== '').join(' ');
}

// ---------------------------------------------------------------------------------------
// Filters: quick include/exclude, and inline errors

const quote = (v) => `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
const known = (attr) => attributes.some((a) => a.name === attr);

function addCondition(attr, value, op) {
  const cond = `${attr} ${op} ${typeof value === 'number' ? value : quote(value)}`;
  const f = state.filter.trim();
  state.filter = !f ? cond : (/\bor\b/i.test(f) ? `(${f}) and ${cond}` : `${f} and ${cond}`);
  $('filter').value = state.filter;
  apply(true);
}

function quick(attr, value) {
  if (!known(attr) || value === undefined || value === '' || value === null) return null;
  const v = Array.isArray(value) ? value[0] : value;
  const stop = (f) => (ev) => { ev.stopPropagation(); f(); };
  return el('span', { class: 'qf' },
    el('button', { type: 'button', title: `${attr} = ${v}`, 'data-op': '=', onclick: stop(() => addCondition(attr, v, '=')) }, '='),
    el('button', { type: 'button', title: `${attr} != ${v}`, 'data-op': '!=', onclick: stop(() => addCondition(attr, v, '!=')) }, '≠'));
}

function val(attr, value) {
  return el('span', { class: 'val', 'data-attr': attr }, Array.isArray(value) ? value.join(', ') : String(value ?? ''), quick(attr, value));
}

function showError(err) {
  const box = $('filter-error');
  const input = $('filter');
  if (!err) { box.hidden = true; input.classList.remove('invalid'); return; }
  const b = err.body || {};
  if (b.parameter && typeof b.position === 'number') {
    const text = b.parameter === 'filter' ? state.filter : state.scope;
    box.textContent = `${b.parameter}: ${b.message}\n${text}\n${' '.repeat(b.position)}^`;
    if (b.parameter === 'filter') input.classList.add('invalid');
  } else {
    box.textContent = err.message;
  }
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------
// Autocompletion of attribute names and values

let suggestions = [];
let active = 0;
let navigated = false; // the user moved through the suggestions with the arrow keys
let suggestTimer = null;

function context(text) {
  const value = /([A-Za-z_][\w.]*)\s*(?:!=|=|\s(?:not\s+)?starts\s+with|\s(?:not\s+)?contains|\s(?:not\s+)?in\s*\((?:[^)]*,)?)\s*("?)([^"\s,()]*)$/i.exec(text);
  if (value && known(value[1])) return { kind: 'value', attr: value[1], prefix: value[3], start: text.length - value[3].length - value[2].length };
  const word = /(^|[\s(])([A-Za-z_][\w.]*)$/.exec(text);
  if (word && !/^(and|or|not|in|exists|starts|with|contains)$/i.test(word[2])) {
    const before = text.slice(0, text.length - word[2].length).trimEnd();
    if (!before || /(\(|\band|\bor|\bnot|"|\w)$/i.test(before)) return { kind: 'attr', prefix: word[2], start: text.length - word[2].length };
  }
  return null;
}

function closeSuggest() {
  clearTimeout(suggestTimer);
  $('suggest').hidden = true;
  suggestions = [];
  navigated = false;
}

function renderSuggest() {
  const ul = $('suggest');
  ul.replaceChildren(...suggestions.map((s, i) => el('li', {
    role: 'option', class: i === active ? 'active' : '', onmousedown: (ev) => { ev.preventDefault(); accept(i); },
  }, s.label, el('small', {}, s.hint || ''))));
  ul.hidden = suggestions.length === 0;
}

function accept(i) {
  const s = suggestions[i];
  const input = $('filter');
  const caret = input.selectionStart;
  const text = input.value;
  input.value = text.slice(0, s.start) + s.insert + text.slice(caret);
  const at = s.start + s.insert.length;
  input.setSelectionRange(at, at);
  closeSuggest();
  input.focus();
}

function suggest() {
  const input = $('filter');
  const ctx = context(input.value.slice(0, input.selectionStart));
  if (!ctx) { closeSuggest(); return; }
  if (ctx.kind === 'attr') {
    const p = ctx.prefix.toLowerCase();
    suggestions = attributes.filter((a) => a.name.toLowerCase().startsWith(p) && a.name !== ctx.prefix)
      .slice(0, 20).map((a) => ({ label: a.name, hint: `${a.type} · ${a.description}`, insert: `${a.name} `, start: ctx.start }));
    active = 0;
    renderSuggest();
    return;
  }
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(async () => {
    try {
      const params = selection().filter(([k]) => k !== 'filter');
      params.push(['attribute', ctx.attr], ['prefix', ctx.prefix], ['limit', '15']);
      const r = await api('/values', params);
      suggestions = r.data.map((v) => ({ label: v.value, hint: String(v.count), insert: `${quote(v.value)} `, start: ctx.start }));
      active = 0;
      renderSuggest();
    } catch (_) { closeSuggest(); }
  }, 120);
}

// ---------------------------------------------------------------------------------------
// Loading and rendering

async function refresh() {
  stopLive();
  showError(null);
  $('preset').value = state.preset;
  $('custom').hidden = state.preset !== 'custom';
  const [from, to] = range();
  if (state.preset === 'custom') { $('from').value = toLocalInput(from); $('to').value = toLocalInput(to); }
  $('range-label').textContent = `${fmtTime(from)} – ${fmtTime(to)}`;
  $('live').checked = state.live;
  $('filter').value = state.filter;
  $('scope').value = state.scope;
  renderSources(null);
  renderHead();
  $('rows').replaceChildren();
  $('more').textContent = 'Loading…';
  next = null;
  const results = await Promise.allSettled([loadHistogram(), loadPage(true), loadGroups()]);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    showError(failed.reason);
    $('more').textContent = '';
  }
  if (state.entry) openDetails(state.entry, false);
  if (state.trace) openTrace(state.trace, false);
  if (state.live) startLive();
}

async function loadHistogram() {
  const h = await api('/histogram', selection(false));
  lastHistogram = h;
  granted = Object.keys(h.totals);
  renderSources(h.totals);
  drawGraph(h);
}

function renderSources(totals) {
  $('sources').replaceChildren(...TYPES.map((t) => {
    const allowed = granted.includes(t);
    const on = state.types.size === 0 ? allowed : state.types.has(t);
    const count = totals && totals[t] !== undefined ? totals[t].toLocaleString() : '…';
    return el('button', {
      type: 'button', 'data-type': t, 'aria-pressed': String(on && allowed), disabled: allowed ? null : '',
      title: allowed ? '' : 'not granted to your token',
      onclick: () => {
        if (state.types.size === 0) state.types = new Set(granted);
        if (state.types.has(t)) state.types.delete(t); else state.types.add(t);
        if (state.types.size === granted.length) state.types.clear();
        apply(true);
      },
    }, `${LABEL[t]} `, el('span', { class: 'count' }, allowed ? count : '—'));
  }));
}

async function loadPage(first) {
  if (loading || (!first && !next)) return;
  loading = true;
  try {
    const params = first ? selection() : selection().filter(([k]) => k !== 'from' && k !== 'to');
    if (!first) params.push(['cursor', next]);
    params.push(['limit', '100']);
    const page = await api('/entries', params);
    if (first) {
      const more = page.page.totalExact === false ? '+' : '';
      $('total').textContent = `${page.page.total.toLocaleString()}${more} entries`;
    }
    for (const e of page.data) $('rows').append(row(e));
    next = page.page.next || null;
    $('more').textContent = next ? 'Scroll for more' : ($('rows').children.length ? 'End of range' : 'No activity matches');
  } finally {
    loading = false;
  }
}

function row(e, fresh) {
  const one = single();
  const place = el('td', {}, ...where(e).map(([a, v], i) => [i ? ' / ' : '', val(a, v)]));
  const cells = one
    ? [el('td', {}, fmtTime(e.timestamp)), place, ...COLUMNS[one].map(([a]) => el('td', { class: 'what' }, e[a] === undefined ? '' : val(a, e[a])))]
    : [el('td', {}, fmtTime(e.timestamp)),
      el('td', {}, el('span', { class: `type ${e.type}` }, e.type)),
      place,
      el('td', { class: 'what' }, ...what(e).filter(([, v]) => v !== undefined && v !== '').map(([a, v], i) => [i ? ' ' : '', val(a, v)]))];
  const tr = el('tr', { 'data-id': e.id, 'data-type': e.type, class: fresh ? 'fresh' : '', onclick: () => openDetails(e.id, true) }, cells);
  if (e.id === state.entry) tr.classList.add('selected');
  return tr;
}

async function loadGroups() {
  const g = await api('/groups', selection());
  const node = (n, path) => {
    const conds = [...path, cond(n)];
    return el('li', {},
      el('a', { onclick: () => { state.scope = conds.join(' and '); apply(true); }, title: conds.join(' and '), 'data-level': n.level },
        el('span', {}, el('span', { class: 'level' }, n.kind ? `${n.kind} ` : ''), n.name || '(none)'),
        el('span', { class: 'count' }, n.count.toLocaleString())),
      n.children && n.children.length ? el('ul', {}, n.children.map((c) => node(c, conds))) : null);
  };
  const tree = el('ul', {}, g.clusters.map((c) => node(c, [])));
  const hosts = g.hosts.length ? [el('h2', {}, 'Hosts'), el('ul', {}, g.hosts.map((h) => node(h, [])))] : [];
  $('group-tree').replaceChildren(tree, ...hosts);
  $('scope-options').replaceChildren(...g.clusters.map((c) => el('option', { value: cond(c) })));
}

function cond(n) {
  switch (n.level) {
    case 'cluster': return `kubernetes.cluster.name = ${quote(n.name)}`;
    case 'namespace': return `kubernetes.namespace.name = ${quote(n.name)}`;
    case 'workload': return `kubernetes.workload.name = ${quote(n.name)}`;
    case 'pod': return `kubernetes.pod.name = ${quote(n.name)}`;
    default: return `hostname = ${quote(n.name)}`;
  }
}

// ---------------------------------------------------------------------------------------
// The frequency graph: one line per data source, hover for counts, drag to zoom

const COLORS = { command: '#2457d6', connection: '#0f8b6d', fileaccess: '#c26a00', kubernetes: '#8a3ffc' };

function drawGraph(h) {
  const svg = $('graph');
  const W = svg.clientWidth || 800;
  const H = 140;
  const pad = { l: 40, r: 10, t: 10, b: 20 };
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const shown = Object.keys(h.counts).filter((t) => state.types.size === 0 || state.types.has(t));
  const n = h.buckets.length;
  const max = Math.max(1, ...shown.flatMap((t) => h.counts[t]));
  const x = (i) => pad.l + (n <= 1 ? 0 : (i * (W - pad.l - pad.r)) / (n - 1));
  const y = (v) => H - pad.b - (v * (H - pad.t - pad.b)) / max;
  const ns = 'http://www.w3.org/2000/svg';
  const mk = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const kids = [mk('line', { class: 'axis', x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b }),
    mk('text', { x: 2, y: pad.t + 8 }, max.toLocaleString()), mk('text', { x: 2, y: H - pad.b }, '0')];
  for (let k = 0; k < 5 && n > 0; k++) {
    const i = Math.round((k * (n - 1)) / 4);
    kids.push(mk('text', { x: Math.min(x(i), W - 110), y: H - 4 }, fmtTime(h.buckets[i]).slice(5, 19)));
  }
  for (const t of shown) {
    kids.push(mk('polyline', { fill: 'none', stroke: COLORS[t], 'stroke-width': 1.6, 'data-type': t, points: h.counts[t].map((v, i) => `${x(i)},${y(v)}`).join(' ') }));
  }
  const sel = mk('rect', { class: 'sel', x: 0, y: pad.t, width: 0, height: H - pad.t - pad.b });
  kids.push(sel);
  svg.replaceChildren(...kids);
  const index = (px) => Math.max(0, Math.min(n - 1, Math.round(((px - pad.l) * (n - 1)) / (W - pad.l - pad.r))));
  const px = (ev) => ((ev.clientX - svg.getBoundingClientRect().left) * W) / svg.clientWidth;
  let down = null;
  svg.onmousedown = (ev) => { down = px(ev); };
  svg.onmousemove = (ev) => {
    const p = px(ev);
    const i = index(p);
    const tip = $('tip');
    tip.textContent = `${fmtTime(h.buckets[i])}\n${shown.map((t) => `${LABEL[t]}: ${h.counts[t][i]}`).join('\n')}`;
    tip.style.left = `${Math.min(ev.clientX - svg.getBoundingClientRect().left + 12, svg.clientWidth - 200)}px`;
    tip.hidden = false;
    if (down !== null) { sel.setAttribute('x', Math.min(down, p)); sel.setAttribute('width', Math.abs(p - down)); }
  };
  svg.onmouseleave = () => { $('tip').hidden = true; };
  svg.onmouseup = (ev) => {
    const p = px(ev);
    const start = down;
    down = null;
    sel.setAttribute('width', 0);
    if (start === null || Math.abs(p - start) < 4) return;
    const [a, b] = [index(Math.min(start, p)), index(Math.max(start, p))];
    zoom(BigInt(Math.round(h.buckets[a])), BigInt(Math.round(h.buckets[b])) + BigInt(h.bucket));
  };
}

function zoom(from, to) {
  state.preset = 'custom';
  state.from = from;
  state.to = to;
  state.live = false;
  apply(true);
}

// ---------------------------------------------------------------------------------------
// Details and traces

async function openDetails(id, push) {
  state.entry = id;
  if (push) writeUrl(true);
  for (const tr of $('rows').children) tr.classList.toggle('selected', tr.dataset.id === id);
  let e;
  try { e = await api(`/entries/${encodeURIComponent(id)}`); } catch (err) { showError(err); return; }
  const shown = new Set(['id', 'type', 'tenant', 'revision']);
  const sections = [el('dl', {}, el('dt', {}, 'time'), el('dd', {}, fmtTime(e.timestamp)), el('dt', {}, 'type'), el('dd', {}, val('type', e.type)), el('dt', {}, 'id'), el('dd', {}, val('id', e.id)))];
  shown.add('timestamp');
  const section = (title, keys) => {
    const present = keys.filter((k) => e[k] !== undefined && !shown.has(k));
    if (!present.length) return;
    present.forEach((k) => shown.add(k));
    sections.push(el('h3', {}, title), el('dl', {}, present.map((k) => [el('dt', {}, k), el('dd', {}, val(k, e[k]))])));
  };
  for (const [title, keys] of GROUPS) section(title, keys);
  section('Additional details', Object.keys(e));
  $('detail-body').replaceChildren(...sections);
  const traceable = e.traceId || (e.traceCandidates && e.traceCandidates.length) ||
    (e.type === 'kubernetes' && ['exec', 'attach'].includes(e.subResource)) || SHELLS.includes(e.comm);
  $('trace-button').hidden = !traceable;
  $('trace-button').onclick = () => openTrace(e.id, true);
  $('details').hidden = false;
}

let lastTrace = null;

async function openTrace(id, push) {
  state.trace = id;
  if (push) writeUrl(true);
  const body = $('trace-body');
  body.replaceChildren(el('p', {}, 'Loading…'));
  $('trace').hidden = false;
  let t;
  try {
    t = await api(`/entries/${encodeURIComponent(id)}/trace`);
  } catch (err) {
    const b = err.body || {};
    body.replaceChildren(...[el('p', { class: 'error' }, err.message),
      b.candidates ? el('p', {}, `Candidate sessions: ${b.candidates.join(', ')} — ${b.reason || ''}`) : null].filter(Boolean));
    return;
  }
  lastTrace = t;
  const r = t.trace;
  const low = r.confidence < 0.9;
  const who = t.originRedacted ? '(not visible with your scope)' : r.user;
  const place = r.pod ? `${r.cluster} / ${r.namespace} / ${r.pod} · container ${r.container}${r.containerId ? ` (${r.containerId})` : ''}` : r.hostname;
  const start = r.start;
  const depth = {};
  const parent = Object.fromEntries(t.entries.filter((e) => e.parentEntryId).map((e) => [e.id, e.parentEntryId]));
  const depthOf = (id) => {
    if (depth[id] !== undefined) return depth[id];
    let d = 0; let at = id;
    while (parent[at] && d < 64) { d++; at = parent[at]; }
    depth[id] = d;
    return d;
  };
  const offset = (ns) => {
    const ms = Math.max(0, (ns - start) / 1e6);
    return `+${pad(Math.floor(ms / 60000))}:${pad(Math.floor(ms / 1000) % 60)}.${pad(Math.floor(ms % 1000), 3)}`;
  };
  const icon = { command: '$', connection: '⇄', fileaccess: '▤', kubernetes: '⎈' };
  body.replaceChildren(...[
    el('dl', { class: 'who' },
      el('dt', {}, 'Session'), el('dd', {}, `${r.kind} ${r.command || ''}`),
      el('dt', {}, 'User'), el('dd', { 'data-field': 'user' }, who),
      el('dt', {}, 'Groups'), el('dd', {}, (r.groups || []).join(', ')),
      el('dt', {}, 'Source IPs'), el('dd', {}, (r.sourceAddresses || []).join(', ')),
      el('dt', {}, 'User agent'), el('dd', {}, r.userAgent || ''),
      el('dt', {}, 'Where'), el('dd', {}, place),
      el('dt', {}, 'When'), el('dd', {}, `${fmtTime(r.start)} – ${fmtTime(r.end)}`),
      el('dt', {}, 'Activity'), el('dd', {}, `${r.commands} commands, ${r.connections} connections, ${r.fileaccesses} file accesses`),
      el('dt', {}, 'Confidence'), el('dd', { class: `confidence${low ? ' low' : ''}` }, `${Math.round(r.confidence * 100)}%${r.reason ? ` — ${r.reason}` : ''}`)),
    el('div', { class: 'tree' }, t.entries.map((e) => el('div', { 'data-id': e.id, 'data-depth': depthOf(e.id) },
      el('span', { class: 't' }, offset(e.timestamp)), '  ', '   '.repeat(depthOf(e.id)), `${icon[e.type] || ''} `, summary(e),
      e.traceConfidence !== undefined && e.traceConfidence < 0.9 ? el('span', { class: 'confidence low' }, ` (${Math.round(e.traceConfidence * 100)}%)`) : null))),
    t.ambiguous.length ? el('p', { class: 'note' }, `${t.ambiguous.length} entries may belong to this session or another one that cannot be told apart.`) : null,
    t.truncated ? el('p', { class: 'note' }, 'Only the first 10 000 entries are shown.') : null,
  ].filter(Boolean));
}

function exportTrace() {
  if (!lastTrace) return;
  const blob = new Blob([JSON.stringify(lastTrace, null, 2)], { type: 'application/json' });
  const a = el('a', { href: URL.createObjectURL(blob), download: `trace-${lastTrace.trace.traceId}.json` });
  document.body.append(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------------------------------
// Live mode: a rolling range, new entries streamed in (server-sent events over fetch, so the
// token travels in a header), graph and groups refreshed every 10 s.

function stopLive() {
  if (liveAbort) liveAbort.abort();
  liveAbort = null;
  clearInterval(liveTimer);
  liveTimer = null;
}

async function startLive() {
  stopLive();
  const ctrl = new AbortController();
  liveAbort = ctrl;
  liveTimer = setInterval(() => { loadHistogram().catch(() => {}); loadGroups().catch(() => {}); }, 10000);
  const params = selection().filter(([k]) => k !== 'from' && k !== 'to');
  try {
    const r = await fetch(`/api/v1/activity/stream?${new URLSearchParams(params)}`, { headers: { Authorization: `Bearer ${token()}` }, signal: ctrl.signal });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const chunk = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const field = (name) => { const l = chunk.split('\n').find((x) => x.startsWith(`${name}:`)); return l ? l.slice(name.length + 1).trim() : null; };
        if (field('event') === 'entry') {
          const e = JSON.parse(field('data'));
          $('rows').prepend(row(e, true));
        }
      }
    }
  } catch (err) {
    if (err.name !== 'AbortError') showError(err);
  }
}

// ---------------------------------------------------------------------------------------
// Wiring

function apply(push) {
  state.entry = null;
  state.trace = null;
  $('details').hidden = true;
  $('trace').hidden = true;
  writeUrl(push);
  refresh();
}

function step(dir) {
  const [from, to] = range();
  const len = to - from;
  zoom(from + BigInt(dir) * len, to + BigInt(dir) * len);
}

function signOut(message) {
  stopLive();
  localStorage.removeItem('aa-token');
  $('app').hidden = true;
  $('trace').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
}

async function start() {
  if (!token()) { signOut(); return; }
  try {
    attributes = (await api('/supported-filters')).data;
  } catch (err) {
    if (err.status !== 401) $('signin-error').textContent = err.message;
    return;
  }
  $('signin').hidden = true;
  $('app').hidden = false;
  readUrl();
  refresh();
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  localStorage.setItem('aa-token', $('token').value.trim());
  start();
});
$('signout').addEventListener('click', () => signOut());
$('filter').addEventListener('input', suggest);
$('filter').addEventListener('click', suggest);
$('filter').addEventListener('blur', () => setTimeout(() => { if (document.activeElement !== $('filter')) closeSuggest(); }, 150));
$('filter').addEventListener('keydown', (ev) => {
  if (!$('suggest').hidden && suggestions.length) {
    if (ev.key === 'ArrowDown') { active = (active + 1) % suggestions.length; navigated = true; renderSuggest(); ev.preventDefault(); return; }
    if (ev.key === 'ArrowUp') { active = (active + suggestions.length - 1) % suggestions.length; navigated = true; renderSuggest(); ev.preventDefault(); return; }
    // Tab takes the highlighted suggestion; Enter only one picked with the arrows
    if (ev.key === 'Tab' || (ev.key === 'Enter' && navigated)) { accept(active); ev.preventDefault(); return; }
    if (ev.key === 'Escape') { closeSuggest(); return; }
  }
  if (ev.key === 'Enter') { closeSuggest(); state.filter = $('filter').value.trim(); apply(true); }
});
$('scope').addEventListener('change', () => { state.scope = $('scope').value.trim(); apply(true); });
$('preset').addEventListener('change', () => {
  if ($('preset').value === 'custom') {
    const [from, to] = range();
    state.preset = 'custom'; state.from = from; state.to = to; state.live = false;
    $('custom').hidden = false;
    $('from').value = toLocalInput(from); $('to').value = toLocalInput(to);
    return;
  }
  state.preset = $('preset').value;
  state.from = null; state.to = null;
  apply(true);
});
$('apply-range').addEventListener('click', () => zoom(fromLocalInput($('from').value), fromLocalInput($('to').value)));
$('back').addEventListener('click', () => step(-1));
$('forward').addEventListener('click', () => step(1));
$('live').addEventListener('change', () => {
  state.live = $('live').checked;
  if (state.live && state.preset === 'custom') { state.preset = '1h'; state.from = null; state.to = null; }
  apply(true);
});
$('close-details').addEventListener('click', () => { state.entry = null; $('details').hidden = true; writeUrl(true); });
$('close-trace').addEventListener('click', () => { state.trace = null; $('trace').hidden = true; writeUrl(true); });
$('trace-json').addEventListener('click', exportTrace);
$('trace-print').addEventListener('click', () => window.print());
new IntersectionObserver((es) => { if (es.some((e) => e.isIntersecting)) loadPage(false).catch(showError); }).observe($('more'));
window.addEventListener('popstate', () => { readUrl(); refresh(); });
window.addEventListener('resize', () => { if (lastHistogram) drawGraph(lastHistogram); });
window.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && !$('trace').hidden) $('close-trace').click(); });
start();

// hotswap's status page. Everything comes from the admin API: the models,
// memory and modes are read again whenever an event says something moved
// (and every few seconds, for counts that move without events); activity
// and logs come from /admin/events as they happen. Rows are updated in
// place, never rebuilt, so that keyboard focus stays where it is.
'use strict';

const POLL_MS = 2000;        // models, memory, modes
const HISTORY_MS = 5000;     // the plots
const KEEP_EVENTS = 300;     // activity entries shown
const KEEP_LINES = 1000;     // log lines shown
const LEGEND_MAX = 8;        // models named under a memory bar

const $ = (sel, root = document) => root.querySelector(sel);

// el makes an element: el('td', {class: 'x'}, 'text', child).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// setText changes a node's text only when it differs: no work, and no
// mutation for assistive technology to announce, when nothing moved.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function bytes(n) {
  if (!n) return '0';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Math.abs(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (n < 0 ? '-' : '') + (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
}

// duration says s seconds for people: under a second in ms (a cool-down
// of 40 ms is not "0.0 s"), then s, min and h.
function duration(s) {
  if (s === undefined || s === null || typeof s !== 'number' || isNaN(s)) return '';
  s = Math.max(0, s);
  if (s < 0.9995) return Math.round(s * 1000) + ' ms';
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.floor(s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

function clock(t) {
  const d = new Date(t);
  return isNaN(d) ? '' : d.toLocaleTimeString([], {hour12: false});
}

// ago says how long before now t was, '' for none.
function ago(t) {
  const d = Date.parse(t);
  if (isNaN(d)) return '';
  return duration((Date.now() - d) / 1000) + ' ago';
}

// ---- talking to hotswap ----

class Unauthorized extends Error {}

async function api(method, path) {
  let r;
  try {
    r = await fetch(path, {method, credentials: 'same-origin', headers: {Accept: 'application/json'}});
  } catch (e) {
    connection.fetchFailed();
    throw e;
  }
  if (r.status === 401) {
    location.assign('/ui/login');
    throw new Unauthorized('signed out');
  }
  let body = null;
  try { body = await r.json(); } catch { /* not JSON: said below */ }
  if (!r.ok) {
    const msg = body && body.error && body.error.message ? body.error.message : r.status + ' ' + r.statusText;
    throw new Error(msg);
  }
  return body;
}

let toastTimer = 0;
function toast(msg) {
  const t = $('#toast');
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 8000);
}

// act runs a command from a button: the button says it is busy meanwhile
// (it keeps focus: it is never disabled), and a failure is shown.
async function act(button, method, path) {
  button.setAttribute('aria-busy', 'true');
  try {
    await api(method, path);
  } catch (e) {
    if (!(e instanceof Unauthorized)) toast(button.textContent + ': ' + e.message);
  } finally {
    button.removeAttribute('aria-busy');
    refreshSoon();
  }
}

// ---- the connection ----

const connection = {
  up: false,
  set(up, why) {
    const c = $('#conn');
    if (up === this.up && c.textContent !== 'connecting…') return;
    this.up = up;
    c.classList.toggle('down', !up);
    setText(c, up ? 'live' : 'connection to hotswap lost' + (why ? ' (' + why + ')' : '') + ': reconnecting…');
  },
  fetchFailed() { this.set(false, 'no answer'); },
};

// ---- models ----

const rows = new Map(); // model id -> {tr, cells, data, at}

function modelRow(m) {
  const cells = {};
  const cell = (name, label, cls) => (cells[name] = el('td', {class: cls || name, 'data-label': label}));
  const load = el('button', {type: 'button', class: 'load', 'aria-label': 'load ' + m.model}, 'Load');
  const unload = el('button', {type: 'button', class: 'unload', 'aria-label': 'unload ' + m.model}, 'Unload');
  // What hotswap learned of the model's memory, under every command it
  // has had: planning goes by its declaration until it is measured again.
  const forget = el('button', {type: 'button', class: 'forget', 'aria-label': 'forget the memory learned for ' + m.model,
    title: 'forget the memory hotswap measured for this model (it plans with the declared memory until the next measurement)'}, 'Forget');
  load.addEventListener('click', () => act(load, 'POST', '/admin/models/' + encodeURIComponent(m.model) + '/load?wait=false'));
  unload.addEventListener('click', () => act(unload, 'POST', '/admin/models/' + encodeURIComponent(m.model) + '/unload'));
  forget.addEventListener('click', () => act(forget, 'POST', '/admin/models/' + encodeURIComponent(m.model) + '/forget'));
  const tr = el('tr', {'data-model': m.model},
    cell('model', null), cell('state', 'state', 'state-cell'), cell('device', 'device'), cell('memory', 'memory'),
    cell('inflight', 'in flight'), cell('queued', 'queued'), cell('lastused', 'last used'), cell('ttl', 'ttl left'),
    el('td', {class: 'actions'}, load, unload, forget));
  cells.model.append(el('span', {class: 'name'}, m.model), el('span', {class: 'kind'}),
    el('span', {class: 'variants', title: 'variants: other names served by this backend, with parameters of their own'}));
  cells.queued.append(el('span', {class: 'n'}), el('span', {class: 'why waits'}));
  cells.state.append(el('span', {class: 'state'}), el('span', {class: 'why'}),
    el('details', {class: 'full', hidden: true}, el('summary', {}, 'full error'), el('pre', {})));
  return {tr, cells};
}

function renderModels(list) {
  const at = Date.now();
  const tbody = $('#models tbody');
  const seen = new Set();
  let prev = null;
  for (const m of list) {
    seen.add(m.model);
    let r = rows.get(m.model);
    if (!r) {
      r = modelRow(m);
      rows.set(m.model, r);
    }
    r.data = m;
    r.at = at;
    // Keep configuration order; move a row only if it is out of place
    // (moving a focused row would drop its focus).
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== r.tr) tbody.insertBefore(r.tr, want);
    prev = r.tr;
    fillModel(r);
    r.tr.hidden = !matchesFilter(m.model, m);
  }
  for (const [id, r] of rows) {
    if (!seen.has(id)) {
      r.tr.remove();
      rows.delete(id);
    }
  }
  setText($('#models-count'), '(' + list.length + ', ' + list.filter(m => m.state === 'ready').length + ' ready)');
  updateLogFilter(list.map(m => m.model));
}

// matchesFilter reports whether a model is shown under the filter box's
// text (a part of its name, any case).
// variantNames are the names a model's variants answer to.
function variantNames(m) {
  return (m && m.variants || []).flatMap(v => [v.id, ...(v.aliases || [])]);
}

// matchesFilter: the filter finds a model by its id, or by one of its
// variants' names.
function matchesFilter(id, m) {
  const f = $('#model-filter').value.trim().toLowerCase();
  return !f || [id, ...variantNames(m)].some(n => n.toLowerCase().includes(f));
}

function filterModels() {
  for (const [id, r] of rows) r.tr.hidden = !matchesFilter(id, r.data);
}

// fillModel writes a row from its data, with times counted on from when
// the data came, so that they move between reads.
function fillModel(r) {
  const m = r.data;
  const c = r.cells;
  const since = (Date.now() - r.at) / 1000;
  setText(c.model.querySelector('.kind'), m.kind || '');
  const vs = (m.variants || []).map(v => v.id);
  setText(c.model.querySelector('.variants'), vs.length ? 'also ' + vs.join(', ') : '');
  const state = c.state.querySelector('.state');
  const why = c.state.querySelector('.why');
  state.className = 'state state-' + m.state;
  // A start of an asleep process is a wake.
  let s = m.state === 'starting' && m.sleep && m.sleep.waking ? 'waking' : m.state;
  let detail = '';
  if (['starting', 'draining', 'stopping', 'sleeping'].includes(m.state) && m.state_seconds !== undefined) {
    s += ' ' + duration(m.state_seconds + since);
  }
  if (m.state === 'asleep' && m.sleep) {
    detail = 'keeps ' + bytes((m.sleep.ram || 0) + (m.sleep.vram || 0)) + ' asleep' +
      (m.sleep.wake_seconds ? '; wakes in about ' + duration(m.sleep.wake_seconds) : '');
  }
  if (m.state === 'failed') {
    const left = (m.retry_in_seconds || 0) - since;
    s += left > 0 ? ', retry in ' + duration(left) : ', may retry';
    detail = m.last_error || '';
  }
  setText(state, s);
  const short = shortError(detail);
  setText(why, short);
  why.title = detail;
  // The whole error, when the line shows only its ends.
  const full = c.state.querySelector('details');
  full.hidden = short === detail;
  setText(full.querySelector('pre'), full.hidden ? '' : detail);
  setText(c.device, m.device || '');
  const measured = (m.ram || 0) + (m.vram || 0);
  const declared = (m.declared_ram || 0) + (m.declared_vram || 0);
  let mem = (measured ? bytes(measured) : '–') + ' / ' + (declared ? bytes(declared) : '–');
  if (m.vram || m.declared_vram) mem += ' (vram ' + bytes(m.vram || 0) + ' / ' + bytes(m.declared_vram || 0) + ')';
  setText(c.memory, mem);
  c.memory.title = 'planned for ' + bytes((m.need_ram || 0) + (m.need_vram || 0)) + ' (the declaration raised to the largest footprint measured)';
  setText(c.inflight, String(m.in_flight || 0));
  setText(c.queued.querySelector('.n'), String(m.queued || 0));
  setText(c.queued.querySelector('.waits'), waitingFor(m));
  setText(c.lastused, m.last_used ? ago(m.last_used) : 'never');
  let ttl = '';
  if (m.ttl_left_seconds !== undefined) {
    ttl = m.in_flight > 0 ? duration(m.ttl_left_seconds) + ' (busy)' : duration(m.ttl_left_seconds - since);
  } else if (m.ttl_seconds) {
    ttl = 'ttl ' + duration(m.ttl_seconds);
  }
  setText(c.ttl, ttl);
}

// shortError keeps what a long start failure says first (what happened)
// and last (the backend's own last line, usually its reason).
function shortError(s) {
  const i = s.indexOf('; last output:');
  if (s.length < 200 || i < 0) return s;
  return s.slice(0, i) + ' … ' + s.slice(s.lastIndexOf(' | ') + 3);
}

// waitingFor says what a model's queued requests wait for.
function waitingFor(m) {
  if (!m.queued) return '';
  switch (m.state) {
  case 'starting': return 'waiting for its load';
  case 'ready': return m.in_flight >= m.parallel ? 'all ' + m.parallel + ' of its slots are busy' : 'being handed over';
  case 'draining':
  case 'stopping': return 'waiting for it to stop, then start again';
  case 'sleeping': return 'waiting for it to sleep, then wake again';
  case 'asleep': return 'waiting to be woken (under the batch policy, up to max_wait while loaded models are served)';
  case 'failed': return 'refused until its retry';
  }
  return 'waiting to be swapped in (under the batch policy, up to max_wait while loaded models are served)';
}

// ---- memory ----

// A stable colour per model, so that a model keeps its colour in every bar.
function colour(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return 'hsl(' + (h % 360) + ' 55% 55%)';
}

function renderMemory(devs) {
  const box = $('#memory .devices');
  const seen = new Set();
  for (const d of devs) {
    seen.add(d.device);
    let div = box.querySelector('.device[data-device="' + CSS.escape(d.device) + '"]');
    if (!div) {
      div = el('div', {class: 'device', 'data-device': d.device},
        el('div', {class: 'label'}, el('span', {class: 'title'}, el('strong', {}), el('span', {class: 'tags'})), el('span', {class: 'sum'})),
        el('div', {class: 'bar', role: 'img'}),
        el('ul', {class: 'legend'}));
      box.append(div);
    }
    const used = Object.entries(d.used_by || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const models = used.reduce((s, [, n]) => s + n, 0);
    const reserved = Math.max(0, d.reserved || 0);
    const free = Math.max(0, d.available);
    const segs = used.map(([id, n]) => ({cls: 'seg model', id, n, label: id + ': ' + bytes(n)}));
    // With limit_ram the bar is the limit: what models may use, whatever
    // else the machine has free. Without, it is the device.
    const limited = d.limit > 0;
    const total = (limited ? d.limit : d.total) || 1;
    let other = 0;
    let reserve = 0;
    if (limited) {
      other = Math.max(0, d.limit - models - reserved - free);
      segs.push({cls: 'seg other', n: other, label: 'within limit_ram but not free on the machine: ' + bytes(other)});
    } else {
      other = Math.max(0, d.total - d.free - models);
      reserve = Math.max(0, Math.min(d.reserve || 0, d.free - reserved));
      segs.push({cls: 'seg other', n: other, label: 'other programs: ' + bytes(other)});
    }
    if (reserved) segs.push({cls: 'seg reserved', n: reserved, label: 'held for what loaded models are planned to need beyond their use now: ' + bytes(reserved)});
    if (!limited) segs.push({cls: 'seg reserve', n: reserve, label: 'reserve: ' + bytes(reserve)});
    segs.push({cls: 'seg free', n: free, label: 'free for models: ' + bytes(free)});
    const bar = div.querySelector('.bar');
    bar.replaceChildren(...segs.map(s => {
      const e = el('div', {class: s.cls, title: s.label, 'data-model': s.id, 'data-bytes': String(s.n)});
      e.style.width = (100 * s.n / total).toFixed(3) + '%';
      if (s.id) e.style.background = colour(s.id);
      return e;
    }));
    bar.setAttribute('aria-label', deviceTitle(d) + ': ' + segs.map(s => s.label).join(', '));
    setText(div.querySelector('strong'), d.device + (d.name ? ' · ' + d.name : ''));
    renderTags(div.querySelector('.tags'), d);
    setText(div.querySelector('.sum'), bytes(models) + ' used by models · ' + bytes(free) + ' free for models · ' +
      (limited ? 'limit_ram ' + bytes(d.limit) + ' (the machine: ' + bytes(d.free) + ' free of ' + bytes(d.total) + ')'
        : bytes(d.total) + ' in all'));
    const legend = used.slice(0, LEGEND_MAX).map(([id, n]) =>
      el('li', {}, swatch(colour(id)), id + ' ' + bytes(n)));
    if (used.length > LEGEND_MAX) legend.push(el('li', {}, '+' + (used.length - LEGEND_MAX) + ' more (hover the bar)'));
    if (other) legend.push(el('li', {}, swatch('', 'other'), (limited ? 'not free on the machine ' : 'other programs ') + bytes(other)));
    if (reserved) legend.push(el('li', {}, swatch('', 'reserved'), 'held for planned needs ' + bytes(reserved)));
    if (!limited) legend.push(el('li', {}, swatch('', 'reserve'), 'reserve ' + bytes(reserve)));
    legend.push(el('li', {}, swatch('', 'free'), 'free ' + bytes(free)));
    div.querySelector('.legend').replaceChildren(...legend);
  }
  for (const div of box.querySelectorAll('.device')) {
    if (!seen.has(div.dataset.device)) div.remove();
  }
}

// The GPU makers /admin/memory names, as people write them.
const VENDORS = {nvidia: 'NVIDIA', amd: 'AMD', intel: 'Intel', apple: 'Apple'};

function vendorName(v) { return VENDORS[v] || v; }

// deviceTitle names a device for assistive technology: its name, maker,
// and whether its memory is RAM.
function deviceTitle(d) {
  return [d.device, d.vendor && vendorName(d.vendor), d.name, d.unified && 'unified memory'].filter(Boolean).join(', ');
}

// renderTags labels a GPU's bar with its maker and, where its memory is
// system RAM (an APU, a Mac), says so: what models use there, they use in
// RAM too.
function renderTags(box, d) {
  const want = [];
  if (d.vendor) want.push(['vendor', vendorName(d.vendor), 'made by ' + vendorName(d.vendor)]);
  if (d.unified) want.push(['unified', 'unified memory',
    'this GPU\'s memory is system RAM: its total is the part of RAM it may use, and what models use here counts in ram too']);
  const key = JSON.stringify(want);
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren(...want.map(([cls, text, title]) => el('span', {class: 'tag ' + cls, title}, text)));
}

function swatch(bg, cls) {
  const s = el('span', {class: 'swatch seg ' + (cls || '')});
  if (bg) s.style.background = bg;
  return s;
}

// ---- modes ----

function renderModes(info) {
  const list = $('#modes .mode-list');
  const names = Object.keys(info.modes || {}).sort();
  setText($('#active-mode'), info.active || 'none');
  setText($('#remembered'), info.remembered && info.remembered.length ? info.remembered.join(', ') : 'nothing');
  const seen = new Set(names);
  for (const name of names) {
    let li = list.querySelector('li[data-mode="' + CSS.escape(name) + '"]');
    if (!li) {
      const b = el('button', {type: 'button', class: 'switch', 'aria-label': 'switch to mode ' + name}, 'Switch');
      b.addEventListener('click', () => act(b, 'POST', '/admin/modes/' + encodeURIComponent(name)));
      li = el('li', {'data-mode': name}, el('span', {class: 'name'}, name), el('span', {class: 'members'}), b);
      // Keep them sorted: insert before the first one that sorts after.
      const after = [...list.children].find(x => x.dataset.mode > name);
      list.insertBefore(li, after || null);
    }
    li.classList.toggle('active', info.active === name);
    setText(li.querySelector('.members'), info.modes[name].join(', '));
  }
  for (const li of [...list.children]) {
    if (!seen.has(li.dataset.mode)) li.remove();
  }
  if (!names.length && !list.querySelector('.none')) list.append(el('li', {class: 'none'}, 'No modes configured.'));
}

// ---- activity ----

const activityTypes = ['start', 'ready', 'evict', 'stop', 'asleep', 'sleep_failed', 'fail', 'refuse', 'crash', 'cooldown',
  'footprint', 'mode', 'reload', 'unload', 'dropped'];

function list(v) { return Array.isArray(v) ? v.filter(Boolean).join(', ') : (v || ''); }

// describe says what an event means, in a line.
function describe(e) {
  const d = e.data || {};
  switch (e.type) {
  case 'start': {
    let s = (d.wake ? 'waking' : 'starting') + (d.device ? ' on ' + d.device : '');
    const slept = Array.isArray(d.sleeping) ? d.sleeping : [];
    const stopped = (Array.isArray(d.evicting) ? d.evicting : []).filter(m => !slept.includes(m));
    if (stopped.length) s += ', evicting ' + list(stopped);
    if (slept.length) s += ', putting ' + list(slept) + ' to sleep';
    if (list(d.busy)) s += ' (busy: ' + list(d.busy) + ')';
    return s + (e.message ? ': ' + e.message : '');
  }
  case 'ready': return (d.wake ? 'awake after ' : 'ready after ') + duration(d.seconds) + (d.pid ? ' (pid ' + d.pid + ')' : '');
  case 'evict':
    return (d.sleep ? 'put to sleep: ' : 'evicted: ') +
      (d.reason === 'making room' && d['for'] ? 'making room for ' + d['for'] : d.reason || '') +
      (d.busy ? ' (it was busy)' : '');
  case 'asleep': return 'asleep after ' + duration(d.seconds) + (e.message ? ': ' + e.message : '');
  case 'sleep_failed':
    return (d.action === 'wake' ? 'wake failed, starting it afresh: ' : 'sleep failed, stopping it instead: ') + (e.message || '');
  case 'stop': return 'stopped after ' + duration(d.seconds) + (e.message ? ': ' + e.message : '');
  case 'unload': return 'unloaded by an operator' + (d.force ? ' (forced)' : '');
  case 'fail': return 'start failed (' + (d.cause || 'error') + '): ' + (e.message || '');
  case 'refuse': return 'refused: ' + (e.message || 'does not fit');
  case 'crash': return 'crashed: ' + (d.exit || 'exited');
  case 'cooldown': return 'memory came back in ' + duration(d.seconds);
  case 'footprint': return 'learned footprint' + (d.asleep ? ' asleep' : '') + ': ram ' + bytes(d.ram) + ', vram ' + bytes(d.vram);
  case 'mode': {
    let s = (d.action || 'switch') + (e.message ? ' to mode ' + e.message : '');
    for (const k of ['loaded', 'kept', 'unloaded', 'refused']) if (list(d[k])) s += '; ' + k + ' ' + list(d[k]);
    return s;
  }
  case 'reload': {
    let s = 'configuration reloaded';
    for (const k of ['added', 'removed', 'changed', 'restart']) if (list(d[k])) s += '; ' + k + ' ' + list(d[k]);
    return s;
  }
  case 'dropped':
    return e.message ? e.message + ': what happened meanwhile is not shown' :
      (d.count ? d.count + ' events' : 'events') + ' missed: this page fell behind';
  }
  return e.message || '';
}

function addActivity(e) {
  const ol = $('#activity .events');
  const li = el('li', {'data-type': e.type, 'data-model': e.model || ''},
    el('time', {datetime: e.time}, clock(e.time)),
    el('span', {class: 'badge t-' + e.type}, e.type), ' ',
    e.model ? el('strong', {}, e.model) : '', e.model ? ' ' : '',
    el('span', {class: 'what'}, describe(e)));
  ol.prepend(li);
  while (ol.children.length > KEEP_EVENTS) ol.lastChild.remove();
}

// plot draws one series into a figure's svg, scaled to its own maximum.
function plot(id, values, unit) {
  const fig = $('#' + id);
  const svg = fig.querySelector('svg');
  const max = Math.max(1e-9, ...values);
  const n = values.length;
  const y = (v) => (58 - (48 * v) / max).toFixed(1); // headroom above the highest
  // One point is a level line, until there are two.
  const pts = n === 1 ? ['0,' + y(values[0]), '300,' + y(values[0])]
    : values.map((v, i) => ((300 * i) / (n - 1)).toFixed(1) + ',' + y(v));
  let line = svg.querySelector('polyline');
  if (!line) {
    line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('class', 'line');
    svg.append(line);
  }
  line.setAttribute('points', pts.join(' '));
  const last = n ? values[n - 1] : 0;
  fig.dataset.max = String(n ? Math.max(...values) : 0);
  setText(fig.querySelector('.now'), (unit === 'rate' ? last.toFixed(last < 10 ? 2 : 0) : String(last)) +
    ' (max ' + (unit === 'rate' ? max.toFixed(max < 10 ? 2 : 0) : String(Math.round(max))) + ')');
}

function renderHistory(h) {
  const pts = h.points || [];
  const step = h.interval_seconds || 5;
  plot('plot-requests', pts.map(p => p.requests / step), 'rate');
  plot('plot-errors', pts.map(p => p.errors / step), 'rate');
  plot('plot-queued', pts.map(p => p.queued), 'count');
}

// ---- logs ----

const logModels = new Set();

function updateLogFilter(models) {
  const sel = $('#log-filter');
  for (const id of models) {
    if (logModels.has(id)) continue;
    logModels.add(id);
    sel.append(el('option', {value: id}, id));
  }
}

function lineVisible(li) {
  const f = $('#log-filter').value;
  return f === '*' || li.dataset.model === f;
}

function addLine(e) {
  const ol = $('#logs .lines');
  const d = e.data || {};
  const fields = Object.entries(d.fields || {}).filter(([k]) => k !== 'model')
    .map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v))).join(' ');
  const li = el('li', {'data-model': e.model || '', class: 'lvl-' + (d.level || 'info')},
    el('time', {datetime: e.time}, clock(e.time)),
    el('span', {class: 'tag'}, '[' + (e.model || 'hotswap') + (d.logger ? ' ' + d.logger : '') + ']'),
    el('span', {class: 'msg'}, e.message || ''), fields ? ' ' : '', fields ? el('span', {class: 'fields'}, fields) : '');
  li.hidden = !lineVisible(li);
  const follow = $('#log-follow').checked && ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  ol.append(li);
  while (ol.children.length > KEEP_LINES) ol.firstChild.remove();
  if (follow) ol.scrollTop = ol.scrollHeight;
  if (e.model) updateLogFilter([e.model]);
}

function filterLines() {
  const ol = $('#logs .lines');
  for (const li of ol.children) li.hidden = !lineVisible(li);
  ol.scrollTop = ol.scrollHeight;
}

// ---- refreshing ----

let refreshTimer = 0;
let refreshing = false;
let again = false;

// refresh reads the models, memory and modes; one read at a time, and one
// more if asked meanwhile.
async function refresh() {
  if (refreshing) { again = true; return; }
  refreshing = true;
  try {
    const [models, memory, modes] = await Promise.all([
      api('GET', '/admin/models'), api('GET', '/admin/memory'), api('GET', '/admin/modes')]);
    renderModels(models);
    renderMemory(memory);
    renderModes(modes);
    document.body.dataset.loaded = 'true';
    // Counted, so that a test (or a curious operator) can see reads land.
    document.body.dataset.refreshes = String((Number(document.body.dataset.refreshes) || 0) + 1);
    if (source && source.readyState === EventSource.OPEN) connection.set(true);
  } catch (e) {
    if (!(e instanceof Unauthorized) && !(e instanceof TypeError)) toast(e.message);
  } finally {
    refreshing = false;
    if (again) { again = false; refreshSoon(); }
  }
}

function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 100);
}

async function refreshHistory() {
  try { renderHistory(await api('GET', '/admin/history')); } catch { /* shown by the connection state */ }
}

// ---- events ----

let source = null;
let lastID = 0;
let retry = 1000;

function connect() {
  // since=0 the first time: all that hotswap kept, so that the page
  // opens on the recent past. The browser's own reconnects send
  // Last-Event-ID, which hotswap prefers.
  source = new EventSource('/admin/events?logs=true&since=' + lastID);
  source.onopen = () => {
    retry = 1000;
    connection.set(true);
    refreshSoon();
    refreshHistory();
  };
  source.onerror = () => {
    connection.set(false);
    // The browser retries a dropped stream itself; one refused (hotswap
    // answered with an error) is closed for good, so retry it here.
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(checkThenConnect, retry);
      retry = Math.min(retry * 2, 10000);
    }
  };
  const onEvent = (msg) => {
    if (msg.lastEventId) lastID = Number(msg.lastEventId) || lastID;
    let e;
    try { e = JSON.parse(msg.data); } catch { return; }
    if (e.type === 'log') addLine(e);
    else {
      addActivity(e);
      refreshSoon();
    }
  };
  for (const t of activityTypes.concat(['log'])) source.addEventListener(t, onEvent);
}

// checkThenConnect asks once with fetch, which says why (a 401 goes to
// the sign-in page), before opening the stream again.
async function checkThenConnect() {
  try {
    await api('GET', '/admin/modes');
  } catch (e) {
    if (e instanceof Unauthorized) return;
  }
  connect();
}

function tick() {
  for (const r of rows.values()) fillModel(r);
}

function start() {
  $('#log-filter').addEventListener('change', filterLines);
  $('#model-filter').addEventListener('input', filterModels);
  $('#restore').addEventListener('click', (ev) => act(ev.currentTarget, 'POST', '/admin/modes/restore'));
  // The sign-out form is for when hotswap asks for a key.
  fetch('/ui/session', {credentials: 'same-origin'}).then(r => r.json()).then(s => {
    $('#signout').hidden = !s.keys;
  }).catch(() => {});
  connect();
  refresh();
  refreshHistory();
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  setInterval(() => { if (!document.hidden) refreshHistory(); }, HISTORY_MS);
  setInterval(tick, 1000);
}

start();

// Forge dashboard: the runs list and a live run page. Plain JavaScript, no dependencies, no
// request to any host but the one that served it.
//
// A run page loads the run's folded state once (GET api/runs/{id}), then follows its events
// (EventSource on api/runs/{id}/events?from=<next seq>) and folds each into the same state in
// the page: `applyEvent` mirrors forge_events::RunState::apply. Events are deduplicated by seq,
// so the browser's own reconnects (with Last-Event-ID) and the page's reconnects after the
// server went away (a new EventSource from the last seq seen) continue without gaps or
// duplicates.
'use strict';

(() => {
  // Event types the page folds. A type not listed here (written by a newer Forge) is not
  // delivered by EventSource; its seq shows up as a jump and counts as an unknown event, as
  // in RunState.
  const EVENT_TYPES = [
    'run_started', 'task_queued', 'task_waiting_locks', 'task_started', 'task_progress',
    'task_output', 'task_usage', 'task_session', 'task_retrying', 'task_finished', 'claim_violation',
    'lock_deadlock', 'merge_integrated', 'merge_conflict', 'gate_started', 'gate_finished',
    'apply_finished', 'run_warning', 'run_finished', 'task_retry_requested', 'task_check',
    'gate_bisect_started', 'gate_bisect_step', 'gate_bisect_finished', 'task_added', 'task_placed',
    'unknown',
  ];
  const TASK_PHASES = ['queued', 'waiting_locks', 'running', 'retrying', 'succeeded', 'failed',
    'timed_out', 'cancelled', 'skipped'];
  const FINISHED = new Set(['succeeded', 'failed', 'timed_out', 'cancelled', 'skipped']);
  const RUN_FINISHED = new Set(['succeeded', 'failed', 'cancelled']);
  const PHASE_LABEL = {
    queued: 'queued', waiting_locks: 'waiting', running: 'running', retrying: 'retrying',
    succeeded: 'succeeded', failed: 'failed', timed_out: 'timed out', cancelled: 'cancelled',
    skipped: 'skipped', pending: 'pending', gating: 'gating',
  };
  const TOKEN_KEY = 'forge.token';
  const OUTPUT_KEEP = 200;
  const LOG_KEEP = 512 * 1024;
  const LOG_TAIL = 64 * 1024;
  const SVGNS = 'http://www.w3.org/2000/svg';

  // ---- token: given once (#token=, ?token= or the form), kept for this tab ----

  function takeTokenFromAddress() {
    const url = new URL(location.href);
    const hash = new URLSearchParams(url.hash.slice(1));
    let given = null;
    if (hash.has('token')) {
      given = hash.get('token');
      hash.delete('token');
      url.hash = hash.toString();
    }
    if (url.searchParams.has('token')) {
      given = url.searchParams.get('token');
      url.searchParams.delete('token');
    }
    if (given !== null) {
      if (given) sessionStorage.setItem(TOKEN_KEY, given);
      const hashText = url.hash && url.hash !== '#' ? url.hash : '';
      history.replaceState(history.state, '', url.pathname + url.search + hashText);
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  class AuthError extends Error {}
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, raw, method, body) {
    const headers = {};
    const tok = token();
    if (tok) headers.Authorization = 'Bearer ' + tok;
    const init = { headers, cache: 'no-store', method: method || 'GET' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 401) throw new AuthError('this server needs its access token');
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && body.error) message = body.error;
        else if (body && body.output) message = body.output;
      } catch (_) { /* not JSON */ }
      throw new HttpError(res.status, message);
    }
    return raw ? res : res.json();
  }

  const enc = encodeURIComponent;

  // What the server's embedder offers besides reading (GET api/features): transcripts, diffs,
  // actions. Asked once; a server without the route offers nothing more.
  let featuresAsked = null;
  function features() {
    if (!featuresAsked) {
      featuresAsked = api('api/features').then((list) => new Set(list), (err) => {
        featuresAsked = null;
        if (err instanceof AuthError) throw err;
        return new Set();
      });
    }
    return featuresAsked;
  }

  // ---- DOM helpers ----

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function appendAll(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : String(kid));
    }
  }

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    appendAll(el, kids);
    return el;
  }

  function sv(tag, attrs, ...kids) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    appendAll(el, kids);
    return el;
  }

  function setText(el, text) {
    text = text === null || text === undefined ? '' : String(text);
    if (el.textContent !== text) el.textContent = text;
  }

  function pill(state, text) {
    return h('span', { class: 'pill', 'data-state': state }, text || PHASE_LABEL[state] || state);
  }

  function updatePill(el, state) {
    if (el.dataset.state !== state) el.dataset.state = state;
    setText(el, PHASE_LABEL[state] || state);
  }

  function taskTag(id, page) {
    return h('span', {
      class: 'tag',
      'data-task': id,
      title: 'Show ' + id,
      onclick: () => page && page.select(id),
    }, id);
  }

  // ---- formatting ----

  const pad2 = (n) => String(n).padStart(2, '0');

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
    ms = Math.max(0, ms);
    if (ms < 1000) return Math.round(ms) + 'ms';
    const secs = ms / 1000;
    if (secs < 60) return secs.toFixed(secs < 10 ? 1 : 0) + 's';
    let s = Math.floor(secs);
    let m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return `${m}m ${pad2(s)}s`;
    const hrs = Math.floor(m / 60);
    m %= 60;
    return `${hrs}h ${pad2(m)}m`;
  }

  function fmtTime(ts) {
    if (!ts) return '–';
    const d = new Date(ts);
    const now = new Date();
    const time = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    if (d.toDateString() === now.toDateString()) return time;
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${time}`;
  }

  function fmtTokens(n) {
    if (!n) return '0';
    if (n < 1000) return String(n);
    if (n < 1e6) return (n / 1000).toFixed(n < 1e4 ? 1 : 0) + 'k';
    return (n / 1e6).toFixed(1) + 'M';
  }

  function fmtCost(c) {
    if (c === null || c === undefined) return '';
    return '$' + (c < 0.1 ? c.toFixed(4) : c.toFixed(2));
  }

  const since = (ts) => (ts ? Date.now() - Date.parse(ts) : null);

  // ---- the fold: RunState.apply, in the page ----

  function newTask(id) {
    return {
      id, status: 'queued', after: [], attempt: 0, agent: null, workspace: null, strategy: null,
      claims: [], blocked_by: [], queued_at: null, started_at: null, attempt_started_at: null,
      interrupted: 0, finished_at: null, duration_ms: null, exit_code: null, reason: null, last_progress: null,
      progress_events: 0, last_output: null, output_lines: 0, files_touched: [],
      files_changed: [], usage: { tokens_in: 0, tokens_out: 0 }, retry: null, violations: [],
      integrated: false, integrated_files: [], estimate_ms: null, sessions: [], node: null,
    };
  }

  function emptyCounts() {
    const counts = { total: 0 };
    for (const p of TASK_PHASES) counts[p] = 0;
    return counts;
  }

  // The gate bisect, as RunState's BisectRecord folds it.
  function foldBisect(s, e) {
    const fresh = () => ({
      tasks: [], concurrency: 0, steps: [], finished: false, culprit: null, base_fails: false,
      gate_runs: 0, message: null,
    });
    if (e.type === 'gate_bisect_started') {
      s.bisect = Object.assign(fresh(), { tasks: e.tasks || [], concurrency: e.concurrency });
      return;
    }
    const b = s.bisect || (s.bisect = fresh());
    if (e.type === 'gate_bisect_step') {
      if (!e.reused) b.gate_runs += 1;
      b.steps.push({
        changesets: e.changesets, last: e.last === undefined ? null : e.last, passed: e.passed,
        failed_command: e.failed_command === undefined ? null : e.failed_command,
        duration_ms: e.duration_ms || 0, reused: !!e.reused,
      });
    } else {
      b.finished = true;
      b.culprit = e.culprit === undefined ? null : e.culprit;
      b.base_fails = !!e.base_fails;
      b.gate_runs = e.gate_runs;
      b.message = e.message;
    }
  }

  function normalize(state) {
    state.tasks = state.tasks || [];
    state.counts = Object.assign(emptyCounts(), state.counts || {});
    for (const key of ['integrated', 'conflicts', 'gates', 'violations', 'deadlocks']) {
      state[key] = state[key] || [];
    }
    for (const t of state.tasks) {
      Object.assign(t, Object.assign(newTask(t.id), t));
      t.usage = Object.assign({ tokens_in: 0, tokens_out: 0 }, t.usage || {});
    }
    state.last_seq = state.last_seq || 0;
    state.unknown_events = state.unknown_events || 0;
    state.usage = Object.assign({ tokens_in: 0, tokens_out: 0 }, state.usage || {});
    state.resumes = state.resumes || 0;
    state.phase = state.phase || 'pending';
    Object.defineProperty(state, 'index', {
      value: new Map(state.tasks.map((t) => [t.id, t])),
      enumerable: false,
      writable: true,
    });
    return state;
  }

  function recountTotal(s) {
    const planned = s.plan ? s.plan.tasks : 0;
    s.counts.total = Math.max(planned, s.tasks.length);
    recountProgress(s);
  }

  // Done for good: finished but not cancelled (a cancelled task runs again on resume), as
  // TaskCounts::done.
  const doneOf = (c) => c.succeeded + c.failed + c.timed_out + c.skipped;

  function recountProgress(s) {
    const c = s.counts;
    s.progress = c.total ? doneOf(c) / c.total : 0;
  }

  function taskOf(s, id) {
    let t = s.index.get(id);
    if (!t) {
      t = newTask(id);
      s.tasks.push(t);
      s.index.set(id, t);
      s.counts.queued += 1;
      recountTotal(s);
    }
    return t;
  }

  function setStatus(s, t, status) {
    s.counts[t.status] -= 1;
    t.status = status;
    s.counts[status] += 1;
    recountProgress(s);
  }

  function applyTask(s, e) {
    const t = taskOf(s, e.task);
    let next = null;
    switch (e.type) {
      case 'task_added':
        // Added while the run runs (`forge add`): the plan grew by one.
        t.agent = e.agent;
        t.after = e.after || [];
        if (!t.queued_at) t.queued_at = e.ts;
        if (s.plan) s.plan.tasks += 1;
        recountTotal(s);
        next = 'queued';
        break;
      case 'task_queued':
        t.after = e.after || [];
        t.estimate_ms = e.estimate_ms === undefined ? null : e.estimate_ms;
        if (!t.queued_at) t.queued_at = e.ts;
        next = 'queued';
        break;
      case 'task_waiting_locks':
        t.claims = e.claims || [];
        t.blocked_by = e.blocked_by || [];
        next = 'waiting_locks';
        break;
      case 'task_started':
        t.attempt = e.attempt;
        t.agent = e.agent;
        t.workspace = e.workspace;
        t.strategy = e.strategy;
        t.node = null;
        t.blocked_by = [];
        if (!t.started_at) t.started_at = e.ts;
        t.attempt_started_at = e.ts;
        t.finished_at = null;
        t.duration_ms = null;
        t.exit_code = null;
        next = 'running';
        break;
      case 'task_progress': {
        const files = e.files || [];
        if (files.length) {
          t.files_touched = Array.from(new Set(t.files_touched.concat(files))).sort();
        }
        t.last_progress = { message: e.message, at: e.ts };
        if (e.tool !== undefined && e.tool !== null) t.last_progress.tool = e.tool;
        if (files.length) t.last_progress.files = files;
        t.progress_events += 1;
        break;
      }
      case 'task_output':
        t.last_output = e.line;
        t.output_lines += 1;
        break;
      case 'task_usage':
        t.usage.tokens_in += e.tokens_in || 0;
        t.usage.tokens_out += e.tokens_out || 0;
        if (e.cost_usd !== undefined && e.cost_usd !== null) {
          t.usage.cost_usd = (t.usage.cost_usd || 0) + e.cost_usd;
        }
        // The run's total, as RunState's `usage`.
        s.usage.tokens_in += e.tokens_in || 0;
        s.usage.tokens_out += e.tokens_out || 0;
        if (e.cost_usd !== undefined && e.cost_usd !== null) {
          s.usage.cost_usd = (s.usage.cost_usd || 0) + e.cost_usd;
        }
        break;
      case 'task_placed':
        // The cluster node an attempt runs on (a cluster runner's; none for local attempts).
        if (e.attempt === t.attempt) t.node = e.node;
        break;
      case 'task_retrying':
        t.retry = { attempt: e.attempt, delay_ms: e.delay_ms, reason: e.reason, at: e.ts };
        next = 'retrying';
        break;
      case 'task_finished':
        if (e.status === 'cancelled' && t.status === 'running') t.interrupted += 1;
        t.reason = e.reason === undefined ? null : e.reason;
        t.exit_code = e.exit_code === undefined ? null : e.exit_code;
        t.duration_ms = e.duration_ms;
        t.files_changed = e.files_changed || [];
        t.finished_at = e.ts;
        next = e.status;
        break;
      default:
        break;
    }
    if (next && next in s.counts) setStatus(s, t, next);
  }

  // A resume: tasks under way did not run while the run was stopped (as RunState does).
  function excludeStoppedTime(s, stopped, resumed) {
    const gap = Date.parse(resumed) - Date.parse(stopped);
    if (!(gap >= 0)) return;
    for (const t of s.tasks) {
      const underWay = t.status === 'cancelled'
        ? t.attempt > 0
        : ['running', 'waiting_locks', 'retrying'].includes(t.status);
      if (!underWay) continue;
      if (t.status === 'running') t.interrupted += 1;
      if (t.started_at) t.started_at = new Date(Date.parse(t.started_at) + gap).toISOString();
    }
  }

  const TASK_EVENTS = new Set(['task_queued', 'task_waiting_locks', 'task_started',
    'task_progress', 'task_output', 'task_usage', 'task_retrying', 'task_finished',
    'task_added', 'task_placed']);

  // Folds one event; false (nothing changed) for an event already folded or of another run.
  function applyEvent(s, e) {
    if (s.run && e.seq <= s.last_seq) return false;
    if (s.run && s.run !== e.run) return false;
    if (!s.run) s.run = e.run;
    s.last_seq = e.seq;
    const previous = s.updated_at;
    s.updated_at = e.ts;
    if (TASK_EVENTS.has(e.type)) {
      if (e.task) applyTask(s, e);
      return true;
    }
    switch (e.type) {
      case 'run_started':
        if (s.started_at) {
          s.resumes += 1;
          if (previous) excludeStoppedTime(s, previous, e.ts);
        } else s.started_at = e.ts;
        s.plan = {
          name: e.plan, hash: e.plan_hash, tasks: e.tasks, concurrency: e.concurrency,
          base: e.base,
        };
        s.phase = 'running';
        s.finished_at = null;
        recountTotal(s);
        break;
      case 'plan_preview':
        s.preview = e.preview;
        break;
      case 'run_finished':
        s.phase = e.status;
        s.finished_at = e.ts;
        s.summary = e.summary;
        break;
      case 'lock_deadlock':
        s.deadlocks.push({ cycle: e.cycle, victim: e.victim });
        break;
      case 'merge_conflict':
        s.conflicts.push({
          path: e.path, tasks: e.tasks || [], strategy: e.strategy, resolved: !!e.resolved,
          seq: e.seq,
        });
        break;
      case 'gate_started': {
        s.phase = 'gating';
        // A command that ran before starts a new round (resume, fix round), as RunState does.
        const again = s.gates.findIndex((g) => g.command === e.command);
        if (again >= 0) s.gates.length = again;
        s.gates.push({
          command: e.command, passed: null, exit_code: null, duration_ms: null,
          tests_passed: null, tests_failed: null, started_at: e.ts,
        });
        break;
      }
      case 'gate_finished': {
        let gate = null;
        for (let i = s.gates.length - 1; i >= 0; i--) {
          const g = s.gates[i];
          if (g.passed === null && g.command === e.command) {
            gate = g;
            break;
          }
        }
        if (!gate) {
          gate = { command: e.command, started_at: null };
          s.gates.push(gate);
        }
        gate.passed = e.passed;
        gate.exit_code = e.exit_code === undefined ? null : e.exit_code;
        gate.duration_ms = e.duration_ms || 0;
        gate.tests_passed = e.tests_passed === undefined ? null : e.tests_passed;
        gate.tests_failed = e.tests_failed === undefined ? null : e.tests_failed;
        break;
      }
      case 'apply_finished':
        s.apply = {
          target: e.target, files: e.files || [], conflicts: e.conflicts || [],
          branch: e.branch === undefined ? null : e.branch,
          commit: e.commit === undefined ? null : e.commit, at: e.ts,
        };
        break;
      case 'claim_violation':
        s.violations.push({ task: e.task || null, paths: e.paths || [], policy: e.policy });
        if (e.task) taskOf(s, e.task).violations.push(...(e.paths || []));
        break;
      case 'merge_integrated':
        if (e.task) {
          const t = taskOf(s, e.task);
          t.integrated = true;
          t.integrated_files = (e.files || []).slice();
          s.integrated.push(e.task);
        }
        break;
      case 'gate_bisect_started':
      case 'gate_bisect_step':
      case 'gate_bisect_finished':
        foldBisect(s, e);
        break;
      case 'run_warning':
        // Known, and like RunState it changes no state: the warning is in the journal and
        // the CLI's lines.
        break;
      default:
        s.unknown_events += 1;
    }
    return true;
  }

  // ---- the DAG: longest-path layers, barycenter order, critical path ----

  const NODE_W = 156;
  const NODE_H = 38;
  const GAP_X = 56;
  const GAP_Y = 12;
  const PAD = 8;

  function layoutDag(tasks) {
    const n = tasks.length;
    const at = new Map(tasks.map((t, i) => [t.id, i]));
    const preds = tasks.map((t) => (t.after || []).filter((a) => at.has(a)).map((a) => at.get(a)));
    const succs = tasks.map(() => []);
    preds.forEach((ps, i) => ps.forEach((p) => succs[p].push(i)));
    // Kahn's order; a task's layer is the longest chain of dependencies before it.
    const indeg = preds.map((ps) => ps.length);
    const layer = new Array(n).fill(0);
    const order = [];
    const queue = [];
    indeg.forEach((d, i) => { if (!d) queue.push(i); });
    for (let q = 0; q < queue.length; q++) {
      const i = queue[q];
      order.push(i);
      for (const j of succs[i]) {
        layer[j] = Math.max(layer[j], layer[i] + 1);
        if (--indeg[j] === 0) queue.push(j);
      }
    }
    if (order.length < n) {
      // A cycle (an invalid plan): its tasks go in one last column.
      const placed = new Set(order);
      const last = order.length ? Math.max(...order.map((i) => layer[i])) + 1 : 0;
      for (let i = 0; i < n; i++) {
        if (!placed.has(i)) {
          layer[i] = last;
          order.push(i);
        }
      }
    }
    const layers = [];
    for (let i = 0; i < n; i++) (layers[layer[i]] = layers[layer[i]] || []).push(i);
    for (let l = 0; l < layers.length; l++) layers[l] = layers[l] || [];
    const pos = new Array(n).fill(0);
    const number = () => layers.forEach((ids) => ids.forEach((i, k) => { pos[i] = k; }));
    number();
    // Barycenter sweeps (down, up, down) to cut edge crossings.
    const sweep = (range, neighbours) => {
      for (const l of range) {
        const bary = new Map(layers[l].map((i) => {
          const ns = neighbours[i];
          return [i, ns.length ? ns.reduce((a, j) => a + pos[j], 0) / ns.length : pos[i]];
        }));
        layers[l].sort((a, b) => bary.get(a) - bary.get(b) || pos[a] - pos[b]);
        layers[l].forEach((i, k) => { pos[i] = k; });
      }
    };
    const down = layers.map((_, l) => l).slice(1);
    const up = layers.map((_, l) => l).reverse().slice(1);
    sweep(down, preds);
    sweep(up, succs);
    sweep(down, preds);
    const tallest = Math.max(1, ...layers.map((ids) => ids.length));
    const nodes = new Array(n);
    layers.forEach((ids, l) => {
      const offset = ((tallest - ids.length) * (NODE_H + GAP_Y)) / 2;
      ids.forEach((i, k) => {
        nodes[i] = {
          i, id: tasks[i].id, x: PAD + l * (NODE_W + GAP_X),
          y: PAD + offset + k * (NODE_H + GAP_Y),
        };
      });
    });
    const edges = [];
    preds.forEach((ps, i) => ps.forEach((p) => edges.push([p, i])));
    return {
      nodes, edges, preds, order,
      width: PAD * 2 + Math.max(1, layers.length) * (NODE_W + GAP_X) - GAP_X,
      height: PAD * 2 + tallest * (NODE_H + GAP_Y) - GAP_Y,
    };
  }

  // The longest chain by weight (a task's `estimate_ms` when known, else the mean of the known
  // ones, else 1: the rule forge's scheduler orders by). Ties go to the earlier task.
  function criticalPath(tasks, layout) {
    const given = tasks.map((t) => t.estimate_ms).filter((x) => typeof x === 'number' && x > 0);
    const mean = given.length ? Math.max(1, given.reduce((a, b) => a + b, 0) / given.length) : 1;
    const weight = tasks.map((t) => (typeof t.estimate_ms === 'number' && t.estimate_ms > 0
      ? t.estimate_ms : mean));
    const dist = new Array(tasks.length).fill(0);
    const via = new Array(tasks.length).fill(-1);
    for (const i of layout.order) {
      let best = 0;
      for (const p of layout.preds[i]) {
        if (dist[p] > best || (dist[p] === best && via[i] >= 0 && p < via[i])) {
          best = dist[p];
          via[i] = p;
        }
      }
      dist[i] = best + weight[i];
    }
    const nodes = new Set();
    const edges = new Set();
    if (!tasks.length) return { nodes, edges };
    let end = 0;
    for (let i = 1; i < dist.length; i++) if (dist[i] > dist[end]) end = i;
    for (let i = end; i >= 0; i = via[i]) {
      nodes.add(tasks[i].id);
      if (via[i] >= 0) edges.add(`${tasks[via[i]].id}>${tasks[i].id}`);
    }
    return { nodes, edges };
  }

  // Cuts the middle out of a long name: ids often differ only at the end
  // (`task-with-a-longish-name-07`), so both ends stay.
  function clip(text, max) {
    const chars = Array.from(text);
    if (chars.length <= max) return text;
    const head = Math.floor((max - 1) / 2);
    const tail = max - 1 - head;
    return chars.slice(0, head).join('') + '…' + chars.slice(chars.length - tail).join('');
  }

  // ---- connection indicator ----

  function setConn(state, label) {
    const el = document.getElementById('conn');
    if (!el) return;
    el.dataset.state = state;
    setText(el.querySelector('.label'), label || state);
  }

  function setCrumbs(...parts) {
    const el = document.getElementById('crumbs');
    el.replaceChildren();
    parts.forEach((p, i) => {
      el.append(h('span', { class: 'sep' }, '/'));
      el.append(i === parts.length - 1 ? h('span', { class: 'cur' }, p) : p);
    });
  }

  // ---- navigation ----

  let current = null;
  const main = () => document.getElementById('main');

  function go(search) {
    history.pushState(null, '', search || location.pathname);
    route();
  }

  function runLink(id, text) {
    return h('a', {
      href: '?run=' + enc(id),
      onclick: (ev) => {
        if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
        ev.preventDefault();
        go('?run=' + enc(id));
      },
    }, text || id);
  }

  function route() {
    if (current) current.stop();
    current = null;
    const run = new URLSearchParams(location.search).get('run');
    current = run ? new RunPage(run) : new RunsPage();
    current.start();
  }

  function showError(err, page) {
    if (err instanceof AuthError) {
      if (page) page.stop();
      tokenForm(err);
      return;
    }
    const box = main();
    let notice = box.querySelector(':scope > .notice.error');
    if (!notice) {
      notice = h('p', { class: 'notice error', id: 'error' });
      box.prepend(notice);
    }
    setText(notice, err && err.message ? err.message : String(err));
  }

  function clearError() {
    const notice = main().querySelector(':scope > .notice.error');
    if (notice) notice.remove();
  }

  function tokenForm() {
    setConn('idle', 'locked');
    const had = token();
    const input = h('input', {
      id: 'token-input', type: 'password', autocomplete: 'off', placeholder: 'access token',
      'aria-label': 'Access token',
    });
    const form = h('form', {
      class: 'card token-form', id: 'token-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        if (!input.value) return;
        sessionStorage.setItem(TOKEN_KEY, input.value);
        route();
      },
    },
    h('h1', null, 'Access token'),
    h('p', null, 'This Forge server needs its access token (forge serve --token). It is kept for this tab only.'),
    h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Open')),
    h('div', { class: 'err' }, had ? 'The token was not accepted.' : ''));
    main().replaceChildren(form);
    input.focus();
  }

  // ---- runs list ----

  class RunsPage {
    constructor() {
      this.timer = null;
      this.stopped = false;
      this.rows = new Map();
    }

    start() {
      setCrumbs();
      setConn('idle', 'runs');
      document.title = 'Forge — runs';
      this.tbody = h('tbody');
      this.count = h('span', { class: 'dim' });
      this.empty = h('div', { class: 'empty', hidden: true }, 'No runs yet under .forge/runs.');
      main().replaceChildren(h('section', { class: 'runs' },
        h('div', { class: 'title' }, h('h1', null, 'Runs'), ' ', this.count),
        h('div', { class: 'card' },
          h('div', { class: 'table-wrap' },
            h('table', { id: 'runs' },
              h('thead', null, h('tr', null,
                h('th', null, 'Run'), h('th', null, 'Plan'), h('th', null, 'Status'),
                h('th', null, 'Started'), h('th', { class: 'num' }, 'Duration'),
                h('th', null, 'Tasks'), h('th', { class: 'num' }, 'Conflicts'),
                h('th', { class: 'num' }, 'Events'))),
              this.tbody)),
          this.empty)));
      this.poll();
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
    }

    async poll() {
      try {
        const runs = await api('api/overview');
        if (this.stopped) return;
        clearError();
        this.render(runs);
      } catch (err) {
        if (this.stopped) return;
        showError(err, this);
        if (err instanceof AuthError) return;
      }
      if (!this.stopped) this.timer = setTimeout(() => this.poll(), 2000);
    }

    render(runs) {
      setText(this.count, `${runs.length} run${runs.length === 1 ? '' : 's'}`);
      this.empty.hidden = runs.length > 0;
      const seen = new Set();
      runs.forEach((r, i) => {
        seen.add(r.id);
        let row = this.rows.get(r.id);
        if (!row) {
          row = this.makeRow(r.id);
          this.rows.set(r.id, row);
        }
        this.fill(row, r);
        if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
      });
      for (const [id, row] of this.rows) {
        if (!seen.has(id)) {
          row.tr.remove();
          this.rows.delete(id);
        }
      }
    }

    makeRow(id) {
      const row = {
        plan: h('td'), status: pill('pending'), started: h('td'),
        duration: h('td', { class: 'num' }), bar: h('div', { class: 'bar' }),
        tasks: h('span', { class: 'dim' }), conflicts: h('td', { class: 'num' }),
        events: h('td', { class: 'num dim' }),
      };
      row.tr = h('tr', { class: 'run', 'data-run': id },
        h('td', { class: 'id' }, runLink(id)), row.plan, h('td', null, row.status), row.started,
        row.duration, h('td', null, h('div', { class: 'tasks-cell' }, row.bar, row.tasks)),
        row.conflicts, row.events);
      return row;
    }

    fill(row, r) {
      row.tr.dataset.state = r.phase;
      setText(row.plan, r.plan || '–');
      updatePill(row.status, r.phase);
      if (r.error) row.status.title = r.error;
      setText(row.started, fmtTime(r.started_at));
      row.started.title = r.started_at || '';
      const running = !RUN_FINISHED.has(r.phase);
      let duration = null;
      if (r.duration_ms !== null && r.duration_ms !== undefined) duration = r.duration_ms;
      else if (r.started_at) {
        const end = running ? Date.now() : Date.parse(r.updated_at || r.started_at);
        duration = end - Date.parse(r.started_at);
      }
      setText(row.duration, fmtDuration(duration));
      const c = Object.assign(emptyCounts(), r.counts || {});
      const total = Math.max(1, c.total);
      const done = c.succeeded;
      const bad = c.failed + c.timed_out;
      fillBar(row.bar, [['ok', c.succeeded / total], ['bad', bad / total],
        ['run', (c.running + c.retrying) / total], ['skip', c.skipped / total]]);
      setText(row.tasks, `${done}/${c.total}${bad ? ` · ${bad} failed` : ''}`
        + `${c.cancelled ? ` · ${c.cancelled} cancelled` : ''}`);
      setText(row.conflicts, r.conflicts ? String(r.conflicts) : '0');
      row.conflicts.classList.toggle('dim', !r.conflicts);
      setText(row.events, String(r.last_seq));
    }
  }

  function fillBar(bar, parts) {
    if (bar.children.length !== parts.length) {
      bar.replaceChildren(...parts.map(([cls]) => h('span', { class: cls })));
    }
    parts.forEach(([, frac], i) => {
      const width = (Math.max(0, Math.min(1, frac)) * 100).toFixed(2) + '%';
      if (bar.children[i].style.width !== width) bar.children[i].style.width = width;
    });
  }

  // ---- one run, live ----

  class RunPage {
    constructor(id) {
      this.id = id;
      this.state = null;
      this.es = null;
      this.stopped = false;
      this.selected = null;
      this.retryDelay = 0;
      this.reconnectTimer = null;
      this.renderTimer = null;
      this.ticker = null;
      this.outputs = new Map();
      this.layoutKey = null;
      this.critical = { nodes: new Set(), edges: new Set() };
      this.nodes = new Map();
      this.rows = new Map();
      this.log = null;
      this.stats = { connects: 0, received: 0, applied: 0, duplicates: 0, skipped: 0, from: [] };
    }

    async start() {
      setCrumbs(h('a', { href: './', onclick: (ev) => { ev.preventDefault(); go(''); } }, 'runs'), this.id);
      document.title = `Forge — ${this.id}`;
      setConn('connecting', 'loading');
      main().replaceChildren(h('p', { class: 'notice' }, 'Loading run ', h('code', null, this.id), '…'));
      try {
        const [state, offered] = await Promise.all([api(`api/runs/${enc(this.id)}`), features()]);
        if (this.stopped) return;
        this.features = offered;
        this.state = normalize(state);
      } catch (err) {
        if (this.stopped) return;
        setConn('error', 'error');
        if (err instanceof HttpError && err.status === 404) {
          main().replaceChildren(h('p', { class: 'notice error', id: 'error' },
            `Unknown run ${this.id}. `, h('a', { href: './' }, 'All runs')));
          return;
        }
        showError(err, this);
        return;
      }
      this.build();
      this.render();
      this.connect();
      this.ticker = setInterval(() => this.tick(), 1000);
    }

    stop() {
      this.stopped = true;
      if (this.es) this.es.close();
      clearTimeout(this.reconnectTimer);
      clearTimeout(this.renderTimer);
      clearInterval(this.ticker);
      if (this.log) this.log.stop();
    }

    // The event stream: from the seq after the state loaded (or the last event folded).
    connect() {
      if (this.stopped) return;
      const from = this.state.last_seq + 1;
      const params = new URLSearchParams({ from: String(from) });
      // The server takes a query token into its cookie and redirects to this address without it.
      if (token()) params.set('token', token());
      const es = new EventSource(`api/runs/${enc(this.id)}/events?${params}`);
      this.es = es;
      this.stats.connects += 1;
      this.stats.from.push(from);
      setConn(this.stats.connects > 1 ? 'reconnecting' : 'connecting');
      es.onopen = () => {
        if (es !== this.es) return;
        this.retryDelay = 0;
        setConn('live');
      };
      es.onerror = () => {
        if (es !== this.es || this.stopped) return;
        if (RUN_FINISHED.has(this.state.phase)) {
          // A finished run has nothing more to stream: say so instead of reconnecting.
          es.close();
          this.es = null;
          setConn('done', 'finished');
          return;
        }
        if (es.readyState === EventSource.CLOSED) {
          // The browser gave up (the server answered with an error, or is gone for good):
          // a new stream from the last seq folded.
          setConn('closed', 'reconnecting');
          this.retryDelay = Math.min(8000, this.retryDelay ? this.retryDelay * 2 : 500);
          clearTimeout(this.reconnectTimer);
          this.reconnectTimer = setTimeout(() => this.reconnect(), this.retryDelay);
        } else {
          // The browser reconnects by itself, sending Last-Event-ID.
          setConn('reconnecting');
        }
      };
      const onEvent = (msg) => this.onMessage(msg);
      for (const type of EVENT_TYPES) es.addEventListener(type, onEvent);
    }

    // Before a new stream: a stream refused for its token would fail forever without saying
    // why, so a plain request asks first (any other failure: the new stream will tell).
    async reconnect() {
      if (this.stopped) return;
      try {
        await api(`api/runs/${enc(this.id)}?check`, true, 'HEAD');
      } catch (err) {
        if (err instanceof AuthError) {
          showError(err, this);
          return;
        }
      }
      if (!this.stopped) this.connect();
    }

    onMessage(msg) {
      let e;
      try {
        e = JSON.parse(msg.data);
      } catch (_) {
        return;
      }
      this.stats.received += 1;
      const s = this.state;
      if (typeof e.seq !== 'number' || e.seq <= s.last_seq) {
        this.stats.duplicates += 1;
        return;
      }
      if (e.seq > s.last_seq + 1) {
        // Events of types this page does not know: counted, as RunState counts them.
        const missed = e.seq - s.last_seq - 1;
        this.stats.skipped += missed;
        s.unknown_events += missed;
      }
      if (!applyEvent(s, e)) return;
      this.stats.applied += 1;
      if (e.type === 'task_output' && e.task) {
        let lines = this.outputs.get(e.task);
        if (!lines) this.outputs.set(e.task, (lines = []));
        lines.push(e.line);
        if (lines.length > OUTPUT_KEEP) lines.splice(0, lines.length - OUTPUT_KEEP);
      }
      this.schedule();
    }

    schedule() {
      if (this.renderTimer) return;
      this.renderTimer = setTimeout(() => {
        this.renderTimer = null;
        if (!this.stopped) this.render();
      }, 40);
    }

    tick() {
      const s = this.state;
      if (!s) return;
      if (!RUN_FINISHED.has(s.phase) || s.counts.running || s.counts.retrying) this.render();
    }

    select(id) {
      if (this.selected === id) return;
      this.selected = id;
      if (this.log) this.log.stop();
      this.log = new LogTail(this, id);
      this.render();
      this.log.start();
    }

    // ---- layout of the page ----

    build() {
      this.head = {
        title: h('h1', null, this.id), plan: h('span', { class: 'plan' }), phase: pill('pending'),
        bar: h('div', { class: 'bar' }), done: h('span', { class: 'dim' }),
        chips: h('div', { class: 'chips' }), stats: h('div', { class: 'stats' }),
      };
      this.head.phase.id = 'run-phase';
      this.actions = h('div', { class: 'actions', id: 'actions' });
      this.actionResult = h('pre', { class: 'action-result', id: 'action-result', hidden: true });
      const head = h('section', { class: 'card run-head', id: 'run-head' },
        h('div', { class: 'title' }, this.head.title, this.head.plan, this.head.phase),
        h('div', { class: 'progress' }, this.head.bar, this.head.done),
        this.head.chips, this.head.stats, this.actions, this.actionResult);

      this.dagWrap = h('div', { class: 'dag-wrap' });
      const legend = h('div', { class: 'legend' },
        TASK_PHASES.map((p) => h('span', { 'data-state': p }, h('i'), PHASE_LABEL[p])),
        h('span', null, h('i', { class: 'crit' }), 'critical path'));
      const dag = h('section', { class: 'card', id: 'dag' },
        h('header', null, h('h2', null, 'Plan'), this.dagCount = h('span', { class: 'count' }, '0')),
        this.dagWrap, legend);

      this.panels = {
        locks: this.panel('locks', 'Lock waits'),
        conflicts: this.panel('conflicts', 'Merge conflicts'),
        gate: this.panel('gate', 'Gate'),
        apply: this.panel('apply', 'Apply'),
        violations: this.panel('violations', 'Claim violations'),
      };
      const side = h('div', { class: 'side' }, Object.values(this.panels).map((p) => p.card));

      this.tbody = h('tbody');
      const table = h('section', { class: 'card', id: 'tasks' },
        h('header', null, h('h2', null, 'Tasks'), this.taskCount = h('span', { class: 'count' }, '0')),
        h('div', { class: 'table-wrap' }, h('table', null,
          h('thead', null, h('tr', null,
            h('th', null, 'Task'), h('th', null, 'State'), h('th', null, 'Agent'),
            h('th', null, 'Node'), h('th', { class: 'num' }, 'Att.'), h('th', null, 'Latest activity'),
            h('th', { class: 'num' }, 'Elapsed'), h('th', { class: 'num' }, 'Tokens in/out'),
            h('th', { class: 'num' }, 'Cost'), h('th', { class: 'num' }, 'Files'))),
          this.tbody)));

      this.logBox = h('section', { class: 'card log', id: 'log' });
      this.renderLogIdle();
      main().replaceChildren(head, h('div', { class: 'grid' }, dag, side), table, this.logBox);
    }

    panel(id, title) {
      const count = h('span', { class: 'count' }, '0');
      const body = h('div');
      const card = h('section', { class: 'card', id }, h('header', null, h('h2', null, title), count), body);
      return { card, count, body };
    }

    renderLogIdle() {
      this.logBox.replaceChildren(
        h('header', null, h('h2', null, 'Log')),
        h('div', { class: 'empty' }, 'Select a task to follow its output.'));
    }

    // ---- rendering (keyed: only what changed is written) ----

    render() {
      const s = this.state;
      this.renderHead(s);
      this.renderDag(s);
      this.renderTasks(s);
      this.renderPanels(s);
      this.renderActions(s);
      if (this.log) this.log.onState();
    }

    // ---- actions: abort a running run; apply a finished one (all or chosen tasks) ----

    renderActions(s) {
      const finished = RUN_FINISHED.has(s.phase);
      const can = this.features || new Set();
      const succeeded = s.tasks.filter((t) => t.status === 'succeeded').map((t) => t.id);
      const key = JSON.stringify([s.phase, succeeded, this.busy || false]);
      if (this.actions.dataset.key === key) return;
      this.actions.dataset.key = key;
      if (!finished) {
        if (!can.has('abort')) {
          this.actions.replaceChildren();
          return;
        }
        this.actions.replaceChildren(h('button', {
          type: 'button', id: 'abort', class: 'danger', disabled: this.busy || null,
          onclick: () => this.act('abort', null, 'Interrupting the run…'),
        }, 'Abort run'));
        return;
      }
      const label = PHASE_LABEL[s.phase] || s.phase;
      const retry = can.has('retry') && s.tasks.length ? this.retryForm(s) : null;
      const note = h('p', { class: 'notice finished', id: 'run-finished' },
        `This run has finished (${label}); the page shows its final state and does not reconnect.`);
      if (!succeeded.length || !can.has('apply')) {
        this.actions.replaceChildren(note, retry || '');
        return;
      }
      const boxes = succeeded.map((id) => h('label', { class: 'apply-task' },
        h('input', { type: 'checkbox', value: id, checked: true, 'data-task': id }), ' ', id));
      // Also settles conflicts between tasks that no strategy settled: `ours` is the side
      // integrated first, `theirs` the task whose change was set aside.
      const conflicts = h('select', { id: 'apply-conflicts', 'aria-label': 'Conflicts (with your edits, or between tasks)' },
        h('option', { value: 'keep' }, 'keep my files (default)'),
        h('option', { value: 'markers' }, 'write conflict markers'),
        h('option', { value: 'theirs' }, "take the run's version (between tasks: the set-aside task's)"),
        h('option', { value: 'ours' }, 'keep mine, drop the run\'s (between tasks: the integrated side)'),
        h('option', { value: 'agent' }, 're-run the task to resolve it'));
      const apply = h('button', {
        type: 'button', id: 'apply', disabled: this.busy || null,
        onclick: () => {
          const chosen = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
          if (!chosen.length) {
            this.showResult(false, 'Choose at least one task to apply.');
            return;
          }
          const body = {};
          if (chosen.length < succeeded.length) body.tasks = chosen;
          if (conflicts.value !== 'keep') body.conflicts = conflicts.value;
          this.act('apply', body, 'Applying…');
        },
      }, 'Apply');
      this.actions.replaceChildren(note, h('div', { class: 'apply-form', id: 'apply-form' },
        h('span', { class: 'k' }, 'Apply tasks:'), boxes, conflicts, apply), retry || '');
    }

    // Retry one task with added instructions (the run's failed tasks first).
    retryForm(s) {
      const order = [...s.tasks].sort((a, b) => Number(a.status === 'succeeded') - Number(b.status === 'succeeded'));
      const task = h('select', { id: 'retry-task', 'aria-label': 'Task to retry' },
        order.map((t) => h('option', { value: t.id }, `${t.id} (${PHASE_LABEL[t.status] || t.status})`)));
      const text = h('input', { type: 'text', id: 'retry-prompt', placeholder: 'extra instructions (optional)' });
      const button = h('button', {
        type: 'button', id: 'retry', disabled: this.busy || null,
        onclick: () => this.act('retry', { task: task.value, prompt: text.value }, 'Starting the retry…'),
      }, 'Retry');
      return h('div', { class: 'apply-form', id: 'retry-form' }, h('span', { class: 'k' }, 'Retry:'), task, text, button);
    }

    showResult(ok, text) {
      this.actionResult.hidden = false;
      this.actionResult.dataset.ok = String(ok);
      setText(this.actionResult, text);
    }

    async act(what, body, pending) {
      this.busy = true;
      this.showResult(true, pending);
      this.render();
      try {
        const res = await api(`api/runs/${enc(this.id)}/${what}`, true, 'POST', body || {});
        const out = await res.json();
        this.showResult(true, out.output || 'Done.');
      } catch (err) {
        if (err instanceof AuthError) {
          showError(err, this);
          return;
        }
        this.showResult(false, err.message);
      } finally {
        this.busy = false;
      }
      // A retry runs the run again: follow it.
      if (what === 'retry' && !this.es && !this.stopped) {
        this.connect();
        return;
      }
      // What the action journaled: the stream brings it while it is open; otherwise reload.
      if (!this.es) {
        try {
          this.state = normalize(await api(`api/runs/${enc(this.id)}`));
        } catch (_) { /* the next render shows what is known */ }
      }
      if (!this.stopped) this.render();
    }

    renderHead(s) {
      const hd = this.head;
      setText(hd.plan, s.plan ? s.plan.name : '');
      updatePill(hd.phase, s.phase);
      const c = s.counts;
      const total = Math.max(1, c.total);
      fillBar(hd.bar, [['ok', c.succeeded / total],
        ['bad', (c.failed + c.timed_out) / total],
        ['run', (c.running + c.retrying) / total], ['skip', c.skipped / total]]);
      // Cancelled tasks are not done (they run again on resume): counted apart, as the CLI does.
      setText(hd.done, `${doneOf(c)}/${c.total} tasks${c.cancelled ? ` · ${c.cancelled} cancelled` : ''}`);
      const chips = TASK_PHASES.filter((p) => c[p]).map((p) => `${p}:${c[p]}`).join(',');
      if (hd.chips.dataset.key !== chips) {
        hd.chips.dataset.key = chips;
        hd.chips.replaceChildren(...TASK_PHASES.filter((p) => c[p])
          .map((p) => pill(p, `${c[p]} ${PHASE_LABEL[p]}`)));
      }
      let tokensIn = 0;
      let tokensOut = 0;
      let cost = null;
      for (const t of s.tasks) {
        tokensIn += t.usage.tokens_in;
        tokensOut += t.usage.tokens_out;
        if (t.usage.cost_usd !== undefined && t.usage.cost_usd !== null) cost = (cost || 0) + t.usage.cost_usd;
      }
      const elapsed = s.started_at
        ? (s.finished_at ? Date.parse(s.finished_at) : Date.now()) - Date.parse(s.started_at) : null;
      const stats = [
        ['Started', fmtTime(s.started_at)],
        [s.finished_at ? 'Duration' : 'Elapsed', fmtDuration(s.summary ? s.summary.duration_ms : elapsed)],
        ['Concurrency', s.plan ? String(s.plan.concurrency) : '–'],
        ['Estimate', s.preview && s.preview.estimate_ms !== undefined && s.preview.estimate_ms !== null
          ? `${fmtDuration(s.preview.estimate_ms)} (vs ${fmtDuration(s.preview.sequential_ms)} sequential)` : 'unknown'],
        ['Conflicts', String(s.conflicts.length)],
        ['Tokens', `${fmtTokens(tokensIn)} / ${fmtTokens(tokensOut)}`],
        // Tokens no agent priced and `[prices]` did not either: the cost is unknown.
        ['Cost', cost === null ? (tokensIn || tokensOut ? 'n/a' : '–') : fmtCost(cost)],
        ['Events', String(s.last_seq)],
      ];
      if (hd.stats.children.length !== stats.length) {
        hd.stats.replaceChildren(...stats.map(([k]) => h('div', { class: 'stat', 'data-stat': k.toLowerCase() },
          h('span', { class: 'k' }), h('span', { class: 'v' }))));
      }
      stats.forEach(([k, v], i) => {
        const el = hd.stats.children[i];
        setText(el.firstChild, k);
        setText(el.lastChild, v);
      });
      if (s.summary && s.summary.message) hd.stats.title = s.summary.message;
    }

    renderDag(s) {
      const key = s.tasks.map((t) => `${t.id}<${(t.after || []).join(',')}`).join(';');
      setText(this.dagCount, String(s.tasks.length));
      if (key !== this.layoutKey) {
        this.layoutKey = key;
        this.layout = layoutDag(s.tasks);
        this.critical = criticalPath(s.tasks, this.layout);
        this.drawDag(s);
      }
      for (const t of s.tasks) {
        const node = this.nodes.get(t.id);
        if (!node) continue;
        if (node.g.dataset.state !== t.status) node.g.dataset.state = t.status;
        node.g.classList.toggle('selected', t.id === this.selected);
        let sub = PHASE_LABEL[t.status];
        if (t.attempt > 1) sub += ` · #${t.attempt}`;
        if (t.status === 'running') sub += ` · ${fmtDuration(since(t.attempt_started_at))}`;
        else if (FINISHED.has(t.status) && t.duration_ms !== null) sub += ` · ${fmtDuration(t.duration_ms)}`;
        setText(node.sub, sub);
        setText(node.title, `${t.id} — ${PHASE_LABEL[t.status]}`);
      }
    }

    drawDag(s) {
      const { nodes, edges, width, height } = this.layout;
      const svg = sv('svg', {
        class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
        'aria-label': 'Task graph',
      });
      const defs = sv('defs');
      for (const [id, cls] of [['forge-arrow', 'arrow'], ['forge-arrow-critical', 'arrow-critical']]) {
        defs.append(sv('marker', {
          id, viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 7, markerHeight: 7,
          orient: 'auto-start-reverse',
        }, sv('path', { d: 'M0,0 L8,4 L0,8 z', class: cls })));
      }
      svg.append(defs);
      const edgeGroup = sv('g', { class: 'edges' });
      for (const [from, to] of edges) {
        const a = nodes[from];
        const b = nodes[to];
        const x1 = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x - 1;
        const y2 = b.y + NODE_H / 2;
        const mid = (x2 - x1) / 2;
        const critical = this.critical.edges.has(`${a.id}>${b.id}`);
        edgeGroup.append(sv('path', {
          class: critical ? 'edge critical' : 'edge',
          d: `M${x1},${y1} C${x1 + mid},${y1} ${x2 - mid},${y2} ${x2},${y2}`,
          'marker-end': `url(#${critical ? 'forge-arrow-critical' : 'forge-arrow'})`,
          'data-from': a.id, 'data-to': b.id,
        }));
      }
      svg.append(edgeGroup);
      this.nodes = new Map();
      const nodeGroup = sv('g', { class: 'nodes' });
      for (const n of nodes) {
        const t = s.tasks[n.i];
        const title = sv('title');
        const sub = sv('text', { class: 'sub', x: 12, y: 30 });
        const g = sv('g', {
          class: this.critical.nodes.has(n.id) ? 'node critical' : 'node',
          'data-task': n.id, 'data-state': t.status, transform: `translate(${n.x},${n.y})`,
          onclick: () => this.select(n.id),
        },
        title,
        sv('rect', { class: 'box', width: NODE_W, height: NODE_H, rx: 6 }),
        sv('rect', { class: 'stripe', width: 4, height: NODE_H - 8, x: 4, y: 4, rx: 2 }),
        sv('text', { x: 12, y: 15 }, clip(n.id, 19)),
        sub);
        nodeGroup.append(g);
        this.nodes.set(n.id, { g, sub, title });
      }
      svg.append(nodeGroup);
      this.dagWrap.replaceChildren(svg);
    }

    renderTasks(s) {
      setText(this.taskCount, String(s.tasks.length));
      s.tasks.forEach((t, i) => {
        let row = this.rows.get(t.id);
        if (!row) {
          row = this.makeRow(t.id);
          this.rows.set(t.id, row);
        }
        if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
        this.fillRow(row, t);
      });
    }

    makeRow(id) {
      const cells = {
        state: pill('queued'), agent: h('td'), node: h('td', { class: 'node' }), attempt: h('td', { class: 'num' }),
        activity: h('td', { class: 'activity' }), elapsed: h('td', { class: 'num' }),
        tokens: h('td', { class: 'num' }), cost: h('td', { class: 'num' }),
        files: h('td', { class: 'num' }),
      };
      cells.tr = h('tr', {
        class: 'task', 'data-task': id, tabindex: 0, onclick: () => this.select(id),
        onkeydown: (ev) => { if (ev.key === 'Enter') this.select(id); },
      },
      h('td', { class: 'id' }, id), h('td', { class: 'state' }, cells.state), cells.agent,
      cells.node, cells.attempt, cells.activity, cells.elapsed, cells.tokens, cells.cost, cells.files);
      return cells;
    }

    fillRow(row, t) {
      if (row.tr.dataset.state !== t.status) row.tr.dataset.state = t.status;
      row.tr.classList.toggle('selected', t.id === this.selected);
      row.tr.classList.toggle('critical', this.critical.nodes.has(t.id));
      updatePill(row.state, t.status);
      setText(row.agent, t.agent || '');
      setText(row.node, t.node || '');
      setText(row.attempt, t.attempt ? String(t.attempt) : '');
      const act = activityOf(t);
      const key = `${act.tool || ''}\u0000${act.text}`;
      if (row.activity.dataset.key !== key) {
        row.activity.dataset.key = key;
        row.activity.replaceChildren(...(act.tool ? [h('span', { class: 'tool' }, act.tool)] : []), act.text);
        row.activity.title = act.text;
      }
      row.activity.classList.toggle('lost', !!act.bad);
      let elapsed = null;
      if (t.status === 'running') elapsed = since(t.attempt_started_at);
      else if (t.duration_ms !== null && t.duration_ms !== undefined) elapsed = t.duration_ms;
      setText(row.elapsed, elapsed === null ? '' : fmtDuration(elapsed));
      const u = t.usage;
      setText(row.tokens, u.tokens_in || u.tokens_out ? `${fmtTokens(u.tokens_in)} / ${fmtTokens(u.tokens_out)}` : '');
      const priced = u.cost_usd !== null && u.cost_usd !== undefined;
      setText(row.cost, priced ? fmtCost(u.cost_usd) : (u.tokens_in || u.tokens_out ? 'n/a' : ''));
      const files = t.files_changed.length || t.files_touched.length;
      const lost = t.integrated && t.integrated_files.length < t.files_changed.length;
      // A change a conflict dropped reads `integrated/changed`.
      setText(row.files, lost ? `${t.integrated_files.length}/${files}` : (files ? String(files) : ''));
    }

    renderPanels(s) {
      const p = this.panels;
      // Lock waits: who waits for whom, and the claims they asked for.
      const waiting = s.tasks.filter((t) => t.status === 'waiting_locks');
      const lockKey = JSON.stringify([waiting.map((t) => [t.id, t.blocked_by, t.claims]), s.deadlocks]);
      if (p.locks.key !== lockKey) {
        p.locks.key = lockKey;
        setText(p.locks.count, String(waiting.length));
        const items = waiting.map((t) => h('li', { class: 'wait', 'data-task': t.id },
          h('div', { class: 'line' }, taskTag(t.id, this), h('span', { class: 'arrow-l' }, 'waits for'),
            t.blocked_by.length ? t.blocked_by.map((b) => taskTag(b, this)) : h('span', { class: 'dim' }, 'locks')),
          t.claims.length ? h('div', { class: 'meta' },
            t.claims.map((c) => `${c.mode} ${c.pattern}`).join(' · ')) : null));
        for (const d of s.deadlocks) {
          items.push(h('li', { class: 'deadlock' },
            h('div', { class: 'line' }, h('span', { class: 'badge bad' }, 'deadlock'),
              d.cycle.map((c, i) => [i ? h('span', { class: 'arrow-l' }, '→') : null, taskTag(c, this)])),
            h('div', { class: 'meta' }, `${d.victim} gave up its wait`)));
        }
        p.locks.body.replaceChildren(items.length ? h('ul', { class: 'list' }, items)
          : h('div', { class: 'empty' }, 'No task is waiting for locks.'));
      }
      // Merge conflicts.
      if (p.conflicts.key !== s.conflicts.length) {
        p.conflicts.key = s.conflicts.length;
        const open = s.conflicts.filter((c) => !c.resolved).length;
        setText(p.conflicts.count, String(s.conflicts.length));
        p.conflicts.count.classList.toggle('alert', open > 0);
        p.conflicts.body.replaceChildren(s.conflicts.length ? h('ul', { class: 'list' },
          s.conflicts.map((c) => h('li', { class: 'conflict', 'data-path': c.path, 'data-resolved': String(c.resolved) },
            h('div', { class: 'line' }, h('span', { class: 'path' }, c.path),
              h('span', { class: c.resolved ? 'badge ok' : 'badge bad' }, c.resolved ? 'resolved' : 'unresolved')),
            h('div', { class: 'line' }, c.tasks.map((t) => taskTag(t, this)),
              h('span', { class: 'meta' }, `strategy ${c.strategy} · event ${c.seq}`)))))
          : h('div', { class: 'empty' }, 'No merge conflicts.'));
      }
      // Gate commands.
      const gateKey = JSON.stringify([s.gates, s.bisect || null]);
      if (p.gate.key !== gateKey) {
        p.gate.key = gateKey;
        setText(p.gate.count, String(s.gates.length));
        p.gate.body.replaceChildren(s.gates.length ? h('ul', { class: 'list' }, s.gates.map((g) => {
          const state = g.passed === null ? 'running' : (g.passed ? 'passed' : 'failed');
          const tests = [];
          if (g.tests_passed !== null && g.tests_passed !== undefined) tests.push(`${g.tests_passed} passed`);
          if (g.tests_failed !== null && g.tests_failed !== undefined) tests.push(`${g.tests_failed} failed`);
          const meta = [];
          if (tests.length) meta.push('tests: ' + tests.join(', '));
          if (g.exit_code !== null && g.exit_code !== undefined) meta.push(`exit ${g.exit_code}`);
          if (g.duration_ms !== null && g.duration_ms !== undefined) meta.push(fmtDuration(g.duration_ms));
          return h('li', { class: 'gate', 'data-state': state },
            h('div', { class: 'line' }, h('span', { class: 'path' }, g.command),
              h('span', { class: state === 'passed' ? 'badge ok' : (state === 'failed' ? 'badge bad' : 'badge run') }, state)),
            meta.length ? h('div', { class: 'meta tests' }, meta.join(' · ')) : null);
        })) : h('div', { class: 'empty' }, 'The gate has not run yet.'));
        const b = s.bisect;
        if (b) {
          const runs = `${b.gate_runs} gate run${b.gate_runs === 1 ? '' : 's'}`;
          const text = !b.finished ? `Bisecting ${b.tasks.length} integrated tasks… ${runs} so far`
            : (b.base_fails ? `The base itself fails the gate (${runs})`
              : (b.culprit ? `${b.culprit} is the first failing task (${runs})` : (b.message || 'Bisect ended')));
          p.gate.body.append(h('div', { class: 'line bisect', 'data-culprit': b.culprit || '' },
            h('span', { class: b.finished ? 'badge bad' : 'badge run' }, 'bisect'), ' ', text));
        }
      }
      // Apply.
      const applyKey = JSON.stringify(s.apply || null);
      if (p.apply.key !== applyKey) {
        p.apply.key = applyKey;
        const a = s.apply;
        setText(p.apply.count, a ? String(a.files.length) : '0');
        p.apply.body.replaceChildren(a ? h('ul', { class: 'list' },
          h('li', { class: 'applied' },
            h('div', { class: 'line' }, h('span', { class: a.conflicts.length ? 'badge bad' : 'badge ok' },
              a.conflicts.length ? 'conflicts' : 'applied'), `to ${a.target}: ${a.files.length} files`),
            a.branch ? h('div', { class: 'meta' }, `branch ${a.branch}${a.commit ? ' @ ' + a.commit.slice(0, 12) : ''}`) : null),
          a.conflicts.map((c) => h('li', null, h('span', { class: 'path' }, c),
            h('span', { class: 'meta' }, 'left in conflict with your edits'))))
          : h('div', { class: 'empty' }, 'Not applied yet.'));
      }
      // Claim violations (shown only when there are some).
      p.violations.card.hidden = s.violations.length === 0;
      if (p.violations.key !== s.violations.length) {
        p.violations.key = s.violations.length;
        setText(p.violations.count, String(s.violations.length));
        p.violations.body.replaceChildren(h('ul', { class: 'list' }, s.violations.map((v) => h('li', null,
          h('div', { class: 'line' }, v.task ? taskTag(v.task, this) : null, h('span', { class: 'meta' }, `policy ${v.policy}`)),
          v.paths.map((x) => h('div', { class: 'path' }, x))))));
      }
    }
  }

  function activityOf(t) {
    switch (t.status) {
      case 'waiting_locks':
        return { text: t.blocked_by.length ? `waiting for locks held by ${t.blocked_by.join(', ')}` : 'waiting for locks' };
      case 'retrying':
        if (t.retry) return { text: `attempt ${t.retry.attempt} in ${fmtDuration(t.retry.delay_ms)}: ${t.retry.reason}` };
        break;
      case 'failed': case 'timed_out': case 'cancelled': case 'skipped':
        if (t.reason) return { text: t.reason };
        break;
      case 'succeeded':
        if (t.files_changed.length) {
          const n = t.files_changed.length;
          const changed = `${n} file${n === 1 ? '' : 's'} changed`;
          if (!t.integrated) return { text: changed };
          // What reached the result, not what was attempted: a conflict may have dropped some.
          const lost = t.files_changed.filter((f) => !t.integrated_files.includes(f));
          if (!lost.length) return { text: `${changed}, integrated` };
          return {
            text: `${changed}, ${n - lost.length} integrated; not integrated: ${lost.join(', ')}`,
            bad: true,
          };
        }
        break;
      case 'queued':
        if (!t.attempt && t.after.length) return { text: `after ${t.after.join(', ')}` };
        break;
      default:
        break;
    }
    if (t.last_progress) return { tool: t.last_progress.tool, text: t.last_progress.message };
    if (t.last_output) return { text: t.last_output };
    return { text: '' };
  }

  // ---- the log of the selected task, followed by polling the log route ----

  class LogTail {
    constructor(page, task) {
      this.page = page;
      this.task = task;
      this.attempt = null; // null: follow the latest
      this.shown = null;
      this.offset = null;
      this.decoder = null;
      this.timer = null;
      this.stopped = false;
      this.busy = false;
      this.bytes = 0;
      this.follow = true;
      this.idle = 0;
      const can = page.features || new Set();
      this.views = ['transcript', 'raw', 'diff'].filter((v) => v === 'raw' || can.has(v));
      this.view = this.views[0];
      this.viewKey = null;
    }

    start() {
      const box = this.page.logBox;
      this.select = h('select', { 'aria-label': 'Attempt', onchange: () => this.choose(this.select.value) });
      this.followBox = h('input', { type: 'checkbox', checked: true, onchange: () => { this.follow = this.followBox.checked; this.scroll(); } });
      this.size = h('span', { class: 'dim' });
      this.pre = h('pre', { id: 'log-text', 'data-task': this.task, hidden: this.view !== 'raw' });
      this.doc = h('div', { id: 'transcript', class: 'transcript', 'data-task': this.task, hidden: this.view === 'raw' });
      const labels = { transcript: 'transcript', raw: 'raw output', diff: 'diff' };
      this.viewSel = h('select', { id: 'log-view', 'aria-label': 'View', onchange: () => this.setView(this.viewSel.value) },
        this.views.map((v) => h('option', { value: v }, labels[v])));
      this.viewSel.hidden = this.views.length < 2;
      box.replaceChildren(
        h('header', null, h('h2', null, 'Log'), h('code', null, this.task), this.viewSel, this.select,
          h('label', null, this.followBox, ' follow'), h('span', { class: 'spacer' }), this.size),
        this.doc, this.pre);
      this.onState();
      this.poll();
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
    }

    taskState() {
      return this.page.state.index.get(this.task);
    }

    onState() {
      const t = this.taskState();
      if (!t || this.stopped || !this.select) return;
      const attempts = Math.max(1, t.attempt);
      if (this.select.options.length !== attempts + 1) {
        const value = this.attempt === null ? 'latest' : String(this.attempt);
        this.select.replaceChildren(h('option', { value: 'latest' }, 'latest attempt'),
          ...Array.from({ length: attempts }, (_, i) => h('option', { value: String(i + 1) }, `attempt ${i + 1}`)));
        this.select.value = value;
      }
      const want = this.attempt === null ? t.attempt : this.attempt;
      if (this.shown !== null && want !== this.shown) this.reset();
      if (!this.timer && !this.busy && this.active()) this.poll();
    }

    active() {
      const t = this.taskState();
      return !!t && !FINISHED.has(t.status);
    }

    choose(value) {
      this.attempt = value === 'latest' ? null : Number(value);
      this.reset();
    }

    setView(view) {
      this.view = view;
      this.viewSel.value = view;
      this.pre.hidden = view !== 'raw';
      this.doc.hidden = view === 'raw';
      this.viewKey = null;
      this.reset();
    }

    // The transcript (or the diff) of the attempt, fetched whole while the task runs.
    async pollDoc(attempt) {
      this.busy = true;
      try {
        if (this.view === 'diff') {
          const res = await api(`api/runs/${enc(this.page.id)}/tasks/${enc(this.task)}/diff`, true);
          const text = await res.text();
          if (this.stopped) return;
          this.showDoc(text, () => [h('pre', { class: 'diff', id: 'diff-text' },
            text.trim() ? text : 'This task changed nothing.')]);
        } else {
          const t = await api(`api/runs/${enc(this.page.id)}/tasks/${enc(this.task)}/transcript${attempt ? `?attempt=${attempt}` : ''}`);
          if (this.stopped) return;
          this.showDoc(JSON.stringify(t), () => renderTranscript(t));
        }
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof AuthError) {
          showError(err, this.page);
          return;
        }
        this.showDoc(`error:${err.message}`, () => [h('p', { class: 'notice error' }, err.message)]);
      } finally {
        this.busy = false;
      }
      if (this.active()) this.later(1000);
    }

    showDoc(key, build) {
      if (this.viewKey === key) return;
      this.viewKey = key;
      this.doc.replaceChildren(...build());
      if (this.follow) this.doc.scrollTop = this.doc.scrollHeight;
    }

    reset() {
      clearTimeout(this.timer);
      this.timer = null;
      this.shown = null;
      this.offset = null;
      this.bytes = 0;
      this.idle = 0;
      this.pre.replaceChildren();
      this.viewKey = null;
      if (!this.busy) this.poll();
    }

    async poll() {
      if (this.stopped || this.busy) return;
      clearTimeout(this.timer);
      this.timer = null;
      const t = this.taskState();
      const attempt = this.attempt === null ? (t ? t.attempt : 0) : this.attempt;
      if (this.view !== 'raw') {
        this.pollDoc(attempt);
        return;
      }
      if (!attempt) {
        this.showFallback('No attempt has started yet.');
        this.later(1000);
        return;
      }
      const params = new URLSearchParams({ attempt: String(attempt) });
      if (this.offset === null) params.set('tail', String(LOG_TAIL));
      else params.set('offset', String(this.offset));
      this.busy = true;
      let more = false;
      try {
        const res = await api(`api/runs/${enc(this.page.id)}/tasks/${enc(this.task)}/log?${params}`, true);
        const body = await res.arrayBuffer();
        if (this.stopped) return;
        const start = Number(res.headers.get('x-forge-log-start'));
        const next = Number(res.headers.get('x-forge-log-offset'));
        const size = Number(res.headers.get('x-forge-log-size'));
        if (this.shown !== attempt) {
          this.shown = attempt;
          this.decoder = new TextDecoder('utf-8');
          this.pre.replaceChildren();
          if (start > 0) this.pre.append(h('span', { class: 'note' }, `… ${start} earlier bytes not shown\n`));
        }
        this.offset = next;
        const text = this.decoder.decode(new Uint8Array(body), { stream: true });
        if (text) {
          const fallback = this.pre.querySelector('.fallback');
          if (fallback) fallback.remove();
          this.append(text);
          this.idle = 0;
        } else {
          this.idle += 1;
          if (!this.bytes) this.showFallback(size ? '' : 'No output yet.');
        }
        setText(this.size, `${fmtBytes(size)}`);
        more = next < size;
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof AuthError) {
          showError(err, this.page);
          return;
        }
        this.showFallback(`Cannot read the log: ${err.message}`);
      } finally {
        this.busy = false;
      }
      // Follow while the task runs; after it finished, read until nothing new comes.
      if (more) this.later(0);
      else if (this.active() || this.idle < 2) this.later(this.active() ? 700 : 300);
    }

    later(ms) {
      if (this.stopped) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => { this.timer = null; this.poll(); }, ms);
    }

    append(text) {
      this.bytes += text.length;
      const last = this.pre.lastChild;
      if (last && last.nodeType === Node.TEXT_NODE) last.appendData(text);
      else this.pre.append(text);
      if (this.bytes > LOG_KEEP) {
        const node = this.pre.lastChild;
        const cut = node.data.indexOf('\n', node.data.length - LOG_KEEP / 2);
        if (cut > 0) {
          node.deleteData(0, cut + 1);
          this.bytes = node.data.length;
        }
      }
      this.scroll();
    }

    // While output.log has nothing yet, the output lines seen in events stand in for it.
    showFallback(note) {
      if (this.bytes) return;
      const lines = this.page.outputs.get(this.task) || [];
      let box = this.pre.querySelector('.fallback');
      if (!box) {
        box = h('span', { class: 'fallback' });
        this.pre.replaceChildren(box);
      }
      const text = lines.length ? lines.join('\n') + '\n' : '';
      const key = `${note}\u0000${text}`;
      if (box.dataset.key === key) return;
      box.dataset.key = key;
      box.replaceChildren(note ? h('span', { class: 'note' }, note + (text ? ' Output seen in events:\n' : '')) : '', text);
      this.scroll();
    }

    scroll() {
      if (this.follow) this.pre.scrollTop = this.pre.scrollHeight;
    }
  }

  // A transcript as forge_agents::Transcript serializes it (what `forge logs` prints).
  function toolHeading(c) {
    const counts = [];
    if (c.added !== null && c.added !== undefined && (c.added || !c.removed)) counts.push(`+${c.added}`);
    if (c.removed) counts.push(`\u2212${c.removed}`);
    return counts.length ? `${c.summary} (${counts.join(' ')})` : c.summary;
  }

  function renderTranscript(t) {
    const out = [];
    for (const e of t.entries || []) {
      switch (e.kind) {
        case 'text':
          out.push(h('div', { class: 't-text' }, e.text));
          break;
        case 'tool': {
          const mark = e.status === 'failed' ? '\u2717' : (e.status === 'ok' ? '\u25cf' : '\u25cb');
          const shown = e.output ? e.output.split('\n').length : 0;
          out.push(h('div', { class: 't-tool', 'data-status': e.status, 'data-tool': e.tool },
            h('div', { class: 't-head' }, h('span', { class: 't-mark' }, mark), ' ', toolHeading(e)),
            e.output ? h('pre', { class: 't-out' }, e.output) : null,
            e.output_lines > shown ? h('div', { class: 't-more' }, `\u2026 ${e.output_lines - shown} more line${e.output_lines - shown === 1 ? '' : 's'}`) : null));
          break;
        }
        case 'error':
          out.push(h('div', { class: 't-error' }, '\u2717 error: ', e.message));
          break;
        case 'notice':
          out.push(h('div', { class: 't-notice' }, '! ', e.message));
          break;
        case 'output':
          out.push(h('pre', { class: 't-output' }, e.text));
          break;
        default:
          break;
      }
    }
    if (t.result && (t.result.is_error || !out.length || out[out.length - 1].textContent !== t.result.text)) {
      out.push(h('div', { class: t.result.is_error ? 't-result bad' : 't-result' },
        t.result.is_error ? '\u2717 failed: ' : '\u2713 ', t.result.text));
    }
    const u = t.usage;
    if (u && (u.tokens_in || u.tokens_out || u.cost_usd !== null && u.cost_usd !== undefined)) {
      out.push(h('div', { class: 't-usage' }, `Usage: ${fmtTokens(u.tokens_in)} tokens in, ${fmtTokens(u.tokens_out)} out` +
        (u.cost_usd !== null && u.cost_usd !== undefined ? `, ${fmtCost(u.cost_usd)}` : '')));
    }
    if (!out.length) out.push(h('div', { class: 'empty' }, t.attempt ? 'No output yet.' : 'No attempt has started yet.'));
    return out;
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  // ---- start ----

  // For debugging in the console, and for the browser tests: the page's fold and stream stats.
  window.forgeDashboard = {
    get page() { return current ? (current instanceof RunPage ? 'run' : 'runs') : null; },
    state() { return current && current.state ? JSON.parse(JSON.stringify(current.state)) : null; },
    stats() { return current && current.stats ? Object.assign({}, current.stats) : null; },
    hasToken() { return token() !== ''; },
  };

  window.addEventListener('popstate', route);
  // A token pasted into the address of an open page (`#token=…`).
  window.addEventListener('hashchange', () => {
    if (!new URLSearchParams(location.hash.slice(1)).has('token')) return;
    takeTokenFromAddress();
    route();
  });
  document.addEventListener('DOMContentLoaded', () => {
    takeTokenFromAddress();
    const home = document.getElementById('home');
    home.addEventListener('click', (ev) => {
      if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
      ev.preventDefault();
      go('');
    });
    route();
  });
})();

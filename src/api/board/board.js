// presence-sync status board: a small ES module, no framework.
//
// Everything the daemon sends is put on the page with textContent or as
// attribute values this script names itself: names from the directory or
// the contact center are text, never markup. The token is kept in this
// tab's sessionStorage and sent only in the Authorization header.

const TOKEN_KEY = 'presence-sync.board.token';
const AGENT_PAGE = 50;
const DIRECTORY_PAGE = 100;
const DIRECTORY_REFRESH_MAX = 500;
const DIRECTORY_REFRESH_MS = 10000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 30000;
// Replication lag is shown as a problem once it lasts longer than this.
const LAG_WARN_SECONDS = 5;

const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---- time -----------------------------------------------------------------

function ago(iso) {
  if (!iso) return '';
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return span(seconds, 'ago', 'in');
}

function until(iso) {
  if (!iso) return '';
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  return seconds >= 0 ? 'for ' + duration(seconds) : 'until ' + new Date(iso).toLocaleTimeString();
}

function span(seconds, past, future) {
  const abs = Math.abs(seconds);
  const text = duration(abs);
  return seconds >= 0 ? `${text} ${past}` : `${future} ${text}`;
}

function duration(seconds) {
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const h = Math.floor(s / 3600);
  return `${h} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A time, relative ("3 min ago", "for 12 s"); it keeps counting (see tickTimes). */
function timeEl(iso, text) {
  if (!iso) return null;
  const mode = text.endsWith(' ago') ? 'ago' : text.startsWith('for ') ? 'until' : null;
  return el('time', { datetime: iso, title: new Date(iso).toLocaleString(), 'data-mode': mode }, text);
}

function tickTimes() {
  for (const node of document.querySelectorAll('#board time[data-mode]')) {
    const iso = node.getAttribute('datetime');
    node.textContent = node.dataset.mode === 'ago' ? ago(iso) : until(iso);
  }
}

// ---- presence in Teams' words and colours ---------------------------------

const AVAILABILITY = {
  Available: ['Available', 'available'],
  AvailableIdle: ['Available', 'available'],
  Busy: ['Busy', 'busy'],
  BusyIdle: ['Busy', 'busy'],
  DoNotDisturb: ['Do not disturb', 'dnd'],
  BeRightBack: ['Be right back', 'brb'],
  Away: ['Away', 'away'],
  Offline: ['Offline', 'offline'],
  PresenceUnknown: ['Unknown', 'unknown'],
};

const ACTIVITY = {
  InACall: 'In a call',
  InAConferenceCall: 'In a conference call',
  InAMeeting: 'In a meeting',
  Presenting: 'Presenting',
  UrgentInterruptionsOnly: 'Urgent interruptions only',
  OffWork: 'Off work',
  OutOfOffice: 'Out of office',
  BeRightBack: 'Be right back',
  DoNotDisturb: 'Do not disturb',
  Available: 'Available',
  Busy: 'Busy',
  Away: 'Away',
  Offline: 'Offline',
  Inactive: 'Inactive',
  PresenceUnknown: 'Unknown',
};

function words(camel) {
  return String(camel).replace(/([a-z])([A-Z])/g, '$1 $2');
}

/** A presence pill: the colour dot and the word, and the activity when it says more. */
function presenceEl(presence) {
  if (!presence) return el('span', { class: 'presence unknown' }, 'Unknown');
  const [word, cls] = AVAILABILITY[presence.availability] || [words(presence.availability), 'unknown'];
  const activity = ACTIVITY[presence.activity] || words(presence.activity || '');
  const pill = el('span', { class: `presence ${cls}`, 'data-availability': presence.availability }, word);
  if (activity && activity !== word) return el('span', {}, pill, el('span', { class: 'sub' }, activity));
  return pill;
}

function setBy(who, since, rule) {
  const parts = [];
  if (who) parts.push(`set by ${who}`);
  if (rule) parts.push(`rule ${rule}`);
  const line = el('span', { class: 'sub' }, parts.join(', '));
  if (since) line.append(parts.length ? ' ' : '', timeEl(since, ago(since)));
  return line;
}

// ---- the API ---------------------------------------------------------------

class Refused extends Error {}

let token = null;

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (response.status === 401) throw new Refused('the token was refused');
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok && response.status !== 503) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function failed(error, where) {
  if (error instanceof Refused) {
    signOut('The daemon no longer accepts this token. Sign in again.');
    return;
  }
  where.replaceChildren(el('span', { class: 'error' }, `Cannot read this view: ${error.message}`));
}

// ---- sign-in ---------------------------------------------------------------

async function signIn(candidate) {
  token = candidate;
  try {
    await api('/v1/agents?limit=1');
  } catch (error) {
    token = null;
    return error instanceof Refused
      ? 'That token was refused. Check it and try again (the API token or the viewer token).'
      : `The daemon cannot be reached: ${error.message}`;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  return null;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  stopStream();
  $('board').hidden = true;
  $('signin').hidden = false;
  $('token').value = '';
  const error = $('signin-error');
  error.textContent = message || '';
  error.hidden = !message;
  $('token').focus();
}

async function showBoard() {
  $('signin').hidden = true;
  $('signin-error').hidden = true;
  $('board').hidden = false;
  selectTab(currentTab, false);
  await Promise.all([loadAgents(), loadQueues(), loadHealth()]);
  startStream();
}

// ---- tabs ------------------------------------------------------------------

const TABS = ['agents', 'queues', 'directory', 'health'];
let currentTab = 'agents';
let directoryLoaded = false;

function selectTab(name, focus) {
  currentTab = name;
  for (const tab of TABS) {
    const button = $(`tab-${tab}`);
    const selected = tab === name;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`view-${tab}`).hidden = !selected;
  }
  if (focus) $(`tab-${name}`).focus();
  if (name === 'directory' && !directoryLoaded) loadDirectory(false);
}

function tabKeys(event) {
  const index = TABS.indexOf(currentTab);
  let next = null;
  if (event.key === 'ArrowRight') next = TABS[(index + 1) % TABS.length];
  else if (event.key === 'ArrowLeft') next = TABS[(index + TABS.length - 1) % TABS.length];
  else if (event.key === 'Home') next = TABS[0];
  else if (event.key === 'End') next = TABS[TABS.length - 1];
  if (next) {
    event.preventDefault();
    selectTab(next, true);
  }
}

// ---- agents ----------------------------------------------------------------

const agents = {
  rows: new Map(), // id -> tr on this page
  cursors: [null], // the cursor of each page seen, for Previous
  page: 0,
  next: null,
  search: '',
};

function agentsPath() {
  const params = new URLSearchParams({ limit: String(AGENT_PAGE) });
  const cursor = agents.cursors[agents.page];
  if (cursor) params.set('cursor', cursor);
  if (agents.search) params.set('search', agents.search);
  return `/v1/agents?${params}`;
}

async function loadAgents() {
  const body = $('agents-body');
  let list;
  try {
    list = await api(agentsPath());
  } catch (error) {
    failed(error, body);
    return;
  }
  agents.rows.clear();
  agents.next = list.next_cursor;
  const rows = list.agents.map((agent) => {
    const row = agentRow(agent);
    agents.rows.set(agent.id, row);
    return row;
  });
  if (rows.length === 0) {
    rows.push(el('tr', {}, el('td', { colspan: 5, class: 'hint' },
      agents.search ? 'No agent matches.' : 'No agents yet.')));
  }
  body.replaceChildren(...rows);
  const first = agents.page * AGENT_PAGE;
  $('agent-count').textContent = `${list.total} agent${list.total === 1 ? '' : 's'}${agents.search ? ' match' : ''}`;
  $('agents-page').textContent = list.agents.length
    ? `${first + 1}–${first + list.agents.length} of ${list.total}` : '';
  $('agents-prev').disabled = agents.page === 0;
  $('agents-next').disabled = !agents.next;
}

function agentRow(agent) {
  const cc = agent.cc;
  const teams = agent.teams;
  const sync = agent.sync;

  const who = el('td', {},
    el('span', { class: 'name' }, agent.display_name || agent.id),
    el('span', { class: 'sub' }, agent.id),
    agent.upn ? el('span', { class: 'sub' }, agent.upn) : null,
    agent.linked ? null : el('span', { class: 'flag warn' }, 'not linked to Teams'));

  const ccCell = el('td', { class: 'cc-status' },
    el('span', { class: 'name' }, cc.status || '—'),
    setBy(cc.set_by, cc.since, null));
  if (!cc.in_profile && cc.status) ccCell.append(el('span', { class: 'flag warn' }, 'not in its profile'));
  if (cc.pending_until) ccCell.append(el('span', { class: 'flag' }, 'propagates ', timeEl(cc.pending_until, until(cc.pending_until))));
  if (cc.requested) {
    ccCell.append(el('span', { class: 'sub' },
      `asked for ${cc.requested.status} (${cc.requested.kind === 'restore' ? 'restoring' : 'by a rule'}) `,
      timeEl(cc.requested.at, ago(cc.requested.at))));
  }

  const teamsCell = el('td', { class: 'teams-presence' },
    presenceEl(teams.presence),
    setBy(teams.set_by, teams.since, null));
  if (teams.blocking) teamsCell.append(el('span', { class: 'flag warn' }, 'blocks routing'));
  if (teams.target && teams.target.action === 'set' && teams.target.presence) {
    const p = teams.target.presence;
    teamsCell.append(el('span', { class: 'sub' }, `our session: ${words(p.availability)}/${words(p.activity)}`));
  }

  const routing = agent.routing || {};
  const reasons = [...new Set([...(agent.not_routable_because || []), ...(routing.not_eligible_because || [])])];
  const routable = el('td', { class: 'routable' },
    el('span', { class: agent.routable ? 'yes' : 'no' }, agent.routable ? 'Routable' : 'Not routable'),
    routing.eligible ? el('span', { class: 'sub' }, 'eligible for a contact now') : null,
    routing.offered ? el('span', { class: 'sub' }, `offered ${routing.offered}`) : null,
    reasons.length ? el('ul', { class: 'reasons' }, reasons.map((r) => el('li', {}, r))) : null);

  const state = el('td', { class: 'sync' });
  if (sync.debouncing_until) state.append(el('span', { class: 'flag' }, 'debouncing ', timeEl(sync.debouncing_until, until(sync.debouncing_until))));
  if (sync.suspended) {
    state.append(el('span', { class: 'flag warn' },
      `loop guard: ${sync.suspended.flows.map(words).join(', ')} suspended `,
      timeEl(sync.suspended.until, until(sync.suspended.until))));
  }
  if (sync.teams_override_since) state.append(el('span', { class: 'flag warn' }, 'Teams manual override ', timeEl(sync.teams_override_since, ago(sync.teams_override_since))));
  if (sync.teams_outranked_since) state.append(el('span', { class: 'flag' }, 'outranked in Teams ', timeEl(sync.teams_outranked_since, ago(sync.teams_outranked_since))));
  if (sync.write_in_flight) state.append(el('span', { class: 'flag' }, 'writing to Teams'));
  if (sync.last_error) state.append(el('span', { class: 'sub error' }, `Graph error: ${sync.last_error.message} `, timeEl(sync.last_error.at, ago(sync.last_error.at))));
  if (sync.restore) state.append(el('span', { class: 'sub' }, `rule ${sync.restore.rule} will restore ${sync.restore.status}`));
  if (sync.last_decision) state.append(el('span', { class: 'sub' }, sync.last_decision));
  if (!state.childNodes.length) state.append(el('span', { class: 'sub' }, 'in sync'));

  return el('tr', { 'data-agent-id': agent.id }, who, ccCell, teamsCell, routable, state);
}

function agentChanged(agent) {
  const row = agents.rows.get(agent.id);
  if (!row) return;
  const fresh = agentRow(agent);
  row.replaceWith(fresh);
  agents.rows.set(agent.id, fresh);
}

function agentRemoved(id) {
  const row = agents.rows.get(id);
  if (!row) return;
  row.remove();
  agents.rows.delete(id);
}

// ---- queues ----------------------------------------------------------------

let queueWaits = []; // [cell, longest wait in seconds, read at]

function renderQueues(queues) {
  queueWaits = [];
  const now = Date.now();
  const rows = queues.map((q) => {
    const wait = el('td', { class: 'num' }, q.longest_wait_seconds == null ? '—' : duration(q.longest_wait_seconds));
    if (q.longest_wait_seconds != null) queueWaits.push([wait, q.longest_wait_seconds, now]);
    return el('tr', { 'data-queue': q.name },
      el('th', { scope: 'row' }, q.name),
      el('td', {}, q.strategy),
      el('td', { class: 'num' }, String(q.waiting)),
      wait,
      el('td', { class: 'num' }, `${q.eligible_agents} of ${q.agents}`),
      el('td', { class: 'num' }, String(q.offered)),
      el('td', { class: 'num' }, String(q.completed_today ?? '—')),
      el('td', { class: 'num' }, String(q.totals.completed)));
  });
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 8, class: 'hint' }, 'No queues are configured.')));
  $('queues-body').replaceChildren(...rows);
}

function tickQueueWaits() {
  const now = Date.now();
  for (const [cell, seconds, at] of queueWaits) cell.textContent = duration(seconds + (now - at) / 1000);
}

async function loadQueues() {
  try {
    const list = await api('/v1/queues');
    renderQueues(list.queues);
  } catch (error) {
    failed(error, $('queues-body'));
  }
}

// ---- directory -------------------------------------------------------------

const directory = { next: null, shown: 0 };

function directoryPath(cursor, limit = DIRECTORY_PAGE) {
  const params = new URLSearchParams({ limit: String(limit) });
  const search = $('directory-search').value.trim();
  const presence = $('directory-presence').value;
  const department = $('directory-department').value.trim();
  if (search) params.set('search', search);
  if (presence) params.set('presence', presence);
  if (department) params.set('department', department);
  if ($('directory-phone').checked) params.set('has_phone', 'true');
  if (cursor) params.set('cursor', cursor);
  return `/v1/directory?${params}`;
}

async function loadDirectory(more, refresh = false) {
  directoryLoaded = true;
  const body = $('directory-body');
  // A refresh reads again what is shown (presences move), up to the
  // directory's largest page.
  const limit = refresh ? Math.min(Math.max(directory.shown, DIRECTORY_PAGE), DIRECTORY_REFRESH_MAX) : DIRECTORY_PAGE;
  let page;
  try {
    page = await api(directoryPath(more ? directory.next : null, limit));
  } catch (error) {
    if (error.status === 404) {
      body.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'hint' }, 'This daemon does not serve the directory.')));
      return;
    }
    failed(error, body);
    return;
  }
  const rows = page.users.map(directoryRow);
  if (more) body.append(...rows);
  else body.replaceChildren(...rows);
  directory.shown = (more ? directory.shown : 0) + page.users.length;
  directory.next = page.next_cursor;
  if (!more && page.users.length === 0) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'hint' }, 'Nobody matches.')));
  }
  $('directory-count').textContent = `${page.total} ${page.total === 1 ? 'person' : 'people'}, ${directory.shown} shown`;
  $('directory-more').disabled = !directory.next;
}

function directoryRow(user) {
  const phone = user.direct_dial
    ? el('a', { class: 'tel', href: `tel:${user.direct_dial}`, 'aria-label': `Call ${user.display_name || user.upn} at ${user.direct_dial}` }, user.direct_dial)
    : el('span', { class: 'sub' }, 'no direct-dial number');
  return el('tr', { 'data-user-id': user.id },
    el('td', {},
      el('span', { class: 'name' }, user.display_name || user.upn || user.id),
      el('span', { class: 'sub' }, user.mail || user.upn || ''),
      user.agent ? el('span', { class: 'flag' }, `agent ${user.agent}`) : null),
    el('td', {}, presenceEl(user.presence),
      user.presence_since ? el('span', { class: 'sub' }, 'since ', timeEl(user.presence_since, ago(user.presence_since))) : null),
    el('td', {}, user.department || ''),
    el('td', {}, user.job_title || ''),
    el('td', {}, phone));
}

/** The directory is read in its own slower tier: the view reads its rows
 * again while it is showing, unless the focus is on one of them. */
function refreshDirectory() {
  if (!token || currentTab !== 'directory' || !directoryLoaded || document.hidden) return;
  if ($('directory-body').contains(document.activeElement)) return;
  loadDirectory(false, true);
}

let directoryTimer = null;
function directoryChanged() {
  clearTimeout(directoryTimer);
  directoryTimer = setTimeout(() => loadDirectory(false), 250);
}

// ---- health ----------------------------------------------------------------

function pair(dl, term, value) {
  dl.append(el('dt', {}, term), el('dd', {}, value));
}

function renderHealth(health) {
  const ready = $('health-ready');
  ready.textContent = health.ready ? 'Ready' : 'Not ready';
  ready.className = `ready ${health.ready ? 'ok' : 'bad'}`;
  const graphCheck = (health.checks || []).find((c) => c.name === 'graph');
  const stats = health.stats || {};
  const poll = health.poll || {};

  const graph = $('health-graph');
  graph.replaceChildren();
  pair(graph, 'Reachable and authorised', graphCheck ? `${graphCheck.ok ? 'Yes' : 'No'}: ${graphCheck.detail}` : 'unknown');
  pair(graph, 'Access token', stats.token_expires_in_seconds == null
    ? 'none held' : `valid for ${duration(stats.token_expires_in_seconds)}`);
  if (stats.graph_budget_per_30s) {
    pair(graph, 'Budget in use', `${stats.graph_budget_in_use} of ${stats.graph_budget_per_30s} requests in the last 30 s`);
  }
  pair(graph, 'Throttled (429)', String(stats.graph_throttled_total ?? '—'));
  pair(graph, 'Failed calls', String(stats.graph_failed_total ?? '—'));
  if (poll.rate_limit != null) pair(graph, 'Rate allowed now', `${poll.rate_limit.toFixed(1)} requests/s`);
  pair(graph, 'App', `${health.graph.client_id} in ${health.graph.tenant_id} (${health.graph.auth})`);
  const perms = health.permissions;
  const missing = (perms && perms.missing) || [];
  if (perms) pair(graph, 'Permissions', permissionsEl(perms, missing));

  const sync = $('health-sync');
  sync.replaceChildren();
  const tier = (p) => (p == null || p.users == null ? '—'
    : `${p.users} every ${duration(p.round_seconds)}; oldest read ${p.oldest_read_seconds == null ? '—' : duration(p.oldest_read_seconds) + ' ago'}`);
  pair(sync, 'Agents read (agent tier)', tier(health.poll));
  // The directory's slower tier (everyone who is not an agent), when served.
  if (health.directory_poll) pair(sync, 'Everyone else read (directory tier)', tier(health.directory_poll));
  pair(sync, 'Loop suspensions', String(stats.loop_suspensions_total ?? '—'));
  pair(sync, 'Teams manual overrides', String(stats.teams_overrides_total ?? '—'));
  pair(sync, 'Outbox (writes waiting)', String(stats.outbox_depth ?? '—'));

  renderSubscriptions(health.subscriptions, tier);
  renderCluster(health.cluster);

  $('health-checks').replaceChildren(...(health.checks || []).map((c) =>
    el('li', {}, el('span', { class: c.ok ? 'yes' : 'no' }, c.ok ? 'OK' : 'Failing'), ` ${c.name}: ${c.detail}`)));
  $('tasks-body').replaceChildren(...(health.tasks || []).map((t) =>
    el('tr', {}, el('th', { scope: 'row' }, t.name), el('td', {}, t.state), el('td', {}, t.detail))));

  const errors = [];
  if (stats.token_error) errors.push(`token: ${stats.token_error}`);
  for (const m of missing) errors.push(`permission ${m.permission} missing: ${m.fix}`);
  for (const a of (health.subscriptions && health.subscriptions.accounts) || []) {
    if (a.state !== 'ok') errors.push(`service account ${a.account}: ${a.error || a.state}; fix: ${a.fix || 'sign it in'}`);
  }
  for (const t of health.tasks || []) if (t.state === 'degraded' || t.state === 'failed') errors.push(`${t.name}: ${t.detail}`);
  for (const c of health.checks || []) if (!c.ok) errors.push(`${c.name}: ${c.detail}`);
  $('health-errors').replaceChildren(...(errors.length ? errors : ['none']).map((e) => el('li', {}, e)));
}

/** Presence subscriptions, when enabled: users per channel, the reads
 * saved, notifications, and each service account with its subscription
 * (a failed one with the command that fixes it). */
function renderSubscriptions(subs, tier) {
  const card = $('health-subscriptions-card');
  card.hidden = !subs;
  if (!subs) return;
  const dl = $('health-subscriptions');
  dl.replaceChildren();
  pair(dl, 'Users by notification', String(subs.users_subscribed));
  pair(dl, 'Users by polling alone', String(subs.users_polled));
  pair(dl, 'Reconciliation reads', tier(subs.reconcile));
  pair(dl, 'Graph reads saved', `${Math.round(subs.graph_reads_saved_per_minute)} per minute`);
  const n = subs.notifications || {};
  pair(dl, 'Notifications', `${n.received_total ?? 0} received, ${n.applied_total ?? 0} applied, `
    + `${n.duplicates_total ?? 0} duplicates, ${n.rejected_total ?? 0} rejected`);
  if (n.last_delay_seconds != null) pair(dl, 'Latest delay', duration(n.last_delay_seconds));
  if (subs.accounts_needed > 0) {
    pair(dl, 'Accounts needed', `${subs.accounts_needed} more service account(s) for full coverage (650 users each)`);
  }
  $('health-accounts').replaceChildren(...(subs.accounts || []).map((a) => {
    const sub = a.subscription || {};
    const ok = a.state === 'ok';
    const item = el('li', { 'data-account': a.account },
      el('span', { class: ok ? 'yes' : 'no' }, ok ? 'OK' : 'Failing'),
      ` ${a.account}: subscription ${String(sub.state || 'idle').replaceAll('_', ' ')}, `
        + `watching ${sub.watching ?? 0} of ${sub.assigned ?? 0}`
        + (sub.expires_at ? `, expires ${new Date(sub.expires_at).toLocaleTimeString()}` : ''));
    if (!ok) {
      item.append(el('div', { class: 'account-error' }, a.error || a.state));
      if (a.fix) item.append(el('code', { class: 'fix' }, a.fix));
    } else if (sub.last_error) {
      item.append(el('div', { class: 'account-error' }, sub.last_error));
    }
    return item;
  }));
}

// node id -> when the board first saw that node behind the log (ms).
const nodesBehindSince = new Map();

/** In a cluster (absent on a single daemon): this node's role, the lease
 * holder, its place in the commit log and its lag, the NATS connection,
 * every node's last report, takeovers and step-downs. */
function renderCluster(cluster) {
  const card = $('health-cluster-card');
  card.hidden = !cluster;
  if (!cluster) {
    nodesBehindSince.clear();
    return;
  }
  const role = String(cluster.role || 'starting');
  const badge = $('health-cluster-role');
  badge.className = `role-badge ${role}`;
  badge.dataset.role = role;
  badge.textContent = role === 'active' ? 'Active'
    : role === 'standby' ? 'Standby' : 'Starting (connecting to NATS or restoring)';

  const dl = $('health-cluster');
  dl.replaceChildren();
  pair(dl, 'This node', `${cluster.node_id} (tenant ${cluster.tenant})`);
  const holder = cluster.lease_holder;
  pair(dl, 'Lease holder', holder
    ? el('span', { class: 'cluster-holder' }, `${holder.node_id} at ${holder.api_url}`,
      holder.since ? el('span', { class: 'sub' }, 'since ', timeEl(holder.since, ago(holder.since))) : null)
    : el('span', { class: 'no' }, 'nobody (a takeover is under way)'));
  pair(dl, 'Log position', cluster.log_last == null
    ? String(cluster.position) : `${cluster.position} of ${cluster.log_last}`);
  const lagging = cluster.lag_records > 0 && cluster.lag_seconds > LAG_WARN_SECONDS;
  pair(dl, 'Replication lag', el('span', { class: lagging ? 'cluster-lag lagging' : 'cluster-lag' },
    cluster.lag_records > 0
      ? `${cluster.lag_records} record${cluster.lag_records === 1 ? '' : 's'} behind for ${duration(cluster.lag_seconds)}`
      : 'none'));
  const nats = cluster.nats || {};
  const natsEl = el('span', { class: 'cluster-nats' },
    el('span', { class: nats.connected ? 'yes' : 'no' }, nats.connected ? 'Connected' : 'Not connected'),
    nats.connected && nats.server ? ` to ${nats.server}` : null);
  if (nats.error) natsEl.append(el('div', { class: 'error' }, nats.error));
  pair(dl, 'NATS', natsEl);
  pair(dl, 'Takeovers', String(cluster.takeovers ?? 0));
  pair(dl, 'Step-downs', String(cluster.step_downs ?? 0));
  if (cluster.last_step_down) pair(dl, 'Last step-down', cluster.last_step_down);

  const now = Date.now();
  const seen = new Set();
  const rows = (cluster.nodes || []).map((node) => {
    seen.add(node.node_id);
    const behind = cluster.log_last == null ? 0 : Math.max(0, cluster.log_last - node.position);
    if (behind === 0) nodesBehindSince.delete(node.node_id);
    else if (!nodesBehindSince.has(node.node_id)) nodesBehindSince.set(node.node_id, now);
    const since = behind > 0 ? nodesBehindSince.get(node.node_id) : null;
    const nodeRole = String(node.role || '');
    return el('tr', { 'data-node-id': node.node_id },
      el('th', { scope: 'row' },
        el('span', { class: 'name' }, node.node_id),
        node.node_id === cluster.node_id ? el('span', { class: 'sub' }, 'this node') : null,
        node.api_url ? el('span', { class: 'sub' }, node.api_url) : null),
      el('td', { class: `node-role ${nodeRole}` }, nodeRole),
      el('td', { class: 'num' }, String(node.position)),
      el('td', { class: 'num node-lag', 'data-behind-since': since },
        behind === 0 ? '0' : `${behind} record${behind === 1 ? '' : 's'}`),
      el('td', {}, timeEl(node.at, ago(node.at)) || '—'));
  });
  for (const id of [...nodesBehindSince.keys()]) if (!seen.has(id)) nodesBehindSince.delete(id);
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 5, class: 'hint' }, 'No node has reported yet.')));
  $('cluster-nodes-body').replaceChildren(...rows);
  tickClusterLag();
}

/** A node behind the log is highlighted once it has been behind for a few
 * seconds, whether or not a new report came meanwhile. */
function tickClusterLag() {
  const now = Date.now();
  for (const cell of document.querySelectorAll('#cluster-nodes-body td[data-behind-since]')) {
    cell.classList.toggle('lagging', now - Number(cell.dataset.behindSince) > LAG_WARN_SECONDS * 1000);
  }
}

/** The Graph permissions: all granted, or each missing one with what it
 * stops, and the tenant's admin-consent link (only an http(s) address). */
function permissionsEl(perms, missing) {
  if (missing.length === 0) {
    return `all granted (${(perms.needed || []).join(', ') || 'none needed'})`;
  }
  const consent = perms.consent_url && /^https?:\/\//.test(perms.consent_url)
    ? el('a', { class: 'consent', href: perms.consent_url, rel: 'noopener noreferrer', target: '_blank' }, 'Grant admin consent')
    : null;
  return el('div', { class: 'permissions' },
    el('ul', {}, ...missing.map((m) => el('li', { 'data-permission': m.permission },
      el('span', { class: 'no' }, `${m.permission} missing`),
      ` — stops ${(m.stops || []).join(', ').replaceAll('_', ' ')}`))),
    consent);
}

async function loadHealth() {
  try {
    renderHealth(await api('/v1/health'));
  } catch (error) {
    failed(error, $('health-errors'));
  }
}

// ---- the live stream -------------------------------------------------------

let stream = null; // AbortController of the open stream
let reconnectDelay = RECONNECT_MIN_MS;
let reconnectTimer = null;

function live(text, on) {
  const node = $('live');
  node.textContent = text;
  node.classList.toggle('on', on);
}

function stopStream() {
  clearTimeout(reconnectTimer);
  if (stream) stream.abort();
  stream = null;
}

async function startStream() {
  stopStream();
  const controller = new AbortController();
  stream = controller;
  let first = true;
  try {
    const response = await fetch('/v1/board/stream', {
      headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
      cache: 'no-store',
      credentials: 'omit',
      signal: controller.signal,
    });
    if (response.status === 401) {
      signOut('The daemon no longer accepts this token. Sign in again.');
      return;
    }
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    live('Live', true);
    reconnectDelay = RECONNECT_MIN_MS;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
        if (data) {
          apply(JSON.parse(data), first);
          first = false;
        }
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  }
  if (stream !== controller || !token) return;
  // The daemon stopped or the connection broke: come back, then read again
  // what may have been missed.
  live(`Reconnecting in ${Math.round(reconnectDelay / 1000)} s…`, false);
  reconnectTimer = setTimeout(async () => {
    await Promise.all([loadAgents(), loadQueues(), loadHealth()]);
    startStream();
  }, reconnectDelay);
  reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
}

let agentsReload = null;
/** Reads the page of agents again, once, a little later. */
function reloadAgentsSoon() {
  if (agentsReload) return;
  agentsReload = setTimeout(() => {
    agentsReload = null;
    loadAgents();
  }, 1000);
}

function apply(update, first) {
  if (update.resync && !first) loadAgents();
  for (const agent of update.agents || []) agentChanged(agent);
  for (const id of update.removed || []) agentRemoved(id);
  // A new agent, or one gone, moves the pages and the count; an agent on
  // another page changing does not concern this one.
  // On the last page, an agent not shown with an id after the page's start
  // (ids are ASCII: the daemon's order) is new here.
  const after = agents.cursors[agents.page];
  const arrived = !agents.next && (update.agents || []).some(
    (a) => !agents.rows.has(a.id) && (after === null || a.id > after));
  if ((update.removed || []).length || arrived) reloadAgentsSoon();
  if (update.queues) renderQueues(update.queues);
  if (update.health) renderHealth(update.health);
}

// ---- wiring ----------------------------------------------------------------

function wire() {
  $('signin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const candidate = $('token').value.trim();
    const error = $('signin-error');
    if (!candidate) {
      error.textContent = 'Enter the API token or the viewer token.';
      error.hidden = false;
      return;
    }
    $('signin-button').disabled = true;
    const refusal = await signIn(candidate);
    $('signin-button').disabled = false;
    if (refusal) {
      error.textContent = refusal;
      error.hidden = false;
      $('token').select();
      return;
    }
    $('token').value = '';
    showBoard();
  });
  $('signout').addEventListener('click', () => signOut(null));
  for (const tab of TABS) {
    $(`tab-${tab}`).addEventListener('click', () => selectTab(tab, false));
    $(`tab-${tab}`).addEventListener('keydown', tabKeys);
  }
  let searchTimer = null;
  $('agent-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      agents.search = $('agent-search').value.trim();
      agents.cursors = [null];
      agents.page = 0;
      loadAgents();
    }, 250);
  });
  $('agents-next').addEventListener('click', () => {
    if (!agents.next) return;
    agents.cursors[agents.page + 1] = agents.next;
    agents.page += 1;
    loadAgents();
  });
  $('agents-prev').addEventListener('click', () => {
    if (agents.page === 0) return;
    agents.page -= 1;
    loadAgents();
  });
  $('directory-form').addEventListener('submit', (event) => {
    event.preventDefault();
    loadDirectory(false);
  });
  for (const id of ['directory-search', 'directory-department']) $(id).addEventListener('input', directoryChanged);
  for (const id of ['directory-presence', 'directory-phone']) $(id).addEventListener('change', () => loadDirectory(false));
  $('directory-more').addEventListener('click', () => loadDirectory(true));
  setInterval(tickQueueWaits, 1000);
  setInterval(tickClusterLag, 1000);
  setInterval(tickTimes, 5000);
  setInterval(refreshDirectory, DIRECTORY_REFRESH_MS);
}

wire();
const kept = sessionStorage.getItem(TOKEN_KEY);
if (kept) {
  signIn(kept).then((refusal) => (refusal ? signOut(refusal) : showBoard()));
} else {
  $('token').focus();
}

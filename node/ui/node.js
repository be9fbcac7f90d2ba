// One node's page: its identity, peers and orders, live from GET /v2/events, and the chosen
// order's log as a chain (GET /v2/orders/{ref}/log).
import { api, clock, el, follow, forgetToken, rememberToken, short, token } from '/ui/live.js';

const $ = (id) => document.getElementById(id);
let bearer = null;
let selected = null;
let refreshTimer = null;
let stop = null;

function setStatus(text, kind) {
  const status = $('status');
  status.textContent = text;
  status.className = `status ${kind}`;
  document.body.dataset.status = kind;
}

function showLogin(message) {
  stop?.();
  $('main').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message ?? '';
  setStatus('no token', 'down');
}

function start() {
  $('login').hidden = true;
  $('main').hidden = false;
  setStatus('connecting', 'connecting');
  stop = follow('/v2/events', bearer, {
    onEvent,
    onDown: (reason) => setStatus(`not answering (${reason})`, 'down'),
    onDenied: (message) => {
      forgetToken();
      showLogin(`the token was refused: ${message}`);
    },
  });
}

function onEvent(name, data) {
  if (name === 'snapshot') {
    setStatus('live', 'up');
    document.title = `dta ${data.name}`;
    $('name').textContent = data.name;
    $('roles').replaceChildren(...data.roles.map((role) => el('span', { class: `role role-${role}` }, role)));
    $('identity').replaceChildren(
      el('dt', {}, 'identity'), el('dd', { class: 'mono' }, data.identity),
      el('dt', {}, 'peer id'), el('dd', { class: 'mono' }, data.peer_id ?? ''),
    );
    showPeers(data.peers);
    scheduleRefresh();
  } else if (name === 'peers') {
    showPeers(data.peers);
  } else if (name === 'record') {
    scheduleRefresh();
    if (selected && selected.reference === data.reference) {
      showLog();
    }
  }
}

function showPeers(peers) {
  $('peer-count').textContent = `(${peers.length})`;
  $('peers').replaceChildren(...peers.map((peer) => el('li', {
    class: 'chip', 'data-peer': peer.peer_id, title: peer.identity ?? peer.peer_id,
  }, peer.name ?? short(peer.peer_id))));
}

// Order changes come in bursts: the table is read again at most every 300 ms.
function scheduleRefresh() {
  if (refreshTimer) {
    return;
  }
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try {
      showOrders(await api('/v2/orders', bearer));
      $('orders-error').textContent = '';
    } catch (error) {
      $('orders-error').textContent = `orders: ${error.message}`;
    }
  }, 300);
}

function policyText(policy) {
  if (!policy) {
    return '—';
  }
  const latest = policy.requests?.at(-1);
  if (!latest) {
    return `${policy.groups.length} group(s), no release asked`;
  }
  const verdict = latest.policy;
  if (verdict.now === 'wait') {
    const missing = (verdict.missing ?? []).map((m) => `${m.group} ${m.approvals}/${m.needed}`);
    return `release ${latest.sequence}: waiting${missing.length ? ` (${missing.join(', ')})` : ''}`;
  }
  if (verdict.now === 'refused') {
    return `release ${latest.sequence}: refused, ${verdict.why}`;
  }
  return `release ${latest.sequence}: allowed`;
}

function showOrders(orders) {
  $('order-count').textContent = `(${orders.length})`;
  const rows = orders.map((order) => {
    const chosen = selected && selected.reference === order.reference && selected.principal === order.principal;
    return el('tr', {
      class: chosen ? 'selected' : '',
      'data-order': order.reference,
      'data-role': order.role,
      'data-state': order.state,
      onclick: () => {
        selected = { reference: order.reference, principal: order.principal };
        showLog();
        scheduleRefresh();
      },
    },
    el('td', { class: 'mono' }, order.reference),
    el('td', {}, order.role),
    el('td', {}, el('span', { class: `state state-${order.state}` }, order.state)),
    el('td', {}, policyText(order.policy)),
    el('td', {}, (order.waiting_for ?? []).map((w) => `${short(w.identity)} (${w.for})`).join(', ') || '—'),
    el('td', {}, order.certificate ? '✓' : ''));
  });
  $('orders').tBodies[0].replaceChildren(...rows);
}

async function showLog() {
  const { reference, principal } = selected;
  $('log-section').hidden = false;
  $('log-reference').textContent = reference;
  try {
    const log = await api(`/v2/orders/${encodeURIComponent(reference)}/log?principal=${encodeURIComponent(principal)}`, bearer);
    drawChain(log.envelopes);
    $('log-error').textContent = '';
  } catch (error) {
    $('log-error').textContent = `log: ${error.message}`;
  }
}

function envelopeBox(envelope) {
  return el('div', {
    class: `envelope kind-${envelope.kind}${envelope.on_chain ? '' : ' hanging'}`,
    'data-cid': envelope.cid,
    'data-kind': envelope.kind,
    title: `${envelope.cid}\nsigned by ${envelope.signer}${envelope.sealed_for.length ? `\nsealed for ${envelope.sealed_for.length}` : ''}`,
  },
  el('strong', {}, envelope.kind),
  el('span', {}, envelope.signer_name ?? short(envelope.signer)),
  el('time', {}, clock(envelope.timestamp_ms)),
  envelope.sealed_for.length ? el('span', { class: 'sealed' }, `sealed for ${envelope.sealed_for.length}`) : null);
}

function drawChain(envelopes) {
  const onChain = envelopes.filter((e) => e.on_chain);
  const chainCids = new Set(onChain.map((e) => e.cid));
  const hangingOff = new Map();
  const loose = [];
  for (const envelope of envelopes.filter((e) => !e.on_chain)) {
    if (envelope.prev && chainCids.has(envelope.prev)) {
      hangingOff.set(envelope.prev, [...(hangingOff.get(envelope.prev) ?? []), envelope]);
    } else {
      loose.push(envelope);
    }
  }
  const steps = [];
  onChain.forEach((envelope, index) => {
    if (index > 0) {
      steps.push(el('span', { class: 'link', title: 'links back to' }, '←'));
    }
    steps.push(el('div', { class: 'step' }, envelopeBox(envelope),
      (hangingOff.get(envelope.cid) ?? []).map(envelopeBox)));
  });
  if (loose.length) {
    steps.push(el('div', { class: 'step loose' }, el('em', {}, 'elsewhere'), loose.map(envelopeBox)));
  }
  $('chain').replaceChildren(...steps);
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  bearer = $('token').value.trim();
  rememberToken(bearer);
  $('token').value = '';
  start();
});

bearer = token();
if (bearer) {
  start();
} else {
  showLogin();
}

// The testnet view: one stream (GET /events) carries the whole testnet's state; the page
// redraws at most once per animation frame, whatever the number of nodes.
import { clock, el, follow, svg, token } from '/ui/live.js';

const $ = (id) => document.getElementById(id);
let latest = null;
let drawn = -1;
let pending = false;
// The topology is drawn again only when it changed: record changes alone do not touch it.
let drawnTopology = '';

function setStatus(text, kind) {
  const status = $('status');
  status.textContent = text;
  status.className = `status ${kind}`;
  document.body.dataset.status = kind;
}

function schedule() {
  if (pending) {
    return;
  }
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    if (latest && latest.version !== drawn) {
      drawn = latest.version;
      draw(latest);
    }
  });
}

function mainRole(node) {
  return node.roles.includes('principal') ? 'principal'
    : node.roles.includes('beneficiary') ? 'beneficiary'
      : node.roles[0] ?? 'fiduciary';
}

function drawGraph(nodes) {
  const topology = JSON.stringify(nodes.map((n) => [n.name, n.liveness, n.roles, n.peers]));
  if (topology === drawnTopology) {
    return;
  }
  drawnTopology = topology;
  const size = 520;
  const center = size / 2;
  const radius = nodes.length > 1 ? center - 40 : 0;
  const place = new Map();
  nodes.forEach((node, index) => {
    const angle = (2 * Math.PI * index) / Math.max(nodes.length, 1) - Math.PI / 2;
    place.set(node.name, [center + radius * Math.cos(angle), center + radius * Math.sin(angle)]);
  });
  const edges = [];
  const seen = new Set();
  for (const node of nodes) {
    for (const peer of node.peers) {
      const key = [node.name, peer].sort().join('|');
      if (!place.has(peer) || seen.has(key)) {
        continue;
      }
      seen.add(key);
      const [x1, y1] = place.get(node.name);
      const [x2, y2] = place.get(peer);
      edges.push(svg('line', { class: 'edge', x1, y1, x2, y2 }));
    }
  }
  const crowded = nodes.length > 20;
  const dot = crowded ? 6 : 12;
  const vertices = nodes.map((node, index) => {
    const [x, y] = place.get(node.name);
    // Labels sit outside the circle, away from the edges.
    const angle = (2 * Math.PI * index) / Math.max(nodes.length, 1) - Math.PI / 2;
    const labelX = nodes.length > 1 ? x + (dot + 12) * Math.cos(angle) : x;
    const labelY = nodes.length > 1 ? y + (dot + 12) * Math.sin(angle) + 4 : y - dot - 4;
    const anchor = nodes.length < 2 || Math.abs(Math.cos(angle)) < 0.3 ? 'middle' : Math.cos(angle) > 0 ? 'start' : 'end';
    return svg('g', {
      class: `vertex role-${mainRole(node)} ${node.liveness}`,
      'data-node': node.name,
      'data-liveness': node.liveness,
    },
    svg('title', {}, `${node.name}: ${node.roles.join(', ')}, ${node.liveness}`),
    svg('circle', { cx: x, cy: y, r: dot }),
    svg('text', { x: labelX, y: labelY, 'text-anchor': anchor, class: crowded ? 'small' : '' }, node.name));
  });
  $('graph').replaceChildren(svg('svg', {
    viewBox: `-40 -10 ${size + 80} ${size + 20}`, role: 'img', 'aria-label': 'topology', class: crowded ? 'crowded' : '',
  }, svg('g', {}, edges), svg('g', {}, vertices)));
}

function drawNodes(nodes) {
  $('nodes').tBodies[0].replaceChildren(...nodes.map((node) => el('tr', {
    class: node.liveness, 'data-node': node.name, 'data-liveness': node.liveness,
  },
  el('td', {}, node.name),
  el('td', {}, node.roles.join(', ')),
  el('td', { class: 'alive', title: node.reason ?? '' },
    node.liveness === 'down' ? `down since ${clock(node.since_ms)}` : node.liveness),
  el('td', {}, node.peers.length),
  el('td', {}, node.records.length))));
}

function drawOrders(nodes) {
  const orders = new Map();
  for (const node of nodes) {
    for (const record of node.records) {
      if (record.kind !== 'order') {
        continue;
      }
      const entry = orders.get(record.reference) ?? { principal: null, holders: [] };
      if (record.role === 'principal') {
        entry.principal = record.state;
      }
      entry.holders.push({ node, record });
      orders.set(record.reference, entry);
    }
  }
  $('order-count').textContent = `(${orders.size})`;
  const rows = [...orders.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([reference, entry]) => el('tr', {
    'data-order': reference, 'data-state': entry.principal ?? 'unknown',
  },
  el('td', { class: 'mono' }, reference),
  el('td', {}, el('span', { class: `state state-${entry.principal}` }, entry.principal ?? '?')),
  el('td', {}, el('div', { class: 'progress' }, entry.holders.map(({ node, record }) => el('span', {
    class: `state state-${record.state}${node.liveness === 'down' ? ' node-down' : ''}`,
    'data-node': node.name,
    title: `${node.name} (${record.role}): ${record.state}`,
  }, `${node.name} ${record.role[0]}: ${record.state}`))))));
  $('orders').tBodies[0].replaceChildren(...rows);
}

function drawFeed(feed) {
  $('feed').replaceChildren(...[...feed].reverse().map((item) => el('li', {
    class: item.fault ? 'fault' : '',
  }, `${clock(item.at_ms)} ${item.node}: ${item.text}`)));
}

function draw(state) {
  const up = state.nodes.filter((n) => n.liveness === 'up').length;
  $('summary').textContent = `${state.nodes.length} nodes, ${up} up`;
  drawGraph(state.nodes);
  drawNodes(state.nodes);
  drawOrders(state.nodes);
  drawFeed(state.feed);
}

const bearer = token();
if (!bearer) {
  $('denied').hidden = false;
  $('denied').textContent = 'This view needs its token: open the URL that `dta testnet ui` printed.';
  setStatus('no token', 'down');
} else {
  follow('/events', bearer, {
    onEvent: (name, data) => {
      if (name === 'state') {
        setStatus('live', 'up');
        latest = data;
        schedule();
      } else if (name === 'heartbeat') {
        setStatus('live', 'up');
      }
    },
    onDown: (reason) => setStatus(`the view is not answering (${reason})`, 'down'),
    onDenied: (message) => {
      $('denied').hidden = false;
      $('denied').textContent = `The token was refused: ${message}`;
      setStatus('denied', 'down');
    },
  });
}

// Shared by a node's page and the testnet view: the API token, calls with it, live event
// streams read with it, and building DOM without ever parsing text as HTML.

const TOKEN_KEY = 'dta-token';

// The token: from the URL's #token= fragment (which the browser never sends to a server;
// it is then taken out of the address bar), else from this tab's session storage.
export function token() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get('token');
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function rememberToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
  }
}

// GET `path` with the token; the JSON answer, or an ApiError with the node's message.
export async function api(path, bearer) {
  const response = await fetch(path, {
    headers: { Authorization: `Bearer ${bearer}` },
    cache: 'no-store',
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? response.statusText);
  }
  return body;
}

// Follows the server-sent events at `path` until stopped: `onEvent(name, data)` for each
// event; `onDown(reason)` when the stream ends, fails, or says nothing for `silence` ms
// (the source sends a heartbeat every second), after which it connects again every second;
// `onDenied(message)` (and no retry) when the token is refused. Returns a function that
// stops it.
export function follow(path, bearer, { onEvent, onDown, onDenied, silence = 3000 }) {
  let stopped = false;
  let controller = null;

  async function once() {
    controller = new AbortController();
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), silence);
    };
    arm();
    try {
      const response = await fetch(path, {
        headers: { Authorization: `Bearer ${bearer}`, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: controller.signal,
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new ApiError(response.status, body?.error ?? response.statusText);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          return 'the stream ended';
        }
        arm();
        buffer += value.replaceAll('\r\n', '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) {
              name = line.slice(6).trim();
            } else if (line.startsWith('data:')) {
              data.push(line.slice(5).replace(/^ /, ''));
            }
          }
          if (data.length > 0) {
            onEvent(name, JSON.parse(data.join('\n')));
          }
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  (async () => {
    while (!stopped) {
      try {
        onDown(await once());
      } catch (error) {
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          onDenied(error.message);
          return;
        }
        if (!stopped) {
          onDown(error.name === 'AbortError' ? 'no heartbeat' : error.message);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();

  return () => {
    stopped = true;
    controller?.abort();
  };
}

// An element with attributes and children (strings become text nodes, never HTML).
export function el(tag, attributes = {}, ...children) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name === 'class') {
      made.className = value;
    } else if (name.startsWith('on')) {
      made.addEventListener(name.slice(2), value);
    } else {
      made.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      made.append(child instanceof Node ? child : String(child));
    }
  }
  return made;
}

// An SVG element with attributes and children.
export function svg(tag, attributes = {}, ...children) {
  const made = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) {
      made.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      made.append(child instanceof Node ? child : String(child));
    }
  }
  return made;
}

// `bafy…xyz` for a long CID or id.
export function short(text) {
  if (!text) {
    return '';
  }
  return text.length > 16 ? `${text.slice(0, 6)}…${text.slice(-6)}` : text;
}

export function clock(ms) {
  return ms ? new Date(ms).toISOString().slice(11, 23) : '';
}

// Event streams (Server-Sent Events) read with fetch and a stream reader,
// so the token goes in the Authorization header (EventSource cannot send
// one). Every stream starts with `snapshot`, and the caller replaces its
// state on each one: a reconnect can never leave a stale alert or miss a
// message. Reconnects back off with jitter and honour Retry-After; tabs of
// the same token share one stream (the server caps streams per token).
import { retryAfter } from './api.js';

/** Backoff bounds (ms). */
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 30000;
/** The server sends a keep-alive every 15 s: this much silence means a dead connection. */
const SILENCE_MS = 40000;

/** The delay before attempt `n` (0-based): exponential, with jitter in [½, 1]. */
export function backoff(n, floorSecs = 0) {
  const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** n);
  return Math.max(floorSecs * 1000, base) * (0.5 + Math.random() / 2);
}

/** Parses SSE text into frames; returns what is left of an incomplete one. */
export function parseFrames(buffer, onFrame) {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    let event = 'message';
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith(':')) continue;
      const at = line.indexOf(':');
      const field = at < 0 ? line : line.slice(0, at);
      const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) onFrame(event, data.join('\n'));
  }
  return rest;
}

/**
 * Keeps one stream open. `onEvent(name, data)` gets every event (data
 * parsed); `onStatus({state, retryIn, reason})` with state `connecting`,
 * `live`, `reconnecting` or `closed` (reason `unauthorized`, `forbidden`,
 * `gone`: a token or session that will not come back). Returns `{close}`.
 */
export function openStream({ url, token, onEvent, onStatus }) {
  let stopped = false;
  let attempt = 0;
  let controller = null;
  let timer = null;

  const closed = (reason) => { stopped = true; onStatus({ state: 'closed', reason }); };

  async function run() {
    if (stopped) return;
    controller = new AbortController();
    onStatus({ state: attempt ? 'reconnecting' : 'connecting' });
    let floor = 0;
    try {
      const res = await fetch(url, {
        headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: controller.signal,
      });
      if (res.status === 401) return closed('unauthorized');
      if (res.status === 403) return closed('forbidden');
      if (res.status === 404 || res.status === 410) return closed('gone');
      if (!res.ok || !res.body) {
        // 429 too_many_streams / rate_limited, 503: wait as told.
        floor = retryAfter(res) ?? 0;
        throw new Error(`status ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      let silence = setTimeout(() => controller.abort(), SILENCE_MS);
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          clearTimeout(silence);
          silence = setTimeout(() => controller.abort(), SILENCE_MS);
          buffer = parseFrames(buffer + value, (name, text) => {
            let data;
            try { data = JSON.parse(text); } catch { return; }
            if (name === 'snapshot') { attempt = 0; onStatus({ state: 'live' }); }
            onEvent(name, data);
          });
        }
      } finally {
        clearTimeout(silence);
      }
    } catch {
      // Cut, refused for now, or aborted by close(): try again unless closed.
    }
    if (stopped) return;
    const delay = backoff(attempt++, floor);
    onStatus({ state: 'reconnecting', retryIn: delay });
    timer = setTimeout(run, delay);
  }

  run();
  return {
    close() { stopped = true; clearTimeout(timer); controller?.abort(); },
  };
}

/** A short, stable name for a token (not a secret-keeping hash: names a channel). */
function tag(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

/** Frames a leader keeps since its last snapshot, to bring a new tab up to date. */
const REPLAY_MAX = 1000;

/**
 * Like openStream, but tabs of this browser with the same token share one
 * stream: one tab (holding a Web Lock) reads it and passes every event to
 * the others over a BroadcastChannel; when it closes, another takes over
 * and opens its own stream (a fresh snapshot for every tab). Without Web
 * Locks (a page not served over https or from localhost) each tab reads
 * its own stream.
 */
export function sharedStream({ url, token, onEvent, onStatus }) {
  if (!navigator.locks || typeof BroadcastChannel === 'undefined') {
    return openStream({ url, token, onEvent, onStatus });
  }
  const name = `collabd:${url}:${tag(token)}`;
  const me = Math.random().toString(36).slice(2);
  const channel = new BroadcastChannel(name);
  const quit = new AbortController();
  let leading = null; // { stream, log, status, overflow }

  channel.onmessage = ({ data: m }) => {
    if (m.t === 'hello' && leading) {
      if (leading.overflow) {
        // Too much happened since the snapshot to replay: start again.
        leading.stream.close();
        lead();
      } else {
        channel.postMessage({ t: 'replay', to: m.from, frames: leading.log, status: leading.status });
      }
    } else if (m.t === 'frame' && !leading) {
      onEvent(m.name, m.data);
    } else if (m.t === 'status' && !leading) {
      onStatus(m.status);
    } else if (m.t === 'replay' && m.to === me && !leading) {
      onStatus(m.status);
      for (const f of m.frames) onEvent(f.name, f.data);
    }
  };

  function lead() {
    const state = { log: [], status: { state: 'connecting' }, overflow: false };
    state.stream = openStream({
      url,
      token,
      onEvent(n, data) {
        if (n === 'snapshot') { state.log = []; state.overflow = false; }
        if (state.log.length < REPLAY_MAX) state.log.push({ name: n, data });
        else state.overflow = true;
        channel.postMessage({ t: 'frame', name: n, data });
        onEvent(n, data);
      },
      onStatus(status) {
        state.status = status;
        channel.postMessage({ t: 'status', status });
        onStatus(status);
      },
    });
    leading = state;
  }

  onStatus({ state: 'connecting' });
  channel.postMessage({ t: 'hello', from: me });
  navigator.locks
    .request(name, { signal: quit.signal }, () => {
      lead();
      // Hold the lock until this tab closes the stream (or goes away).
      return new Promise((resolve) => quit.signal.addEventListener('abort', resolve));
    })
    .catch(() => { /* aborted before it was granted */ });

  return {
    close() {
      quit.abort();
      leading?.stream.close();
      leading = null;
      channel.close();
    },
  };
}

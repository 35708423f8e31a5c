// The public HTTP API, called with the bearer token in the Authorization
// header (never in a URL, no cookies: nothing a third-party page could
// make the browser send on its own).

/** A refused request: the problem+json `code`, HTTP status and detail. */
export class Problem extends Error {
  constructor(status, code, detail, retryAfter) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

// How far the server's clock is ahead of this browser's, in ms, read from
// the `Date` header of answers (1 s resolution: small offsets are noise).
let skew = 0;
/** Now on the server's clock (ms since the epoch): for "time left". */
export const serverNow = () => Date.now() + skew;

function learnSkew(res) {
  const date = Date.parse(res.headers.get('date') || '');
  if (!Number.isNaN(date)) {
    const off = date - Date.now();
    skew = Math.abs(off) > 2000 ? off : 0;
  }
}

/** Seconds in a `Retry-After` header, or null. */
export function retryAfter(res) {
  const s = Number.parseInt(res.headers.get('retry-after') || '', 10);
  return Number.isFinite(s) && s >= 0 ? s : null;
}

/**
 * One call: `await call(token, 'POST', '/v1/me/login', {portal})`.
 * Resolves to the JSON answer (null for 204); throws a Problem otherwise,
 * `network` when no answer came at all.
 */
export async function call(token, method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, cache: 'no-store' };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new Problem(0, 'network', '');
  }
  learnSkew(res);
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (res.ok) return json;
  throw new Problem(res.status, json?.code || `http_${res.status}`, json?.detail || '', retryAfter(res));
}

/** `encodeURIComponent` for path segments and query values. */
export const enc = encodeURIComponent;

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`)
    .join('&');
  return q ? `?${q}` : '';
}

/** A random Idempotency-Key, so a retried creation never creates twice. */
export function idempotencyKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// What the browser tests share: collabd nodes (the binary `cargo test`
// built), their own redis-server, a TCP proxy that can cut connections and
// records every byte a browser received, headless Chromium, and the admin
// API to set up a scene.
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
const BIN = process.env.COLLABD_BIN || path.join(ROOT, 'target/debug/collabd');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** Where screenshots go; `SCREENSHOTS=docs/screenshots` refreshes the committed ones. */
export const SHOTS = path.resolve(ROOT, process.env.SCREENSHOTS || 'target/browser/screenshots');
const RESULTS = path.join(ROOT, 'target/browser/measurements.json');
/** Secrets of 32+ bytes: a node on Redis refuses weaker ones. */
export const ADMIN = `admin-${randomBytes(24).toString('hex')}`;
const SECRET = randomBytes(32).toString('hex');

/** How long a test waits for something to appear (not a performance claim). */
export const WAIT = 10000;

const cleanups = [];
/** Stops every process and browser a test file started. */
export async function cleanup() {
  while (cleanups.length) {
    try { await cleanups.pop()(); } catch { /* already gone */ }
  }
}

/** A free TCP port on loopback. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

function stopProcess(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** A redis-server of its own, on a free port, keeping nothing on disk. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], { stdio: 'ignore' });
  cleanups.push(() => stopProcess(child));
  for (let i = 0; i < 100; i++) {
    if (await canConnect(port)) return { port, url: `redis://127.0.0.1:${port}` };
    await sleep(50);
  }
  throw new Error('redis-server did not start');
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A collabd node on a free port: the memory backplane, or Redis when
 * `redis` is given (then nodes share state). `env` adds COLLABD__… settings.
 */
export async function startNode({ redis, env = {} } = {}) {
  const settings = {
    COLLABD__HTTP__LISTEN: '127.0.0.1:0',
    COLLABD__AUTH__ADMIN_TOKEN: ADMIN,
    COLLABD__AUTH__SECRET: SECRET,
    // The tests provision many agents at once: the admin's bucket is not what they test.
    COLLABD__LIMITS__ADMIN_RATE: '100000',
    COLLABD__LIMITS__ADMIN_BURST: '100000',
    COLLABD__LOG__LEVEL: 'warn,collabd=info',
    ...(redis ? {
      COLLABD__BACKPLANE__KIND: 'redis',
      COLLABD__BACKPLANE__REDIS_URL: redis.url,
      COLLABD__BACKPLANE__NAMESPACE: `browser${randomBytes(4).toString('hex')}`,
    } : {}),
    ...env,
  };
  if (redis?.namespace) settings.COLLABD__BACKPLANE__NAMESPACE = redis.namespace;
  const child = spawn(BIN, [], { cwd: ROOT, env: { ...process.env, ...settings, NO_COLOR: '1' } });
  cleanups.push(() => stopProcess(child));
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`collabd did not start:\n${log}`)), 30000);
    const read = (chunk) => {
      log += chunk;
      const m = /listening on [\d.]+:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => reject(new Error(`collabd exited (${code}):\n${log}`)));
  });
  child.stdout.resume();
  child.stderr.resume();
  return { port, url: `http://127.0.0.1:${port}`, child, stop: () => stopProcess(child) };
}

/** Two nodes sharing one Redis. */
export async function startCluster(n = 2) {
  const redis = await startRedis();
  redis.namespace = `browser${randomBytes(4).toString('hex')}`;
  const nodes = [];
  for (let i = 0; i < n; i++) nodes.push(await startNode({ redis }));
  return nodes;
}

/**
 * A TCP proxy in front of `port`: a browser that talks through it can be
 * cut off (`cut()`: every connection closed, new ones refused until
 * `restore()`), and everything the server sent it is kept (`received()`).
 */
export async function startProxy(targetPort) {
  const port = await freePort();
  const sockets = new Set();
  const chunks = [];
  let down = false;
  const server = net.createServer((client) => {
    if (down) { client.destroy(); return; }
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client); sockets.add(upstream);
    client.pipe(upstream);
    upstream.on('data', (d) => { chunks.push(Buffer.from(d)); });
    upstream.pipe(client);
    const close = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
    client.on('error', close); upstream.on('error', close);
    client.on('close', close); upstream.on('close', close);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }));
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    cut() { down = true; for (const s of sockets) s.destroy(); sockets.clear(); },
    restore() { down = false; },
    /** Every byte the server sent through this proxy, as text. */
    received: () => Buffer.concat(chunks).toString('utf8'),
    /** The same without the console's own files (its code and words):
     * what is left is every API answer and stream byte. */
    receivedData() {
      let text = Buffer.concat(chunks).toString('utf8');
      for (const file of consoleFiles()) text = text.split(file).join('');
      return text;
    },
  };
}

/** The contents of every file under web/. */
function consoleFiles(dir = path.join(ROOT, 'web')) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory()
    ? consoleFiles(path.join(dir, e.name))
    : [fs.readFileSync(path.join(dir, e.name), 'utf8')]));
}

/** Headless Chromium (Debian's), with a fresh profile. */
export async function startBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(() => browser.close());
  return browser;
}

/**
 * A browser context (its own storage: another person) with a page that
 * fails the test on any script error or refused resource.
 */
export async function person(browser, { locale = 'de-DE' } = {}) {
  const context = await browser.newContext({ locale, viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  watch(page);
  return { context, page };
}

/** Errors on a page: script errors, CSP refusals, failed loads. */
export function watch(page) {
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // An HTTP refusal (409 invitation_taken…) is the console's to show in
    // words; what is left is a script or CSP error.
    if (m.type() === 'error' && !/the server responded with a status of/.test(m.text())) {
      page.errors.push(`console: ${m.text()}`);
    }
  });
  page.on('dialog', (d) => { page.errors.push(`dialog: ${d.message()}`); d.dismiss(); });
  return page;
}

/** The admin API, from the test (node's fetch). */
export function adminApi(base) {
  return async (method, p, body, token = ADMIN) => {
    const res = await fetch(base + p, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

/**
 * Account `acme` with portals `tier1` and `tier2`, and these agents (id,
 * name) as members of both; each logged into tier1 unless `online` is
 * false. Returns `{api, tokens}`.
 */
export async function scene(base, agents, { policy = {}, online = true } = {}) {
  const api = adminApi(base);
  await api('PUT', '/v1/accounts/acme', { name: 'Acme', policy });
  await api('PUT', '/v1/accounts/acme/portals/tier1', { name: 'Tier 1' });
  await api('PUT', '/v1/accounts/acme/portals/tier2', { name: 'Tier 2' });
  const tokens = {};
  for (const [id, name] of agents) {
    await api('PUT', `/v1/accounts/acme/agents/${id}`, { name, portals: ['tier1', 'tier2'] });
    tokens[id] = (await api('POST', `/v1/accounts/acme/agents/${id}/tokens`, {})).token;
    if (online) await api('POST', '/v1/me/login', { portal: 'tier1' }, tokens[id]);
  }
  return { api, tokens };
}

/** Opens the agents' console signed in as `token` (handed over in the fragment). */
export async function openConsole(page, base, token) {
  await page.goto(`${base}/#token=${encodeURIComponent(token)}`);
  await page.locator('.conn-live').waitFor({ timeout: WAIT });
}

/** A screenshot for the README (`docs/screenshots` when SCREENSHOTS says so). */
export async function shoot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** Adds figures to target/browser/measurements.json (read by the README's table). */
export function record(key, value) {
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  let all = {};
  try { all = JSON.parse(fs.readFileSync(RESULTS, 'utf8')); } catch { /* first */ }
  all[key] = value;
  fs.writeFileSync(RESULTS, `${JSON.stringify(all, null, 2)}\n`);
}

/** The n-th percentile of numbers. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

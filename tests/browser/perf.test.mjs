// Figures for the README, measured in the browser and written to
// target/browser/measurements.json — recorded, never asserted against a
// clock: what the first load transfers, how long from an offer's arrival
// on the stream to its alert on screen, and the collaboration window with
// 1,000 agents online.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, startBrowser, person, scene, openConsole, adminApi, record, percentile, cleanup, WAIT, sleep,
} from './harness.mjs';

after(cleanup);

test('what the first load of each page transfers', async () => {
  const node = await startNode();
  const { tokens } = await scene(node.url, [['ann', 'Ann']]);
  const made = await adminApi(node.url)('POST', '/v1/sessions', { mode: 'web', customer: { name: 'Carl' } }, tokens.ann);
  const browser = await startBrowser();
  const sizes = {};
  const pages = [['agent', `/#token=${tokens.ann}`, '.conn-live'],
    ['customer', `/customer#token=${made.customer_token}`, '.conn-live'], ['admin', '/admin', '#token']];
  for (const [page, path, ready] of pages) {
    const { page: p } = await person(browser);
    const bodies = [];
    const heads = [];
    p.on('response', async (r) => {
      if (new URL(r.url()).pathname.startsWith('/v1/')) return;
      try { bodies.push((await r.body()).length); } catch { /* a stream */ }
      try { heads.push((await r.request().sizes()).responseHeadersSize); } catch { /* gone */ }
    });
    await p.goto(node.url + path);
    await p.locator(ready).waitFor({ timeout: WAIT });
    await sleep(500);
    // The response headers as they crossed the wire (the browser's own
    // transferSize adds a flat 300 bytes per file instead, by specification).
    const body = bodies.reduce((a, b) => a + b, 0);
    const headers = heads.reduce((a, b) => a + b, 0);
    sizes[page] = { files: bodies.length, body_bytes: body, header_bytes: headers, transfer_bytes: body + headers };
  }
  record('first_load', sizes);
  assert.ok(sizes.agent.files >= 8, JSON.stringify(sizes));
});

test('from an offer on the wire to its alert on screen', async () => {
  const node = await startNode();
  const { tokens } = await scene(node.url, [['ann', 'Ann'], ['bob', 'Bob']]);
  const api = adminApi(node.url);
  const browser = await startBrowser();
  const { page } = await person(browser);
  await openConsole(page, node.url, tokens.bob);
  const { session } = await api('POST', '/v1/sessions', { mode: 'web', customer: { name: 'Carl' } }, tokens.ann);
  const samples = [];
  for (let i = 0; i < 40; i++) {
    const inv = await api('POST', `/v1/sessions/${session.id}/invitations`,
      { target: { agent: 'bob' }, comment: `Nummer ${i}` }, tokens.ann);
    await page.waitForFunction((id) => performance.getEntriesByName(`collabd:alert:${id}`).length > 0,
      inv.id, { timeout: WAIT });
    samples.push(await page.evaluate((id) => performance.getEntriesByName(`collabd:alert:${id}`)[0].startTime
      - performance.getEntriesByName(`collabd:offer:${id}`)[0].startTime, inv.id));
    await api('DELETE', `/v1/sessions/${session.id}/invitations/${inv.id}`, undefined, tokens.ann);
    await sleep(50);
  }
  const ms = (v) => Math.round(v * 10) / 10;
  record('offer_to_alert_ms', {
    samples: samples.length, p50: ms(percentile(samples, 50)), p95: ms(percentile(samples, 95)), max: ms(Math.max(...samples)),
  });
  assert.equal(samples.length, 40);
});

test('the collaboration window with 1,000 agents online', async () => {
  const node = await startNode();
  const api = adminApi(node.url);
  const { tokens } = await scene(node.url, [['ann', 'Ann']]);
  // 1,000 agents, each logged into one of the two portals.
  const ids = Array.from({ length: 1000 }, (_, i) => `agent-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(ids.slice(i, i + 50).map(async (id, j) => {
      await api('PUT', `/v1/accounts/acme/agents/${id}`, { name: `Agent ${id.slice(6)}`, portals: ['tier1', 'tier2'] });
      const { token } = await api('POST', `/v1/accounts/acme/agents/${id}/tokens`, {});
      await api('POST', '/v1/me/login', { portal: (i + j) % 2 ? 'tier2' : 'tier1' }, token);
    }));
  }
  const browser = await startBrowser();
  const { page } = await person(browser);
  await openConsole(page, node.url, tokens.ann);
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.longTasks.push(e.duration); })
      .observe({ type: 'longtask', buffered: false });
  });
  await page.getByRole('button', { name: 'Neue Sitzung' }).click();
  await page.getByLabel('Name des Kunden').fill('Carl');
  await page.getByRole('button', { name: 'Sitzung beginnen' }).click();

  const t0 = Date.now();
  await page.getByRole('button', { name: 'Einladen …' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: /Tier 1\s*501 online/ }).waitFor({ timeout: WAIT });
  await dialog.locator('tbody tr').nth(49).waitFor();
  const open = Date.now() - t0;

  const pages = [];
  for (let i = 0; i < 5; i++) {
    const first = await dialog.locator('tbody tr').first().textContent();
    const t = Date.now();
    await dialog.getByRole('button', { name: 'Nächste Seite' }).click();
    await page.waitForFunction((f) => document.querySelector('dialog tbody tr')?.textContent !== f, first);
    pages.push(Date.now() - t);
  }
  // Typing a search: each pause sends one request (after 250 ms of quiet).
  const t1 = Date.now();
  await dialog.getByLabel('Suchen').pressSequentially('0777', { delay: 30 });
  await dialog.getByRole('cell', { name: 'Agent 0777', exact: true }).waitFor({ timeout: WAIT });
  await page.waitForFunction(() => document.querySelectorAll('dialog tbody tr').length === 1);
  const search = Date.now() - t1;
  await dialog.getByLabel('Suchen').fill('');
  await dialog.locator('tbody tr').nth(49).waitFor();
  // Left open, the window reads its page every 5 s: watch the main thread meanwhile.
  await sleep(11000);
  const longTasks = await page.evaluate(() => window.longTasks);
  record('window_1000_agents', {
    open_ms: open,
    next_page_ms: { p50: percentile(pages, 50), max: Math.max(...pages) },
    search_typed_to_shown_ms: search,
    long_tasks_from_open_to_11s_later: longTasks.length,
    longest_task_ms: longTasks.length ? Math.round(Math.max(...longTasks)) : 0,
  });
  assert.equal(await dialog.locator('tbody tr').count(), 50);
});

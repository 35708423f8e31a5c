// The console over a connection that breaks: a stream cut while the world
// moves on comes back with a snapshot that replaces what the console showed
// (no stale alert, nothing missed); tabs of one agent share one stream; a
// stream refused with 429 waits as told and gets in when a place is free.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, startProxy, startBrowser, person, watch, scene, openConsole, adminApi, cleanup, WAIT, sleep,
} from './harness.mjs';

after(cleanup);

/** A gauge or counter of the node's /metrics, summed over its labels. */
async function metric(base, name, labels = '') {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text.split('\n')
    .filter((l) => l.startsWith(name) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

test('a cut stream comes back with a snapshot: the stale alert is gone, the new one is there', async () => {
  const node = await startNode();
  const proxy = await startProxy(node.port);
  const { tokens } = await scene(node.url, [['ann', 'Ann'], ['bob', 'Bob'], ['cat', 'Cat']]);
  const api = adminApi(node.url);
  const as = (who) => (method, path, body) => api(method, path, body, tokens[who]);
  const { session } = await as('ann')('POST', '/v1/sessions', { mode: 'web', customer: { name: 'Carl' } });
  const browser = await startBrowser();
  const bob = await person(browser);
  await openConsole(bob.page, proxy.url, tokens.bob);

  const first = await as('ann')('POST', `/v1/sessions/${session.id}/invitations`, { target: { portal: 'tier1' } });
  await bob.page.getByRole('heading', { name: 'Einladung von Ann' }).waitFor({ timeout: WAIT });

  // Bob's connection drops; meanwhile Cat takes the invitation and Ann asks Bob directly.
  proxy.cut();
  await bob.page.locator('.conn-reconnecting').waitFor({ timeout: WAIT });
  assert.match(await bob.page.locator('.conn').textContent(), /Verbindung unterbrochen/);
  await as('cat')('POST', `/v1/invitations/${first.id}/accept`);
  await as('ann')('POST', `/v1/sessions/${session.id}/invitations`,
    { target: { agent: 'bob' }, comment: 'Nur Sie, bitte' });
  await sleep(300);
  // Still cut: the console shows what it last knew, and says it is not live.
  assert.equal(await bob.page.locator('.alert').count(), 1);

  proxy.restore();
  await bob.page.locator('.conn-live').waitFor({ timeout: 40000 });
  // The snapshot replaced the alerts: the taken one is gone, the new one is there.
  const alerts = bob.page.locator('.alert');
  await alerts.getByText('Nur Sie, bitte').waitFor({ timeout: WAIT });
  assert.equal(await alerts.count(), 1, await bob.page.locator('.alerts').textContent());
  assert.match(await alerts.textContent(), /Sie direkt/);
  assert.deepEqual(bob.page.errors.filter((e) => !/ERR_CONNECTION|Failed to load/.test(e)), []);
});

test("an agent's tabs share one stream, and another tab takes it over when the first closes", async () => {
  const node = await startNode();
  const { tokens } = await scene(node.url, [['ann', 'Ann'], ['bob', 'Bob']]);
  const api = adminApi(node.url);
  const browser = await startBrowser();
  const { context } = await person(browser);
  // Six tabs, more than the four streams a token may hold on a node.
  const tabs = [];
  for (let i = 0; i < 6; i++) {
    const page = watch(await context.newPage());
    await openConsole(page, node.url, tokens.bob);
    tabs.push(page);
  }
  assert.equal(await metric(node.url, 'collabd_open_streams', 'role="agent"'), 1);
  const { session } = await api('POST', '/v1/sessions', { mode: 'web', customer: { name: 'Carl' } }, tokens.ann);
  await api('POST', `/v1/sessions/${session.id}/invitations`, { target: { agent: 'bob' } }, tokens.ann);
  for (const page of tabs) await page.getByRole('heading', { name: 'Einladung von Ann' }).waitFor({ timeout: WAIT });

  // The tab that reads the stream goes; another opens its own and shares it.
  await tabs[0].close();
  await api('POST', `/v1/sessions/${session.id}/invitations`, { target: { portal: 'tier1' }, comment: 'Zweite' }, tokens.ann);
  for (const page of tabs.slice(1)) await page.getByText('Zweite').waitFor({ timeout: WAIT });
  assert.equal(await metric(node.url, 'collabd_open_streams', 'role="agent"'), 1);
  for (const page of tabs.slice(1)) {
    assert.equal(await page.locator('.conn-live').count(), 1);
    assert.deepEqual(page.errors, []);
  }
});

test('a stream refused with 429 waits as told and opens once a place is free', async () => {
  const node = await startNode({ env: { COLLABD__LIMITS__STREAMS_PER_TOKEN: '1' } });
  const { tokens } = await scene(node.url, [['bob', 'Bob']]);
  const browser = await startBrowser();
  // Two browsers (no shared tabs): the second is refused.
  const first = await person(browser);
  const second = await person(browser);
  await openConsole(first.page, node.url, tokens.bob);
  await second.page.goto(`${node.url}/#token=${tokens.bob}`);
  await second.page.getByText(/neuer Versuch in \d+ s/).waitFor({ timeout: WAIT });
  assert.ok((await metric(node.url, 'collabd_streams_refused')) >= 1);
  await first.context.close();
  await second.page.locator('.conn-live').waitFor({ timeout: 40000 });
});

// For everyone: German and English (the browser's language picks, the
// switch keeps a choice), keyboard-only invite and accept with the focus
// going somewhere sensible when an alert goes, new alerts announced, axe
// finds nothing serious, and hostile names and comments stay text.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import {
  startNode, startBrowser, person, scene, openConsole, adminApi, shoot, cleanup, WAIT,
} from './harness.mjs';

after(cleanup);
const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** axe's serious and critical findings on the page as it is now. */
async function axe(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Presses Tab until the focus is on the element named `name` (a string
 * or a pattern; at most `max` times). */
async function tabTo(page, name, max = 60) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el) return '';
      const label = el.labels?.[0]?.textContent;
      return (el.getAttribute('aria-label') || label || el.textContent || el.value || '').trim();
    });
    if (name instanceof RegExp ? name.test(focused) : focused === name) return;
  }
  throw new Error(`Tab never reached ${name}`);
}

const focusedText = (page) => page.evaluate(() => document.activeElement?.textContent?.trim());

test('German by default for a German browser, English for an English one, and the switch is kept', async () => {
  const node = await startNode();
  const browser = await startBrowser();
  const en = await person(browser, { locale: 'en-US' });
  await en.page.goto(node.url);
  await en.page.getByRole('heading', { name: 'Agent sign-in' }).waitFor();
  assert.equal(await en.page.evaluate(() => document.documentElement.lang), 'en');
  await en.page.getByLabel('Language').selectOption('de');
  await en.page.getByRole('heading', { name: 'Anmeldung für Agenten' }).waitFor();
  await en.page.reload();
  await en.page.getByRole('heading', { name: 'Anmeldung für Agenten' }).waitFor();
  assert.equal(await en.page.evaluate(() => document.documentElement.lang), 'de');

  const de = await person(browser, { locale: 'de-AT' });
  await de.page.goto(`${node.url}/customer`);
  await de.page.getByText('Öffnen Sie die Seite über den Link').waitFor();
  const en2 = await person(browser, { locale: 'en-GB' });
  await en2.page.goto(`${node.url}/admin`);
  await en2.page.getByRole('heading', { name: 'Administrator sign-in' }).waitFor();
  await shoot(en2.page, 'admin-sign-in-en');
  for (const p of [en, de, en2]) assert.deepEqual(p.page.errors, []);
});

test('keyboard only: invite, accept, and the focus when an alert goes; alerts are announced', async () => {
  const node = await startNode();
  const { tokens } = await scene(node.url, [['ann', 'Ann'], ['bob', 'Bob'], ['cat', 'Cat']]);
  const browser = await startBrowser();
  const [ann, bob, cat] = await Promise.all([1, 2, 3].map(() => person(browser, { locale: 'en-US' })));
  for (const [p, id] of [[ann, 'ann'], [bob, 'bob'], [cat, 'cat']]) await openConsole(p.page, node.url, tokens[id]);
  const { page } = ann;

  await tabTo(page, 'New session');
  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor();
  await page.keyboard.type('Ida');
  await tabTo(page, 'Start session');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Session with Ida' }).waitFor();
  await tabTo(page, 'Invite …');
  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor();
  await page.keyboard.type('Tier');
  await tabTo(page, /^Tier 1\s*3 online$/);
  await page.keyboard.press('Enter');
  await tabTo(page, 'Comment (for the invitees only)');
  await page.keyboard.type('Keyboard only');
  await tabTo(page, 'Send invitation');
  await page.keyboard.press('Enter');
  await page.getByRole('dialog').waitFor({ state: 'detached' });

  // Bob hears of it (the live region) and answers with the keyboard.
  await bob.page.locator('.alert').getByText('Keyboard only').waitFor({ timeout: WAIT });
  assert.match(await bob.page.locator('[aria-live=assertive]').textContent(), /New invitation from Ann, customer Ida/);
  await tabTo(cat.page, 'Yes, join');
  await tabTo(bob.page, 'Yes, join');
  // Cat presses once her alert has turned into "Bob accepted": the OK that
  // took the place of "Yes" ignores that press (checked in the frame the OK
  // appears), so the reason stays to be read.
  const pressedAtOnce = cat.page.waitForFunction(() => {
    const ok = document.querySelector('.alert.gone .actions button');
    if (!ok) return null;
    const guarded = ok.getAttribute('aria-disabled') === 'true';
    ok.click();
    return { guarded };
  }, null, { polling: 'raf', timeout: WAIT });
  await bob.page.keyboard.press('Enter');
  await bob.page.getByRole('heading', { name: 'Session with Ida' }).waitFor({ timeout: WAIT });
  await page.locator('.race').getByText(/accepted by Bob after/).waitFor({ timeout: WAIT });
  await shoot(page, 'session-workspace-en');
  // Cat had the focus on "Yes" when Bob won: it stays in her alert, on its OK…
  assert.deepEqual(await (await pressedAtOnce).jsonValue(), { guarded: true });
  await cat.page.locator('.alert').getByText('Bob accepted the invitation.').waitFor({ timeout: WAIT });
  assert.equal(await focusedText(cat.page), 'OK');
  await cat.page.locator('.alert.gone button:not([aria-disabled])').waitFor({ timeout: WAIT });
  assert.match(await cat.page.locator('[aria-live=assertive]').textContent(), /Bob accepted the invitation/);
  // …and when she dismisses it, goes back to the page.
  await cat.page.keyboard.press('Enter');
  await cat.page.locator('.alert').waitFor({ state: 'detached' });
  assert.equal(await cat.page.evaluate(() => document.activeElement?.id), 'main');
  for (const p of [ann, bob, cat]) assert.deepEqual(p.page.errors, []);
});

test('axe finds nothing serious in any view, and hostile names and comments are shown as text', async () => {
  const node = await startNode();
  const hostile = '<img src=x onerror="window.pwned=1">';
  const { tokens } = await scene(node.url, [['ann', `Ann ${hostile}`], ['bob', 'Bob']]);
  const api = adminApi(node.url);
  const browser = await startBrowser();
  const [ann, bob, admin, carl] = await Promise.all([1, 2, 3, 4].map(() => person(browser)));
  const { session, customer_token: customer } = await api('POST', '/v1/sessions',
    { mode: 'web', customer: { name: `Carl <script>window.pwned=2</script>` } }, tokens.ann);
  await openConsole(ann.page, node.url, tokens.ann);
  await openConsole(bob.page, node.url, tokens.bob);
  await api('POST', `/v1/sessions/${session.id}/invitations`,
    { target: { agent: 'bob' }, comment: `<b onmouseover="window.pwned=3">fett</b>` }, tokens.ann);
  await api('POST', `/v1/sessions/${session.id}/messages`,
    { text: `<iframe src="javascript:window.pwned=4"></iframe>`, audience: 'everyone' }, tokens.ann);

  const alert = bob.page.locator('.alert');
  await alert.getByText('<b onmouseover="window.pwned=3">fett</b>').waitFor({ timeout: WAIT });
  await alert.getByText(`Einladung von Ann ${hostile}`).waitFor();
  await alert.getByText('Carl <script>window.pwned=2</script> · Web').waitFor();
  assert.deepEqual(await axe(bob.page), [], 'the console with an alert');

  await ann.page.getByRole('button', { name: /Carl/ }).click();
  await ann.page.locator('.messages').getByText('<iframe src="javascript:window.pwned=4"></iframe>').waitFor();
  assert.deepEqual(await axe(ann.page), [], 'the session workspace');
  await ann.page.getByRole('button', { name: 'Protokoll anzeigen' }).click();
  await ann.page.locator('.audit li').first().waitFor();
  await ann.page.getByRole('button', { name: 'Einladen …' }).click();
  await ann.page.getByRole('dialog').getByRole('cell', { name: 'Bob', exact: true }).waitFor();
  assert.deepEqual(await axe(ann.page), [], 'the collaboration window');

  await carl.page.goto(`${node.url}/customer#token=${customer}`);
  await carl.page.getByText('<iframe src="javascript:window.pwned=4"></iframe>').waitFor({ timeout: WAIT });
  assert.deepEqual(await axe(carl.page), [], "the customer's page");

  await admin.page.goto(`${node.url}/admin`);
  assert.deepEqual(await axe(admin.page), [], 'the admin sign-in');
  const { ADMIN } = await import('./harness.mjs');
  await admin.page.getByLabel('Admin-Token').fill(ADMIN);
  await admin.page.getByRole('button', { name: 'Anmelden' }).click();
  await admin.page.getByRole('button', { name: /Acme/ }).click();
  for (const tab of ['Richtlinie', 'Portale', 'Agenten', 'Sitzungen', 'Protokoll']) {
    await admin.page.getByRole('tab', { name: tab }).click();
    await admin.page.waitForTimeout(150);
    assert.deepEqual(await axe(admin.page), [], `the admin desk, ${tab}`);
  }
  await admin.page.getByRole('tab', { name: 'Agenten' }).click();
  await admin.page.getByRole('cell', { name: `Ann ${hostile} ann`, exact: true }).waitFor();

  for (const p of [ann, bob, admin, carl]) {
    assert.equal(await p.page.evaluate(() => window.pwned), undefined, 'no hostile text ran');
    assert.equal(await p.page.locator('main img, main iframe, main b, .alerts img').count(), 0);
    assert.deepEqual(p.page.errors, []);
  }
});

// Beyond the seed, in the browser: mask and unmask mid-session (what the
// customer's page shows follows), an escalation that goes to the portal
// when its agent declines, and a transfer that hands the lead over; and
// the collaboration window's pages against its search pause.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, startBrowser, person, scene, openConsole, shoot, cleanup, sleep, WAIT,
} from './harness.mjs';

after(cleanup);

async function invite(page, pick, { kind, escalateTo } = {}) {
  await page.getByRole('button', { name: 'Einladen …' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: pick }).click();
  if (kind === 'transfer') await dialog.getByLabel('Übergabe (ich verlasse die Sitzung)').check();
  if (escalateTo) {
    await dialog.getByLabel('An ein Portal weitergeben, wenn niemand annimmt').check();
    await dialog.getByLabel('nach Sekunden').fill('60');
    await dialog.getByLabel('an Portal').selectOption(escalateTo);
    await shoot(page, 'invite-escalation');
  }
  await dialog.getByRole('button', { name: 'Einladung senden' }).click();
  await dialog.waitFor({ state: 'detached' });
}

test('mask and unmask, escalation and transfer, as the consoles and the customer see them', async () => {
  const node = await startNode();
  const { tokens } = await scene(node.url, [['ann', 'Ann'], ['bob', 'Bob'], ['cat', 'Cat'], ['dan', 'Dan']]);
  const browser = await startBrowser();
  const [ann, bob, cat, dan, erik] = await Promise.all([1, 2, 3, 4, 5].map(() => person(browser)));
  await Promise.all([[ann, 'ann'], [bob, 'bob'], [cat, 'cat'], [dan, 'dan']]
    .map(([p, id]) => openConsole(p.page, node.url, tokens[id])));

  await ann.page.getByRole('button', { name: 'Neue Sitzung' }).click();
  await ann.page.getByLabel('Name des Kunden').fill('Erik');
  await ann.page.getByLabel('Warteschlange').check();
  await ann.page.getByRole('button', { name: 'Sitzung beginnen' }).click();
  await erik.page.goto(await ann.page.locator('.handover code').textContent());
  await erik.page.getByText('Im Gespräch mit Ann').waitFor({ timeout: WAIT });

  // Bob joins unmasked: Erik sees him; Ann masks him: Erik no longer does.
  await invite(ann.page, 'Bob einladen');
  await bob.page.getByRole('button', { name: 'Ja, beitreten' }).click();
  await erik.page.getByText('Im Gespräch mit Ann, Bob').waitFor({ timeout: WAIT });
  await ann.page.getByRole('button', { name: 'Bob maskieren' }).click();
  await erik.page.getByText('Im Gespräch mit Ann', { exact: true }).waitFor({ timeout: WAIT });
  await ann.page.locator('.participants li', { hasText: 'Bob' }).getByText('maskiert').waitFor();
  // Bob's own console: only agents can read him now, and it says so.
  await bob.page.getByText('Sie sind maskiert: Ihre Nachrichten sehen nur Agenten.').waitFor({ timeout: WAIT });
  await bob.page.locator('.compose').getByLabel('Nachricht').fill('Nur für Ann');
  await bob.page.locator('.compose').getByRole('button', { name: 'Senden' }).click();
  await ann.page.locator('.messages').getByText('Nur für Ann').waitFor({ timeout: WAIT });
  // Bob unmasks himself: Erik sees him again, but never the masked words.
  await bob.page.getByRole('button', { name: 'Bob für den Kunden sichtbar machen' }).click();
  await erik.page.getByText('Im Gespräch mit Ann, Bob').waitFor({ timeout: WAIT });
  assert.ok(!(await erik.page.locator('body').textContent()).includes('Nur für Ann'));

  // Dan moves to Tier 2 (from his console).
  await dan.page.getByLabel('Portal', { exact: true }).selectOption('tier2');
  await dan.page.getByRole('button', { name: 'Portal wechseln' }).click();
  await dan.page.getByText('Angemeldet im Portal Tier 2').waitFor({ timeout: WAIT });

  // Escalation: Cat is asked directly, to go to Tier 2 if not taken; she declines.
  await invite(ann.page, 'Cat einladen', { escalateTo: 'tier2' });
  const race = ann.page.locator('.race.pending');
  await race.getByText(/eskaliert an Tier 2 in (\d+ s|\d:\d\d)/).waitFor({ timeout: WAIT });
  await shoot(ann.page, 'race-escalating');
  await cat.page.getByRole('button', { name: 'Nein, ablehnen' }).click();
  // It goes on to Tier 2 at once: Dan (the one there not in the session) is alerted.
  await dan.page.getByRole('heading', { name: 'Einladung von Ann' }).waitFor({ timeout: WAIT });
  await ann.page.locator('.race').getByText('abgelehnt von Cat').waitFor({ timeout: WAIT });
  await ann.page.locator('.race').getByText(/eskaliert an Tier 2 ·/).waitFor({ timeout: WAIT });
  await dan.page.getByRole('button', { name: 'Ja, beitreten' }).click();
  await ann.page.locator('.race').getByText(/angenommen von Dan nach/).waitFor({ timeout: WAIT });

  // Transfer: Ann hands the session to Cat and leaves it.
  await invite(ann.page, 'Cat einladen', { kind: 'transfer' });
  const alert = cat.page.locator('.alert');
  await alert.getByRole('heading', { name: 'Übergabe von Ann: Sie sollen die Sitzung leiten' }).waitFor({ timeout: WAIT });
  await alert.getByRole('button', { name: 'Ja, beitreten' }).click();
  await cat.page.getByRole('heading', { name: 'Sitzung mit Erik' }).waitFor({ timeout: WAIT });
  await cat.page.locator('.participants li', { hasText: 'Cat (Sie)' }).getByText('Leitung').waitFor({ timeout: WAIT });
  await ann.page.getByText('Sie sind nicht mehr in dieser Sitzung.').waitFor({ timeout: WAIT });
  await erik.page.getByText('Im Gespräch mit Bob, Dan, Cat').waitFor({ timeout: WAIT });
  // Cat, the lead now, may end it; Bob's view follows.
  await cat.page.getByRole('button', { name: 'Sitzung beenden' }).waitFor();
  await bob.page.locator('.participants li', { hasText: 'Cat' }).getByText('Leitung').waitFor({ timeout: WAIT });
  for (const p of [ann, bob, cat, dan, erik]) assert.deepEqual(p.page.errors, []);
});

test('a page of the collaboration window turned before the search pause ends stays turned', async () => {
  const node = await startNode();
  const agents = [['ann', 'Ann'], ...Array.from({ length: 60 }, (_, i) => [`agent-${i}`, `Agent ${String(i).padStart(2, '0')}`])];
  const { tokens } = await scene(node.url, agents);
  const browser = await startBrowser();
  const { page } = await person(browser);
  await page.clock.install();
  await openConsole(page, node.url, tokens.ann);
  await page.getByRole('button', { name: 'Neue Sitzung' }).click();
  await page.getByLabel('Name des Kunden').fill('Carl');
  await page.getByRole('button', { name: 'Sitzung beginnen' }).click();
  // From here the page's time moves only as the test lets it, 10 ms at a
  // time until what it waits for shows, so the page is turned inside the
  // 250 ms the window waits after typing, however fast the machine.
  await page.clock.pauseAt(await page.evaluate(() => Date.now() + 500));
  let passed = 0;
  const until = async (locator) => {
    for (let i = 0; i < 500 && !(await locator.isVisible()); i++) {
      await page.clock.runFor(10);
      passed += 10;
      await sleep(10);
    }
    await locator.waitFor({ timeout: WAIT });
  };
  await page.getByRole('button', { name: 'Einladen …' }).click();
  const dialog = page.getByRole('dialog');
  await until(dialog.getByRole('cell', { name: 'Agent 00', exact: true }));
  await dialog.getByRole('button', { name: 'Nächste Seite' }).click();
  await until(dialog.getByRole('cell', { name: 'Agent 50', exact: true }));
  assert.ok(passed < 250, `${passed} ms passed before the page turned`);
  for (let i = 0; i < 10; i++) {
    await page.clock.runFor(100);
    await sleep(50);
  }
  assert.equal(await dialog.getByText('Seite 2').count(), 1);
  assert.equal(await dialog.getByRole('cell', { name: 'Agent 50', exact: true }).count(), 1);
  assert.equal(await dialog.locator('tbody tr').count(), 10);
  // A search typed then still starts on its first page, once typing pauses.
  await dialog.getByLabel('Suchen').fill('Agent 0');
  await until(dialog.getByText('Seite 1'));
  await until(dialog.getByRole('cell', { name: 'Agent 09', exact: true }));
  assert.equal(await dialog.locator('tbody tr').count(), 10);
  assert.deepEqual(page.errors, []);
});

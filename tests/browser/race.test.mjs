// A portal race across nodes: two collabd nodes share one Redis; the
// invitees' consoles are on different nodes and press "Yes" together.
// Exactly one joins; every other alert goes, naming the winner.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startCluster, startBrowser, person, scene, openConsole, shoot, cleanup, WAIT,
} from './harness.mjs';

after(cleanup);

test('a portal race between agents on two nodes: one winner, the losers told who', async () => {
  const [a, b] = await startCluster(2);
  const { tokens } = await scene(a.url, [['ann', 'Ann'], ['bob', 'Bob'], ['cat', 'Cat'], ['dan', 'Dan']]);
  const browser = await startBrowser();
  const ann = await person(browser);
  const racers = {
    Bob: { ...(await person(browser)), node: a, id: 'bob' },
    Cat: { ...(await person(browser)), node: b, id: 'cat' },
    Dan: { ...(await person(browser)), node: b, id: 'dan' },
  };
  await openConsole(ann.page, a.url, tokens.ann);
  for (const r of Object.values(racers)) await openConsole(r.page, r.node.url, tokens[r.id]);

  await ann.page.getByRole('button', { name: 'Neue Sitzung' }).click();
  await ann.page.getByLabel('Name des Kunden').fill('Carla');
  await ann.page.getByRole('button', { name: 'Sitzung beginnen' }).click();
  await ann.page.getByRole('heading', { name: 'Sitzung mit Carla' }).waitFor();

  let left = Object.keys(racers);
  for (let round = 1; left.length > 1; round++) {
    await ann.page.getByRole('button', { name: 'Einladen …' }).click();
    const dialog = ann.page.getByRole('dialog');
    await dialog.getByRole('button', { name: /Tier 1/ }).click();
    await dialog.getByRole('button', { name: 'Einladung senden' }).click();
    await dialog.waitFor({ state: 'detached' });
    const yes = left.map((name) => racers[name].page.getByRole('button', { name: 'Ja, beitreten' }));
    await Promise.all(yes.map((button) => button.waitFor({ timeout: WAIT })));

    // Everyone presses at once, in the page (a Playwright click waits for
    // its button and would press a later alert's "Yes" once this one went):
    // a press that comes after the alert went cannot happen.
    const pressed = await Promise.all(left.map((name) => racers[name].page.evaluate(() => {
      const yes = document.querySelector('.alert:not(.gone) button.primary');
      yes?.click();
      return !!yes;
    })));
    assert.ok(pressed.some(Boolean), `round ${round}: nobody could press`);
    const outcomes = await Promise.all(left.map(async (name) => {
      const { page } = racers[name];
      const won = page.getByRole('heading', { name: 'Sitzung mit Carla' });
      const lost = page.locator('.alert.gone');
      await won.or(lost).first().waitFor({ timeout: WAIT });
      return [name, (await won.count()) > 0];
    }));
    const winners = outcomes.filter(([, won]) => won).map(([name]) => name);
    assert.equal(winners.length, 1, `round ${round}: winners ${winners}`);
    const [winner] = winners;
    for (const [name, won] of outcomes) {
      if (won) continue;
      const alert = racers[name].page.locator('.alert.gone', { hasText: 'hat die Einladung angenommen' });
      // The withdrawal names the winner, across nodes; a loser who pressed
      // after the winner also reads why its own "Yes" was refused.
      await alert.getByText(`${winner} hat die Einladung angenommen.`).waitFor({ timeout: WAIT });
      const text = await alert.textContent();
      assert.ok(!/Ja, beitreten/.test(text), `${name} can still press Yes`);
      if (round === 1 && name === left.find((n) => n !== winner)) await shoot(racers[name].page, 'race-lost');
      await alert.getByRole('button', { name: 'OK' }).click();
      await alert.waitFor({ state: 'detached' });
    }
    await ann.page.locator('.race').getByText(new RegExp(`angenommen von ${winner} nach`)).first()
      .waitFor({ timeout: WAIT });
    left = left.filter((n) => n !== winner);
  }
  await shoot(ann.page, 'race-view');
  for (const p of [ann, ...Object.values(racers)]) assert.deepEqual(p.page.errors, []);
});

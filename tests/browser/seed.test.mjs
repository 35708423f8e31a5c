// The seed story in the browser: Ann starts a session with Carl, invites
// every agent of Tier 1 masked with a comment; Bob, Cat and Dan are
// alerted, Bob wins, Cat's and Dan's alerts go saying so; Carl is asked to
// reconnect and never sees Bob, his words, the comment or the invitation.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, startProxy, startBrowser, person, scene, openConsole, shoot, cleanup, WAIT,
} from './harness.mjs';

after(cleanup);

test('the seed story end to end, with three invitees and a customer', async () => {
  const node = await startNode();
  const customerProxy = await startProxy(node.port);
  const { tokens } = await scene(node.url, [['ann', 'Ann'], ['bob', 'Bob'], ['cat', 'Cat'], ['dan', 'Dan']]);
  const browser = await startBrowser();
  const [ann, bob, cat, dan, carl] = await Promise.all([1, 2, 3, 4, 5].map(() => person(browser)));

  // Ann starts a session with Carl and hands him the link.
  await openConsole(ann.page, node.url, tokens.ann);
  await ann.page.getByRole('button', { name: 'Neue Sitzung' }).click();
  await ann.page.getByLabel('Name des Kunden').fill('Carl');
  await ann.page.getByRole('button', { name: 'Sitzung beginnen' }).click();
  await ann.page.getByRole('heading', { name: 'Sitzung mit Carl' }).waitFor();
  const link = await ann.page.locator('.handover code').textContent();
  assert.match(link, /\/customer#token=/);
  // Carl's browser goes through a proxy that keeps every byte it receives.
  await carl.page.goto(link.replace(node.url, customerProxy.url));
  await carl.page.getByText('Im Gespräch mit Ann').waitFor({ timeout: WAIT });
  assert.equal(new URL(carl.page.url()).hash, '', 'the token leaves the address bar');

  for (const [who, id] of [[bob, 'bob'], [cat, 'cat'], [dan, 'dan']]) await openConsole(who.page, node.url, tokens[id]);

  // The collaboration window: everyone online, their portal and sessions; Ann invites Tier 1.
  await ann.page.getByRole('button', { name: 'Einladen …' }).click();
  const window = ann.page.getByRole('dialog');
  await window.getByRole('cell', { name: 'Dan', exact: true }).waitFor();
  for (const name of ['Bob', 'Cat', 'Dan']) assert.ok(await window.getByRole('cell', { name, exact: true }).isVisible());
  await window.getByRole('button', { name: /Tier 1\s*4 online/ }).waitFor();
  await shoot(ann.page, 'collaboration-window');
  await window.getByRole('button', { name: /Tier 1/ }).click();
  await window.getByLabel('Beim Beitritt maskieren').check();
  await window.getByLabel('Kommentar (nur für die Eingeladenen)').fill('VIP, Rechnungsproblem');
  await shoot(ann.page, 'invite-form');
  await window.getByRole('button', { name: 'Einladung senden' }).click();
  await window.waitFor({ state: 'detached' });

  // Each invitee is alerted: inviter, customer, masked, comment, time left.
  for (const who of [bob, cat, dan]) {
    const alert = who.page.locator('.alert');
    await alert.getByRole('heading', { name: 'Einladung von Ann' }).waitFor({ timeout: WAIT });
    const text = await alert.textContent();
    assert.match(text, /Carl · Web/);
    assert.match(text, /Sie treten maskiert bei/);
    assert.match(text, /VIP, Rechnungsproblem/);
    assert.match(text, /Noch \d:\d\d/);
  }
  await shoot(cat.page, 'invitation-alert');
  await ann.page.locator('.race').getByText('angeboten an 3').waitFor();

  // Bob says yes first; his workspace opens, masked.
  await bob.page.getByRole('button', { name: 'Ja, beitreten' }).click();
  await bob.page.getByRole('heading', { name: 'Sitzung mit Carl' }).waitFor({ timeout: WAIT });
  // Cat's and Dan's alerts go, naming the winner.
  for (const who of [cat, dan]) {
    await who.page.locator('.alert.gone').getByText('Bob hat die Einladung angenommen.').waitFor({ timeout: WAIT });
    assert.equal(await who.page.getByRole('button', { name: 'Ja, beitreten' }).count(), 0);
  }
  await shoot(dan.page, 'alert-taken-by-other');

  // Ann sees the race and the participants; Carl must reconnect.
  await ann.page.locator('.race').getByText(/angenommen von Bob nach [\d,]+ s/).waitFor({ timeout: WAIT });
  const participants = ann.page.locator('.participants');
  await participants.getByText('Bob').waitFor();
  assert.match(await participants.textContent(), /Ann \(Sie\)\s*Leitung.*Bob\s*maskiert/s);
  await ann.page.getByText('Neuverbindung ausstehend').waitFor();

  await carl.page.getByRole('heading', { name: 'Bitte neu verbinden' }).waitFor({ timeout: WAIT });
  await shoot(carl.page, 'customer-reconnect');
  await carl.page.getByRole('button', { name: 'Neu verbunden, Bildschirm geteilt' }).click();
  await ann.page.locator('.badge.ok').getByText('Verbunden').waitFor({ timeout: WAIT });
  await ann.page.getByText('Bildschirm geteilt', { exact: true }).waitFor();

  // Bob, masked, can only write to agents; Ann writes to everyone.
  const bobChat = bob.page.locator('.compose');
  assert.ok(await bobChat.getByLabel('alle (auch den Kunden)').isDisabled());
  await bobChat.getByLabel('Nachricht').fill('Geheimer Hinweis von Bob');
  await bobChat.getByRole('button', { name: 'Senden' }).click();
  const annChat = ann.page.locator('.compose');
  await ann.page.locator('.messages').getByText('Geheimer Hinweis von Bob').waitFor({ timeout: WAIT });
  await annChat.getByLabel('Nachricht').fill('Hallo Carl, wir sind für Sie da.');
  await annChat.getByRole('button', { name: 'Senden' }).click();
  await carl.page.getByText('Hallo Carl, wir sind für Sie da.').waitFor({ timeout: WAIT });
  await carl.page.getByLabel('Nachricht').fill('Danke!');
  await carl.page.getByRole('button', { name: 'Senden' }).click();
  await bob.page.locator('.messages').getByText('Danke!').waitFor({ timeout: WAIT });
  await shoot(ann.page, 'session-workspace');
  await shoot(carl.page, 'customer-chat');

  // Nothing of Bob, his words, the comment or the invitation reached Carl:
  // not in his page, not in any byte his browser received.
  const seen = await carl.page.locator('body').textContent();
  const bytes = customerProxy.receivedData();
  for (const secret of ['Bob', 'bob', 'Geheimer Hinweis', 'VIP, Rechnungsproblem', 'inv-', 'invitation']) {
    assert.ok(!seen.includes(secret), `the customer's page shows ${secret}`);
    assert.ok(!bytes.includes(secret), `the customer's browser received ${secret}`);
  }
  assert.ok(bytes.includes('Hallo Carl'), 'the proxy did see the customer traffic');

  // Ann ends the session; Carl is told, and his page stays on the
  // transcript: the stream ended with the session and is not reopened.
  let reopened = 0;
  carl.page.on('request', (r) => { if (r.url().includes('/v1/customer/events')) reopened += 1; });
  await ann.page.getByRole('button', { name: 'Sitzung beenden' }).click();
  await carl.page.getByText('Die Sitzung ist beendet. Vielen Dank!').waitFor({ timeout: WAIT });
  // Longer than the first reconnect delay (BACKOFF_MIN, web/lib/stream.js).
  await carl.page.waitForTimeout(1500);
  assert.equal(reopened, 0, 'the customer page reopened its stream after the session ended');
  for (const who of [ann, bob, cat, dan, carl]) assert.deepEqual(who.page.errors, []);
});

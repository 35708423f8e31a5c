// The admin desk: sign in, create the demo, open an agent's console from
// it; force a logout and revoke tokens, and the agent's console says so;
// a token minted afterwards signs the agent in again; policy, sessions and
// the audit trail.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startNode, startBrowser, person, ADMIN, shoot, cleanup, WAIT,
} from './harness.mjs';

after(cleanup);

test('the admin desk provisions the demo and an agent learns of its logout and revocation', async () => {
  const node = await startNode();
  const browser = await startBrowser();
  const admin = await person(browser);
  const page = admin.page;
  await page.goto(`${node.url}/admin`);
  await page.getByLabel('Admin-Token').fill('not the token at all');
  await page.getByRole('button', { name: 'Anmelden' }).click();
  await page.getByText('Das Token ist ungültig, abgelaufen oder widerrufen.').waitFor();
  await page.getByLabel('Admin-Token').fill(ADMIN);
  await page.getByRole('button', { name: 'Anmelden' }).click();
  await page.getByRole('button', { name: 'Demo erstellen' }).click();
  const annLink = page.getByRole('link', { name: 'Konsole als Ann öffnen' });
  await annLink.waitFor({ timeout: WAIT });
  await page.getByRole('heading', { name: 'Acme' }).waitFor();
  await shoot(page, 'admin-policy');

  // The demo's link opens Ann's console, already in Tier 1.
  const [ann] = await Promise.all([admin.context.waitForEvent('page'), annLink.click()]);
  ann.errors = [];
  ann.on('pageerror', (e) => ann.errors.push(e.message));
  await ann.locator('.conn-live').waitFor({ timeout: WAIT });
  await ann.getByText('Angemeldet im Portal Tier 1').waitFor({ timeout: WAIT });

  // Agents: presence, membership; a forced logout reaches Ann's console.
  await page.getByRole('tab', { name: 'Agenten' }).click();
  const annRow = page.getByRole('row', { name: /Ann/ });
  await annRow.getByText('online in Tier 1').waitFor({ timeout: WAIT });
  await shoot(page, 'admin-agents');
  await annRow.getByRole('button', { name: 'Abmelden erzwingen' }).click();
  await ann.getByText('Eine Administratorin oder ein Administrator hat Sie vom Portal abgemeldet.').waitFor({ timeout: WAIT });
  await ann.getByText('In keinem Portal angemeldet – Sie erhalten keine Portal-Einladungen.').waitFor();
  // She logs in again herself.
  await ann.getByRole('button', { name: 'Im Portal anmelden' }).click();
  await ann.getByText('Angemeldet im Portal Tier 1').waitFor({ timeout: WAIT });

  // Revoked: her console signs her out and says why.
  await annRow.getByRole('button', { name: 'Tokens widerrufen: Ann' }).click();
  await ann.getByText('Ihre Zugänge wurden widerrufen. Bitte melden Sie sich mit einem neuen Token an.')
    .waitFor({ timeout: WAIT });
  await ann.getByLabel('Agenten-Token').waitFor();

  // A token minted now is shown once and signs her in again.
  await annRow.getByRole('button', { name: 'Token ausstellen' }).click();
  const token = await page.locator('.minted code').textContent();
  await ann.getByLabel('Agenten-Token').fill(token);
  await ann.getByLabel('Agenten-Token').press('Enter');
  await ann.locator('.conn-live').waitFor({ timeout: WAIT });

  // Sessions: Ann starts one; the admin sees and ends it.
  await ann.getByRole('button', { name: 'Neue Sitzung' }).click();
  await ann.getByLabel('Name des Kunden').fill('Greta');
  await ann.getByRole('button', { name: 'Sitzung beginnen' }).click();
  await ann.getByRole('heading', { name: 'Sitzung mit Greta' }).waitFor();
  await page.getByRole('tab', { name: 'Sitzungen' }).click();
  await page.getByRole('cell', { name: /Greta/ }).waitFor({ timeout: WAIT });
  await shoot(page, 'admin-sessions');
  await page.getByRole('row', { name: /Greta/ }).getByRole('button', { name: 'Sitzung beenden' }).click();
  await ann.getByText('von der Administration beendet').waitFor({ timeout: WAIT });

  // Policy: masking off; a masked invitation is then refused in words.
  await page.getByRole('tab', { name: 'Richtlinie' }).click();
  await page.getByLabel('Maskieren').uncheck();
  await page.getByRole('button', { name: 'Speichern' }).click();
  await page.getByText('Gespeichert.').waitFor();

  // The audit trail, filtered by agent.
  await page.getByRole('tab', { name: 'Protokoll' }).click();
  await page.getByLabel('Agent').fill('ann');
  await page.getByRole('button', { name: 'Filtern' }).click();
  await page.locator('.audit').getByText('Tokens widerrufen').waitFor({ timeout: WAIT });
  await page.locator('.audit').getByText('Agent abgemeldet').first().waitFor();
  await shoot(page, 'admin-audit');

  await ann.getByRole('button', { name: 'Neue Sitzung' }).click();
  await ann.getByLabel('Name des Kunden').fill('Hugo');
  await ann.getByRole('button', { name: 'Sitzung beginnen' }).click();
  await ann.getByRole('button', { name: 'Einladen …' }).click();
  const dialog = ann.getByRole('dialog');
  await dialog.getByRole('button', { name: 'Bob einladen' }).click();
  await dialog.getByLabel('Beim Beitritt maskieren').check();
  await dialog.getByRole('button', { name: 'Einladung senden' }).click();
  await dialog.getByText('Diese Funktion ist für Ihren Mandanten ausgeschaltet.').waitFor({ timeout: WAIT });
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(admin.page.errors, []);
});

// The console's words, without a browser: German and English have the
// same keys, every key the code names exists, and every problem code,
// withdrawal, logout and end reason and audit action of the API (read
// from the OpenAPI document the node serves) has its words, so no refusal
// is ever shown as a bare code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './harness.mjs';

const WEB = path.join(ROOT, 'web');
const words = async (file) => (await import(path.join(WEB, 'words', file))).default;
const [de, en, adminDe, adminEn] = await Promise.all(['de.js', 'en.js', 'admin-de.js', 'admin-en.js'].map(words));
const openapi = JSON.parse(fs.readFileSync(path.join(ROOT, 'src/http/openapi.json'), 'utf8'));

function sources(dir = WEB) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'vendor' || e.name === 'words' ? [] : sources(p);
    return p.endsWith('.js') ? [[p, fs.readFileSync(p, 'utf8')]] : [];
  });
}

test('German and English have the same words', () => {
  assert.deepEqual(Object.keys(en).sort(), Object.keys(de).sort());
  assert.deepEqual(Object.keys(adminEn).sort(), Object.keys(adminDe).sort());
  for (const [k, v] of Object.entries({ ...de, ...en, ...adminDe, ...adminEn })) {
    assert.ok(typeof v === 'string' && v.trim(), `${k} is empty`);
  }
});

test('every key the code names has words', () => {
  const known = new Set([...Object.keys(de), ...Object.keys(adminDe)]);
  for (const [file, text] of sources()) {
    for (const [, key] of text.matchAll(/\bt\('([a-z_]+)'/g)) {
      assert.ok(known.has(key), `${path.relative(ROOT, file)} names ${key}, which has no words`);
    }
  }
});

test("every code and reason of the API is said in words", () => {
  const schemas = openapi.components.schemas;
  const sets = [
    ['problem_', schemas.ProblemCode.enum],
    ['gone_', schemas.WithdrawReason.enum],
    ['logged_out_', schemas.LogoutReason.enum],
    ['signed_out_', ['agent_deleted', 'tokens_revoked', 'account_deleted']],
    ['ended_', schemas.EndReason.enum],
    ['audit_', schemas.AuditAction.enum],
  ];
  for (const [prefix, values] of sets) {
    assert.ok(values?.length, prefix);
    for (const value of values) {
      for (const [name, dict] of [['de', { ...de, ...adminDe }], ['en', { ...en, ...adminEn }]]) {
        assert.ok(dict[`${prefix}${value}`], `${name}: ${prefix}${value} has no words`);
      }
    }
  }
});

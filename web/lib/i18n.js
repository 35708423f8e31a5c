// Words of the console, German first and English. The browser's languages
// (what it sends as Accept-Language) pick the default; a choice made with
// the switch is kept in this browser. Only the language in use is loaded
// (`words/<lang>.js`, and a page's own words such as `words/admin-<lang>.js`).

/** The languages offered, each named in itself. */
export const LANGS = [{ code: 'de', name: 'Deutsch' }, { code: 'en', name: 'English' }];
const CODES = LANGS.map((l) => l.code);
const KEY = 'collabd.lang';

function pick() {
  const kept = localStorage.getItem(KEY);
  if (CODES.includes(kept)) return kept;
  for (const l of navigator.languages || [navigator.language || 'de']) {
    const code = l.slice(0, 2).toLowerCase();
    if (CODES.includes(code)) return code;
  }
  return 'de';
}

let current = pick();
let words = {};
let parts = [];

/** The language in use. */
export const lang = () => current;

/** Loads the words of `code` (and of this page's `extra` parts, e.g. `admin`). */
async function load(code) {
  const files = [`../words/${code}.js`, ...parts.map((p) => `../words/${p}-${code}.js`)];
  const loaded = await Promise.all(files.map((f) => import(f)));
  words = Object.assign({}, ...loaded.map((m) => m.default));
  current = code;
  document.documentElement.lang = code;
}

/** Before the first render: the words of the language in use. */
export function loadWords(extra = []) {
  parts = extra;
  return load(current);
}

/** Chooses a language (loading its words) and keeps the choice in this browser. */
export async function setLang(code) {
  if (!CODES.includes(code)) return;
  await load(code);
  localStorage.setItem(KEY, code);
}

/** The text for `key` in the current language, `{name}`s filled from `vars`. */
export function t(key, vars = {}) {
  const text = words[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
}

/** A refusal in words (the API's problem code), with when to retry. */
export function problemText(p) {
  const code = p?.code || 'other';
  const known = words[`problem_${code}`];
  let text = known || t('problem_other', { code });
  if (p?.retryAfter) text += ` ${t('retry_in', { n: p.retryAfter })}`;
  return text;
}

/** `target` of an invitation in words; `portals` names portals by id where known. */
export function targetText(target, n, portals = []) {
  if (target.portal) {
    const portal = portals.find((p) => p.id === target.portal)?.name || target.portal;
    return n ? t('target_portal_n', { portal, n }) : t('target_portal', { portal });
  }
  return n === undefined ? t('target_agent_named', { id: target.agent }) : t('target_agent');
}

/** A duration: `1:05` (minutes), `42 s`, or with `tenths` `2,3 s`. */
export function formatDuration(ms, tenths = false) {
  const s = Math.max(0, ms) / 1000;
  if (tenths && s < 60) {
    return `${new Intl.NumberFormat(current, { maximumFractionDigits: 1 }).format(s)} s`;
  }
  const whole = Math.ceil(s);
  if (whole < 60) return `${whole} s`;
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, '0')}`;
}

/** A moment in this browser's time zone. */
export function formatTime(at) {
  const d = new Date(at);
  const today = new Date().toDateString() === d.toDateString();
  return new Intl.DateTimeFormat(current, today
    ? { timeStyle: 'medium' } : { dateStyle: 'short', timeStyle: 'short' }).format(d);
}

/** An audit entry in words. */
export function auditText(e) {
  const actor = e.actor.kind === 'agent' ? e.actor.id : t(`actor_${e.actor.kind}`);
  return t(`audit_${e.action}`, { actor });
}

// Pieces every page of the console shares: the signed-in token, dialogs,
// buttons that cannot be pressed twice, problems in words, time.
import { html, useState, useEffect, useRef, useCallback } from './html.js';
import { t, lang, setLang, LANGS, problemText, formatDuration } from './i18n.js';
import { serverNow } from './api.js';

/**
 * The token of this tab (sessionStorage: each tab may be someone else, as
 * in a demo with several agents in one browser). A link may hand one over
 * in its fragment (`#token=…`, never sent to a server); it is taken out of
 * the address at once so it stays in no history entry or bookmark.
 */
export function tokenStore(kind) {
  const key = `collabd.${kind}.token`;
  const hash = new URLSearchParams(location.hash.slice(1));
  const given = hash.get('token');
  if (given) {
    sessionStorage.setItem(key, given);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return {
    get: () => sessionStorage.getItem(key),
    set: (v) => sessionStorage.setItem(key, v),
    clear: () => sessionStorage.removeItem(key),
  };
}

/**
 * Runs an action once at a time: `[run, busy, problem, clear]`. While it
 * runs, `busy` is true (buttons are disabled, so nothing is sent twice);
 * a refusal is kept as `problem` to be shown in words, never swallowed.
 */
export function useAction(fn) {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState(null);
  const running = useRef(false);
  const alive = useRef(true);
  useEffect(() => () => { alive.current = false; }, []);
  const run = useCallback(async (...args) => {
    if (running.current) return undefined;
    running.current = true;
    setBusy(true);
    setProblem(null);
    try {
      return await fn(...args);
    } catch (e) {
      if (alive.current) setProblem(e);
      return undefined;
    } finally {
      running.current = false;
      if (alive.current) setBusy(false);
    }
  }, [fn]);
  return [run, busy, problem, () => setProblem(null)];
}

/** A refusal in words: the text for its code, and the server's detail. */
export function ProblemNote({ problem, id }) {
  if (!problem) return null;
  return html`<p class="problem" role="alert" id=${id}>
    ${problemText(problem)}
  </p>`;
}

/** A modal dialog (the native one: focus stays inside, Escape closes it,
 * focus returns to what opened it). */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => { if (d?.open) d.close(); };
  }, []);
  return html`<dialog ref=${ref} class=${wide ? 'wide' : ''} aria-labelledby="dialog-title"
      onClose=${onClose} onCancel=${(e) => { e.preventDefault(); onClose(); }}>
    <header class="dialog-head">
      <h2 id="dialog-title">${title}</h2>
      <button type="button" class="ghost" onClick=${onClose} aria-label=${t('close')}>✕</button>
    </header>
    ${children}
  </dialog>`;
}

/** Re-renders every `ms` (countdowns). */
export function useNow(ms = 1000) {
  const [now, setNow] = useState(serverNow());
  useEffect(() => {
    const id = setInterval(() => setNow(serverNow()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

/** Time left until `at` (an RFC 3339 timestamp), in words. */
export function TimeLeft({ at, label }) {
  const now = useNow();
  const left = Math.max(0, Date.parse(at) - now);
  return html`<span class="time-left">${label ? `${label} ` : ''}${formatDuration(left)}</span>`;
}

/** The language switch: German or English, kept for next time. */
export function LangSwitch({ onChange }) {
  return html`<label class="lang">
    <span class="sr-only">${t('language')}</span>
    <select value=${lang()} onChange=${async (e) => { await setLang(e.target.value); onChange(); }}>
      ${LANGS.map((l) => html`<option value=${l.code} lang=${l.code}>${l.name}</option>`)}
    </select>
  </label>`;
}

/** The stream's state, said honestly: live, reconnecting (in how long), closed. */
export function Connection({ status }) {
  const state = status?.state || 'connecting';
  const text = state === 'reconnecting' && status.retryIn
    ? t('conn_retry', { secs: Math.ceil(status.retryIn / 1000) })
    : t(`conn_${state}`);
  return html`<span class=${`conn conn-${state}`} role="status" aria-live="polite">
    <span class="dot" aria-hidden="true"></span>${text}
  </span>`;
}

/** A sign-in form for a bearer token. */
export function SignIn({ title, hint, label, onToken, problem, busy }) {
  const [value, setValue] = useState('');
  return html`<main class="signin" id="main">
    <h1>${title}</h1>
    <p>${hint}</p>
    <form onSubmit=${(e) => { e.preventDefault(); if (value.trim()) onToken(value.trim()); }}>
      <label for="token">${label}</label>
      <input id="token" type="password" autocomplete="off" spellcheck="false" required
        value=${value} onInput=${(e) => setValue(e.target.value)} />
      <button type="submit" class="primary" disabled=${busy}>${t('sign_in')}</button>
    </form>
    <${ProblemNote} problem=${problem} />
  </main>`;
}

/** Copies text, saying so. */
export function CopyButton({ text, label }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try { await navigator.clipboard.writeText(text); setDone(true); } catch { setDone(false); }
  };
  return html`<button type="button" onClick=${copy}>${done ? t('copied') : (label || t('copy'))}</button>`;
}

/**
 * A component whose module is loaded when it is first shown (dialogs the
 * first page load does not need): `load` imports the module, `name` is
 * the component it exports, the other props are passed on.
 */
export function Later({ load, name, ...props }) {
  const [C, setC] = useState(null);
  useEffect(() => {
    let live = true;
    load().then((m) => { if (live) setC(() => m[name]); });
    return () => { live = false; };
  }, []);
  return C ? html`<${C} ...${props} />` : null;
}

/** The masked sign (an eye struck through), always beside the word. */
export const MaskIcon = () => html`<svg class="icon" viewBox="0 0 24 24" width="1em" height="1em"
  aria-hidden="true" focusable="false"><path d="M2 12s3.6-6 10-6 10 6 10 6-3.6 6-10 6S2 12 2 12z"
  fill="none" stroke="currentColor" stroke-width="2"/><circle cx="12" cy="12" r="3" fill="currentColor"/>
  <path d="M4 20L20 4" stroke="currentColor" stroke-width="2.2"/></svg>`;

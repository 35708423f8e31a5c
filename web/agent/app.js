// The agents' console: sign in with a token, log into a portal, receive
// invitations wherever you are, work in your sessions.
import { html, useReducer, useEffect, useState, useCallback, useRef } from '../lib/html.js';
import { call, Problem } from '../lib/api.js';
import { sharedStream } from '../lib/stream.js';
import { t } from '../lib/i18n.js';
import {
  tokenStore, useAction, ProblemNote, LangSwitch, Connection, SignIn, Later,
} from '../lib/ui.js';
import { initial, reduce, activeSessions, myPart } from './state.js';
import { Alerts } from './alerts.js';
import { Workspace } from './workspace.js';

const tokens = tokenStore('agent');
/** `logged_out` reasons after which the token is no longer good. */
const TOKEN_ENDING = ['tokens_revoked', 'agent_deleted', 'account_deleted'];

/** The whole console; re-rendered from the top when the language changes. */
export function App() {
  const [, relang] = useState(0);
  const [token, setToken] = useState(tokens.get());
  const [ended, setEnded] = useState(null); // why this tab is signed out
  const rerender = () => relang((n) => n + 1);

  const signIn = useCallback(async (value) => {
    await call(value, 'GET', '/v1/me');
    tokens.set(value);
    setEnded(null);
    setToken(value);
  }, []);
  const [trySignIn, busy, problem] = useAction(signIn);
  const signOut = (why) => { tokens.clear(); setToken(null); setEnded(why || null); };

  if (!token) {
    return html`<${Frame} onLang=${rerender}>
      ${ended && html`<p class="banner warn" role="alert">${t(`signed_out_${ended}`)}</p>`}
      <${SignIn} title=${t('agent_sign_in')} hint=${t('agent_sign_in_hint')} label=${t('agent_token')}
        onToken=${trySignIn} problem=${problem} busy=${busy} />
    </${Frame}>`;
  }
  return html`<${Console} token=${token} onSignOut=${signOut} onLang=${rerender} />`;
}

function Frame({ children, onLang, right }) {
  return html`<div class="app">
    <header class="top">
      <a class="skip" href="#main">${t('skip_to_main')}</a>
      <span class="brand">collabd</span>
      <span class="grow"></span>
      ${right}
      <${LangSwitch} onChange=${onLang} />
    </header>
    ${children}
  </div>`;
}

function Console({ token, onSignOut, onLang }) {
  const [state, dispatch] = useReducer(reduce, initial);
  const api = useCallback((method, path, body, headers) => call(token, method, path, body, headers)
    .catch((e) => {
      if (e instanceof Problem && e.status === 401) onSignOut('unauthorized');
      throw e;
    }), [token]);

  useEffect(() => {
    // Why the stream ended, if the server said (`logged_out` with a reason
    // that ends the token) before it closed: told instead of a bare 401.
    let lastWord = null;
    const stream = sharedStream({
      url: '/v1/me/events',
      token,
      onEvent: (name, data) => {
        // On arrival; `collabd:alert:<id>` marks it on screen (alerts.js).
        if (name === 'invitation_offered') performance.mark(`collabd:offer:${data.id}`);
        if (name === 'logged_out' && TOKEN_ENDING.includes(data.reason)) lastWord = data.reason;
        dispatch({ type: 'event', name, data });
      },
      onStatus: (status) => {
        dispatch({ type: 'conn', status });
        if (status.state === 'closed') onSignOut(lastWord || status.reason);
      },
    });
    return () => stream.close();
  }, [token]);

  const [creating, setCreating] = useState(false);
  const sessions = activeSessions(state);
  const selected = state.selected && state.sessions[state.selected];

  return html`<${Frame} onLang=${onLang} right=${html`
      <${Connection} status=${state.conn} />
      ${state.me && html`<span class="who">${state.me.name}</span>`}
      <${SignOutButton} api=${api} onSignOut=${onSignOut} />`}>
    <${Alerts} state=${state} dispatch=${dispatch} api=${api} />
    <div class="columns">
      <nav class="side" aria-label=${t('my_sessions')}>
        <${Presence} state=${state} dispatch=${dispatch} api=${api} />
        <h2>${t('my_sessions')}</h2>
        ${sessions.length === 0 && html`<p class="muted">${t('no_sessions')}</p>`}
        <ul class="session-list">
          ${sessions.map((s) => html`<li key=${s.view.id}>
            <button type="button" class=${state.selected === s.view.id ? 'current' : ''}
              aria-current=${state.selected === s.view.id ? 'page' : undefined}
              onClick=${() => dispatch({ type: 'select', session: s.view.id })}>
              <span class="name">${s.view.customer.name}</span>
              <span class="meta">${t(`mode_${s.view.mode}`)} · ${t(`role_${myPart(state, s.view)?.role || 'none'}`)}
                ${s.view.status === 'ended' ? ` · ${t('ended')}` : ''}</span>
            </button>
          </li>`)}
        </ul>
        <button type="button" class="primary" onClick=${() => setCreating(true)}>${t('new_session')}</button>
      </nav>
      <main id="main" tabindex="-1" class="main">
        ${selected
          ? html`<${Workspace} key=${state.selected} state=${state} session=${selected} dispatch=${dispatch} api=${api} />`
          : html`<${Welcome} state=${state} />`}
      </main>
    </div>
    ${creating && html`<${Later} load=${() => import('./newsession.js')} name="NewSession"
      api=${api} dispatch=${dispatch} onClose=${() => setCreating(false)} />`}
  </${Frame}>`;
}

function Welcome({ state }) {
  return html`<section class="welcome">
    <h1>${state.me ? t('hello', { name: state.me.name }) : t('loading')}</h1>
    <p>${t('welcome_hint')}</p>
  </section>`;
}

/** Log into one of my portals, switch, or log out of it. */
function Presence({ state, dispatch, api }) {
  const me = state.me;
  const [portal, setPortal] = useState('');
  const [login, loggingIn, loginProblem] = useAction(async (id) => {
    const answer = await api('POST', '/v1/me/login', { portal: id });
    dispatch({ type: 'portal', portal: answer.portal });
  });
  const [logout, loggingOut, logoutProblem] = useAction(async () => {
    await api('POST', '/v1/me/logout');
    dispatch({ type: 'portal', portal: null });
  });
  if (!me) return null;
  const choices = me.memberships || [];
  const chosen = portal || me.portal?.id || choices[0]?.id || '';
  return html`<section class="presence" aria-labelledby="presence-h">
    <h2 id="presence-h">${t('presence')}</h2>
    ${state.loggedOut && html`<p class="banner warn" role="alert">${t(`logged_out_${state.loggedOut}`)}</p>`}
    <p class=${me.portal ? 'online' : 'offline'}>
      ${me.portal ? t('logged_into', { portal: me.portal.name }) : t('not_logged_in')}
    </p>
    ${choices.length === 0
      ? html`<p class="muted">${t('no_portals')}</p>`
      : html`<form class="row" onSubmit=${(e) => { e.preventDefault(); login(chosen); }}>
          <label class="sr-only" for="portal-pick">${t('portal')}</label>
          <select id="portal-pick" value=${chosen} onChange=${(e) => setPortal(e.target.value)}>
            ${choices.map((p) => html`<option value=${p.id}>${p.name}</option>`)}
          </select>
          <button type="submit" disabled=${loggingIn || me.portal?.id === chosen}>
            ${me.portal ? t('switch_portal') : t('log_in')}</button>
        </form>`}
    ${me.portal && html`<button type="button" onClick=${() => logout()} disabled=${loggingOut}>${t('log_out')}</button>`}
    <${ProblemNote} problem=${loginProblem || logoutProblem} />
  </section>`;
}

function SignOutButton({ api, onSignOut }) {
  const busy = useRef(false);
  const out = async () => {
    if (busy.current) return;
    busy.current = true;
    // Out of the portal first, so nobody offers this agent work it cannot see.
    try { await api('POST', '/v1/me/logout'); } catch { /* signed out anyway */ }
    onSignOut(null);
  };
  return html`<button type="button" class="ghost" onClick=${out}>${t('sign_out')}</button>`;
}

// The customer's page, opened from the link an agent handed over (the
// token in the fragment). It shows only what the server's visibility gate
// lets a customer have: the agents it may see, by name, and the messages
// meant for it. Masked agents, comments and invitations never reach it.
import { html, mount, useReducer, useEffect, useState, useRef } from './lib/html.js';
import { call, query, idempotencyKey } from './lib/api.js';
import { openStream } from './lib/stream.js';
import { t, loadWords, formatTime } from './lib/i18n.js';
import {
  tokenStore, useAction, ProblemNote, LangSwitch, Connection,
} from './lib/ui.js';

const tokens = tokenStore('customer');

const initial = { session: null, messages: [], hasMore: false, conn: { state: 'connecting' }, ended: null };

function reduce(state, a) {
  if (a.type === 'conn') return { ...state, conn: a.status };
  if (a.type === 'reconnected') {
    return { ...state, session: state.session && { ...state.session, reconnect_required: false } };
  }
  if (a.type === 'older') return { ...state, messages: [...a.messages, ...state.messages], hasMore: a.hasMore };
  const d = a.data;
  switch (a.name) {
    case 'snapshot':
      return {
        ...state,
        session: d.session,
        messages: d.messages,
        hasMore: d.has_more,
        ended: d.session.status === 'ended' ? state.ended || 'ended' : null,
      };
    case 'message':
      return state.messages.some((m) => m.id === d.message.id)
        ? state : { ...state, messages: [...state.messages, d.message] };
    case 'agent_joined':
      return state.session ? { ...state, session: { ...state.session, agents: [...state.session.agents, d.agent] } } : state;
    case 'agent_left': {
      if (!state.session) return state;
      const agents = [...state.session.agents];
      const at = agents.findIndex((x) => x.name === d.agent.name);
      if (at >= 0) agents.splice(at, 1);
      return { ...state, session: { ...state.session, agents } };
    }
    case 'reconnect_required':
      return state.session ? {
        ...state, session: { ...state.session, generation: d.generation, reconnect_required: true },
      } : state;
    case 'session_ended':
      return { ...state, ended: d.reason, session: state.session && { ...state.session, status: 'ended' } };
    default:
      return state;
  }
}

function Page() {
  const [, relang] = useState(0);
  const token = tokens.get();
  const [state, dispatch] = useReducer(reduce, initial);
  const [closed, setClosed] = useState(null);

  useEffect(() => {
    if (!token) return undefined;
    const stream = openStream({
      url: '/v1/customer/events',
      token,
      onEvent: (name, data) => {
        dispatch({ name, data });
        // An ended session sends nothing more, and its stream ends: stay
        // on the transcript instead of reconnecting.
        if (name === 'session_ended' || (name === 'snapshot' && data.session?.status === 'ended')) {
          stream.close();
        }
      },
      onStatus: (status) => {
        dispatch({ type: 'conn', status });
        if (status.state === 'closed') setClosed(status.reason);
      },
    });
    return () => stream.close();
  }, [token]);

  const head = html`<header class="top">
    <span class="brand">${t('support_chat')}</span><span class="grow"></span>
    ${token && !closed && !state.ended && html`<${Connection} status=${state.conn} />`}
    <${LangSwitch} onChange=${() => relang((n) => n + 1)} />
  </header>`;
  if (!token || closed) {
    return html`<div class="app customer">${head}<main id="main" class="signin">
      <h1>${t('support_chat')}</h1>
      <p class="banner warn" role="alert">${t(token ? `customer_closed_${closed}` : 'customer_no_link')}</p>
    </main></div>`;
  }
  const s = state.session;
  return html`<div class="app customer">${head}
    <main id="main" class="customer-main">
      <h1>${t('support_chat')}</h1>
      ${s && html`<p class="meta">${s.agents.length
        ? t('with_agents', { names: s.agents.map((a) => a.name).join(', ') })
        : t('waiting_for_agent')}</p>`}
      ${s?.reconnect_required && !state.ended && html`<${Reconnect} token=${token} generation=${s.generation}
        onDone=${() => dispatch({ type: 'reconnected' })} />`}
      ${state.ended && html`<p class="banner" role="status">${t('customer_session_ended')}</p>`}
      <${Chat} token=${token} state=${state} dispatch=${dispatch} />
    </main>
  </div>`;
}

/** The prompt after a second agent joined: reconnect, share the screen again. */
function Reconnect({ token, generation, onDone }) {
  const ref = useRef(null);
  useEffect(() => { ref.current?.focus(); }, [generation]);
  const [report, busy, problem] = useAction(async (shared) => {
    await call(token, 'POST', '/v1/customer/reconnected', { generation, screen_shared: shared });
    onDone();
  });
  return html`<section class="reconnect" role="alertdialog" aria-labelledby="rc-h" aria-describedby="rc-p">
    <h2 id="rc-h" tabindex="-1" ref=${ref}>${t('reconnect_title')}</h2>
    <p id="rc-p">${t('reconnect_text')}</p>
    <div class="actions">
      <button type="button" class="primary" disabled=${busy} onClick=${() => report(true)}>${t('reconnected_shared')}</button>
      <button type="button" disabled=${busy} onClick=${() => report(false)}>${t('reconnected_no_screen')}</button>
    </div>
    <${ProblemNote} problem=${problem} />
  </section>`;
}

function Chat({ token, state, dispatch }) {
  const [text, setText] = useState('');
  const key = useRef(idempotencyKey());
  const list = useRef(null);
  useEffect(() => { if (list.current) list.current.scrollTop = list.current.scrollHeight; }, [state.messages.length]);
  const [send, sending, problem] = useAction(async () => {
    await call(token, 'POST', '/v1/customer/messages', { text: text.trim() }, { 'Idempotency-Key': key.current });
    key.current = idempotencyKey();
    setText('');
  });
  const [older, loading, olderProblem] = useAction(async () => {
    const page = await call(token, 'GET', `/v1/customer/messages${query({ limit: 50, before: state.messages[0]?.seq })}`);
    dispatch({ type: 'older', messages: page.messages.slice().reverse(), hasMore: !!page.next_before });
  });
  return html`<section class="chat" aria-labelledby="chat-h">
    <h2 id="chat-h" class="sr-only">${t('chat')}</h2>
    ${state.hasMore && html`<button type="button" class="small" onClick=${older} disabled=${loading}>${t('older_messages')}</button>`}
    <${ProblemNote} problem=${olderProblem} />
    <ol class="messages" ref=${list} aria-live="polite" aria-relevant="additions">
      ${state.messages.map((m) => html`<li key=${m.id} class=${`msg ${m.author.kind}`}>
        <span class="author">${m.author.kind === 'customer' ? t('you') : m.author.name}</span>
        <time datetime=${m.sent_at}>${formatTime(m.sent_at)}</time>
        <p class="text">${m.text}</p>
      </li>`)}
    </ol>
    ${!state.ended && html`<form class="compose" onSubmit=${(e) => { e.preventDefault(); if (text.trim()) send(); }}>
      <label for="compose-text" class="sr-only">${t('message')}</label>
      <textarea id="compose-text" rows="2" maxlength="4000" value=${text} placeholder=${t('message')}
        onInput=${(e) => setText(e.target.value)}
        onKeyDown=${(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); if (text.trim()) send(); } }}></textarea>
      <button type="submit" class="primary" disabled=${sending || !text.trim()}>${t('send')}</button>
      <${ProblemNote} problem=${problem} />
    </form>`}
  </section>`;
}

await loadWords();
mount(html`<${Page} />`);

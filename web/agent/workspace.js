// One session at work: the chat with its audience, the participants (seed
// step 7), the customer's client, the invitations and how each race goes,
// and the audit trail for the lead.
import { html, useState, useEffect, useRef } from '../lib/html.js';
import { enc, query, idempotencyKey } from '../lib/api.js';
import {
  t, targetText, formatTime, formatDuration, auditText,
} from '../lib/i18n.js';
import {
  useAction, ProblemNote, TimeLeft, useNow, CopyButton, Later, MaskIcon,
} from '../lib/ui.js';
import { myPart } from './state.js';

/** Messages per page read. */
const MESSAGES_PAGE = 50;
/** Longest chat message (API.md). */
const MESSAGE_MAX = 4000;

export function Workspace({ state, session, dispatch, api }) {
  const { view } = session;
  const id = state.selected;
  const [problem, setProblem] = useState(null);
  const [inviting, setInviting] = useState(false);

  // Read the session and its last messages when opened and again after
  // each snapshot (a reconnect may have missed messages): the truth wins.
  useEffect(() => {
    if (!session.stale && session.messages) return undefined;
    let live = true;
    const epoch = session.epoch || 0;
    (async () => {
      try {
        const fresh = await api('GET', `/v1/sessions/${enc(id)}`);
        const page = await api('GET', `/v1/sessions/${enc(id)}/messages${query({ limit: MESSAGES_PAGE })}`);
        if (!live) return;
        dispatch({ type: 'view', view: fresh, epoch });
        dispatch({
          type: 'messages', session: id, messages: page.messages.slice().reverse(), hasMore: !!page.next_before,
        });
        setProblem(null);
      } catch (e) {
        if (!live) return;
        if (e.status === 403 || e.status === 404) dispatch({ type: 'forget', session: id });
        else setProblem(e);
      }
    })();
    return () => { live = false; };
  }, [id, session.stale, session.reread]);

  if (!view) return html`<p>${t('loading')}</p><${ProblemNote} problem=${problem} />`;
  const me = myPart(state, view);
  const isLead = view.lead === state.me?.id;
  const active = view.status === 'active' && me;

  return html`<article class="workspace" aria-labelledby="ws-h">
    <header class="ws-head">
      <div>
        <h1 id="ws-h">${t('session_with', { name: view.customer.name })}</h1>
        <p class="meta">${t(`mode_${view.mode}`)} · ${t('since', { time: formatTime(view.created_at) })}
          · ${view.status === 'active' ? t('active') : t(`ended_${view.ended_reason}`)}
          ${me && html` · ${t(`role_${me.role}`)}`}</p>
      </div>
      <${SessionActions} id=${id} active=${active} isLead=${isLead} api=${api} dispatch=${dispatch}
        onInvite=${() => setInviting(true)} left=${session.left} />
    </header>
    <${ProblemNote} problem=${problem} />
    ${session.left && html`<p class="banner" role="status">${t('you_left')}</p>`}
    ${session.customerLink && html`<${CustomerLink} link=${session.customerLink} />`}
    <div class="ws-grid">
      <${Chat} id=${id} session=${session} me=${me} active=${active} api=${api} dispatch=${dispatch} />
      <aside class="ws-side">
        <${CustomerState} customer=${view.customer} />
        <${Participants} id=${id} view=${view} me=${state.me} isLead=${isLead} active=${active} api=${api} dispatch=${dispatch} />
        <${Races} id=${id} session=${session} active=${active} api=${api} portals=${state.me?.memberships} />
        ${isLead && html`<${Audit} id=${id} api=${api} />`}
      </aside>
    </div>
    ${inviting && html`<${Later} load=${() => import('./window.js')} name="CollaborationWindow"
      session=${id} isLead=${isLead} api=${api} onClose=${() => setInviting(false)} />`}
  </article>`;
}

function SessionActions({ id, active, isLead, api, dispatch, onInvite, left }) {
  const [leave, leaving, leaveProblem] = useAction(async () => {
    await api('POST', `/v1/sessions/${enc(id)}/leave`);
    dispatch({ type: 'forget', session: id });
  });
  const [end, ending, endProblem] = useAction(async () => {
    dispatch({ type: 'view', view: await api('POST', `/v1/sessions/${enc(id)}/end`) });
  });
  if (left || !active) {
    return html`<div class="actions"><button type="button" onClick=${() => dispatch({ type: 'forget', session: id })}>
      ${t('close_session_view')}</button></div>`;
  }
  return html`<div class="actions">
    <button type="button" class="primary" onClick=${onInvite}>${t('invite_dots')}</button>
    <button type="button" onClick=${leave} disabled=${leaving}>${t('leave')}</button>
    ${isLead && html`<button type="button" class="danger" onClick=${end} disabled=${ending}>${t('end_session')}</button>`}
    <${ProblemNote} problem=${leaveProblem || endProblem} />
  </div>`;
}

function CustomerLink({ link }) {
  return html`<section class="handover" aria-labelledby="handover-h">
    <h2 id="handover-h">${t('customer_link')}</h2>
    <p class="muted">${t('customer_link_hint')}</p>
    <p class="link"><code>${link}</code></p>
    <div class="actions">
      <${CopyButton} text=${link} label=${t('copy_link')} />
      <a class="button" href=${link} target="_blank" rel="noopener noreferrer">${t('open_customer_page')}</a>
    </div>
  </section>`;
}

function CustomerState({ customer }) {
  return html`<section aria-labelledby="cust-h">
    <h2 id="cust-h">${t('customer_client')}</h2>
    <p>${customer.name} · ${t('generation', { n: customer.generation })}</p>
    <p class=${customer.reconnect_required ? 'badge warn' : 'badge ok'}>
      ${customer.reconnect_required ? t('reconnect_pending') : t('client_connected')}</p>
    <p class="badge">${customer.screen_shared ? t('screen_shared') : t('screen_not_shared')}</p>
  </section>`;
}

function Participants({ id, view, me, isLead, active, api, dispatch }) {
  const [act, busy, problem] = useAction(async (agent, what) => {
    dispatch({ type: 'view', view: await api('POST', `/v1/sessions/${enc(id)}/participants/${enc(agent)}/${what}`) });
  });
  return html`<section aria-labelledby="part-h">
    <h2 id="part-h">${t('participants')}</h2>
    <ul class="participants">
      ${view.participants.map((p) => html`<li key=${p.agent.id}>
        <span class="name">${p.agent.name}${p.agent.id === me?.id ? ` (${t('you')})` : ''}</span>
        ${p.role === 'lead' && html`<span class="badge lead">${t('role_lead')}</span>`}
        ${p.masked && html`<span class="badge masked"><${MaskIcon} /> ${t('masked')}</span>`}
        ${active && (isLead || p.agent.id === me?.id) && p.role !== 'lead' && html`<button type="button"
          class="small" disabled=${busy} onClick=${() => act(p.agent.id, p.masked ? 'unmask' : 'mask')}
          aria-label=${t(p.masked ? 'unmask_name' : 'mask_name', { name: p.agent.name })}>
          ${t(p.masked ? 'unmask' : 'mask')}</button>`}
      </li>`)}
    </ul>
    <${ProblemNote} problem=${problem} />
  </section>`;
}

/** Open invitations with cancel, and the live view of each race. */
function Races({ id, session, active, api, portals }) {
  const now = useNow();
  const races = Object.values(session.races).sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  const [cancel, busy, problem] = useAction(async (inv) => {
    await api('DELETE', `/v1/sessions/${enc(id)}/invitations/${enc(inv)}`);
  });
  return html`<section aria-labelledby="races-h">
    <h2 id="races-h">${t('invitations')}</h2>
    ${races.length === 0 && html`<p class="muted">${t('no_invitations')}</p>`}
    <ul class="races">
      ${races.map((r) => html`<li key=${r.id} class=${`race ${r.status}`}>
        <p class="race-head">${t(r.kind === 'transfer' ? 'race_transfer' : 'race_invite', { target: targetText(r.target, undefined, portals) })}
          ${r.masked && html` <span class="badge masked"><${MaskIcon} /> ${t('masked')}</span>`}</p>
        <p>${t('offered_to', { n: r.recipientCount })}
          ${r.declined.length > 0 && html` · ${t('declined_by', { names: r.declined.map((a) => a.name).join(', ') })}`}</p>
        ${r.comment && html`<p class="comment">${t('comment')}: ${r.comment}</p>`}
        <p>${raceOutcome(r, now, portals)}</p>
        ${r.status === 'pending' && active && html`<button type="button" class="small" disabled=${busy}
          onClick=${() => cancel(r.id)}>${t('cancel_invitation')}</button>`}
      </li>`)}
    </ul>
    <${ProblemNote} problem=${problem} />
  </section>`;
}

function raceOutcome(r, now, portals = []) {
  const portalName = (id) => portals.find((p) => p.id === id)?.name || id;
  if (r.status === 'accepted') {
    const who = r.winner?.name || '?';
    return r.wonAfterMs === null
      ? t('won_by', { name: who })
      : t('won_by_after', { name: who, time: formatDuration(r.wonAfterMs, true) });
  }
  if (r.status === 'pending') {
    const esc = r.escalation;
    if (esc && !esc.from && Date.parse(esc.at) > now) {
      return t('escalates_in', { portal: portalName(esc.portal), time: formatDuration(Date.parse(esc.at) - now) });
    }
    return html`${esc?.from ? `${t('escalated_to', { portal: portalName(esc.portal) })} · ` : ''}<${TimeLeft} at=${r.expiresAt} label=${t('expires_in')} />`;
  }
  if (r.status === 'closed') return t('race_closed');
  return t(`race_${r.status}`, { reason: r.closedReason ? t(`gone_${r.closedReason}`) : '' });
}

function Chat({ id, session, me, active, api, dispatch }) {
  const [text, setText] = useState('');
  const [audience, setAudience] = useState('everyone');
  const key = useRef(idempotencyKey());
  const list = useRef(null);
  const masked = !!me?.masked;
  const effective = masked ? 'agents' : audience;
  const messages = session.messages || [];

  useEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [messages.length]);

  const [send, sending, problem] = useAction(async () => {
    const body = { text: text.trim(), audience: effective };
    await api('POST', `/v1/sessions/${enc(id)}/messages`, body, { 'Idempotency-Key': key.current });
    key.current = idempotencyKey();
    setText('');
  });
  const [older, loadingOlder, olderProblem] = useAction(async () => {
    const first = messages[0];
    const page = await api('GET', `/v1/sessions/${enc(id)}/messages${query({ limit: MESSAGES_PAGE, before: first?.seq })}`);
    dispatch({
      type: 'messages', session: id, older: true, messages: page.messages.slice().reverse(), hasMore: !!page.next_before,
    });
  });

  return html`<section class="chat" aria-labelledby="chat-h">
    <h2 id="chat-h">${t('chat')}</h2>
    ${session.hasMore && html`<button type="button" class="small" onClick=${older} disabled=${loadingOlder}>
      ${t('older_messages')}</button>`}
    <${ProblemNote} problem=${olderProblem} />
    <ol class="messages" ref=${list} aria-live="polite" aria-relevant="additions">
      ${messages.map((m) => html`<li key=${m.id} class=${`msg ${m.author.kind} ${m.audience}`}>
        <span class="author">${m.author.name}
          ${m.author.masked && html` <span class="badge masked"><${MaskIcon} /> ${t('masked')}</span>`}</span>
        ${m.audience === 'agents' && html`<span class="badge agents-only">${t('agents_only')}</span>`}
        <time datetime=${m.sent_at}>${formatTime(m.sent_at)}</time>
        <p class="text">${m.text}</p>
      </li>`)}
    </ol>
    ${active && html`<form class="compose" onSubmit=${(e) => { e.preventDefault(); if (text.trim()) send(); }}>
      <label for="compose-text" class="sr-only">${t('message')}</label>
      <textarea id="compose-text" rows="2" maxlength=${MESSAGE_MAX} value=${text}
        onInput=${(e) => setText(e.target.value)} placeholder=${t('message')}
        onKeyDown=${(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); if (text.trim()) send(); } }}></textarea>
      <fieldset class="audience">
        <legend>${t('audience')}</legend>
        <label><input type="radio" name="audience" value="everyone" checked=${effective === 'everyone'}
          disabled=${masked} onChange=${() => setAudience('everyone')} /> ${t('audience_everyone')}</label>
        <label><input type="radio" name="audience" value="agents" checked=${effective === 'agents'}
          onChange=${() => setAudience('agents')} /> ${t('audience_agents')}</label>
      </fieldset>
      ${masked && html`<p class="muted">${t('masked_agents_only')}</p>`}
      <button type="submit" class="primary" disabled=${sending || !text.trim()}>${t('send')}</button>
      <${ProblemNote} problem=${problem} />
    </form>`}
  </section>`;
}

function Audit({ id, api }) {
  const [entries, setEntries] = useState(null);
  const [next, setNext] = useState(null);
  const [load, loading, problem] = useAction(async (cursor) => {
    const page = await api('GET', `/v1/sessions/${enc(id)}/audit${query({ limit: 50, cursor })}`);
    setEntries((old) => (cursor ? [...(old || []), ...page.entries] : page.entries));
    setNext(page.next_cursor);
  });
  return html`<section aria-labelledby="audit-h">
    <h2 id="audit-h">${t('audit_trail')}</h2>
    <button type="button" class="small" onClick=${() => load(null)} disabled=${loading}>
      ${entries ? t('reload') : t('show_audit')}</button>
    <${ProblemNote} problem=${problem} />
    ${entries && html`<ol class="audit">
      ${entries.map((e, i) => html`<li key=${i}><time datetime=${e.at}>${formatTime(e.at)}</time> ${auditText(e)}</li>`)}
    </ol>`}
    ${next && html`<button type="button" class="small" onClick=${() => load(next)} disabled=${loading}>${t('more')}</button>`}
  </section>`;
}

// The collaboration window (seed steps 1-5): every agent online now with
// its portal and session count, the portals with their head counts,
// searchable and in pages, kept fresh while it is open; pick an agent or a
// portal, then mask, comment, transfer or escalate, and invite.
import { html, useState, useEffect, useLayoutEffect, useRef } from '../lib/html.js';
import { enc, query, idempotencyKey } from '../lib/api.js';
import { t } from '../lib/i18n.js';
import { Dialog, useAction, ProblemNote, MaskIcon } from '../lib/ui.js';

/** Agents per page. */
const PAGE = 50;
/** How often an open window reads its page again (ms). */
const REFRESH_MS = 5000;
/** How long typing pauses before a search is sent (ms). */
const TYPING_MS = 250;
/** Longest comment (API.md). */
const COMMENT_MAX = 500;

export function CollaborationWindow({ session, isLead, api, onClose }) {
  const [q, setQ] = useState('');
  const [search, setSearch] = useState('');
  const [cursors, setCursors] = useState([null]); // where each page visited starts
  const [page, setPage] = useState(null);
  const [problem, setProblem] = useState(null);
  const [target, setTarget] = useState(null);
  const cursor = cursors[cursors.length - 1];

  // A pause in typing starts the new search on its first page. Only a
  // query that differs from the one shown does: on opening (or a space
  // typed) nothing is sent, and a page turned meanwhile stays turned.
  useEffect(() => {
    const typed = q.trim();
    if (typed === search) return undefined;
    const id = setTimeout(() => { setSearch(typed); setCursors([null]); }, TYPING_MS);
    return () => clearTimeout(id);
  }, [q, search]);

  useEffect(() => {
    let live = true;
    const read = async () => {
      try {
        const p = await api('GET', `/v1/collaborators${query({ q: search, limit: PAGE, cursor })}`);
        if (live) { setPage(p); setProblem(null); }
      } catch (e) {
        if (live) setProblem(e);
      }
    };
    read();
    const id = setInterval(read, REFRESH_MS);
    return () => { live = false; clearInterval(id); };
  }, [search, cursor]);

  if (target) {
    return html`<${Dialog} title=${t('invite_title')} onClose=${onClose} wide>
      <${InviteForm} session=${session} isLead=${isLead} target=${target} portals=${page?.portals || []}
        api=${api} onBack=${() => setTarget(null)} onSent=${onClose} />
    </${Dialog}>`;
  }
  const agents = page?.agents || [];
  return html`<${Dialog} title=${t('window_title')} onClose=${onClose} wide>
    <div class="window">
      <label for="window-q">${t('search')}</label>
      <input id="window-q" type="search" autofocus value=${q} autocomplete="off"
        placeholder=${t('search_hint')} onInput=${(e) => setQ(e.target.value)} />
      <${ProblemNote} problem=${problem} />
      <h3 id="portals-h">${t('portals')}</h3>
      <ul class="pick-list" aria-labelledby="portals-h">
        ${(page?.portals || []).map((p) => html`<li key=${p.id}>
          <button type="button" onClick=${() => setTarget({ portal: p })}
            disabled=${p.agents_online === 0}>
            <span class="name">${p.name}</span>
            <span class="meta">${t('online_count', { n: p.agents_online })}</span>
          </button>
        </li>`)}
      </ul>
      <h3 id="agents-h">${t('agents_online')}</h3>
      ${page && agents.length === 0 && html`<p class="muted">${t('nobody_online')}</p>`}
      <table class="agents" aria-labelledby="agents-h">
        <thead><tr><th scope="col">${t('name')}</th><th scope="col">${t('portal')}</th>
          <th scope="col">${t('active_sessions')}</th><th scope="col"><span class="sr-only">${t('invite')}</span></th></tr></thead>
        <tbody>
          ${agents.map((a) => html`<tr key=${a.id}>
            <td>${a.name}</td><td>${a.portal.name}</td><td>${a.active_sessions}</td>
            <td><button type="button" onClick=${() => setTarget({ agent: a })}
              aria-label=${t('invite_name', { name: a.name })}>${t('invite')}</button></td>
          </tr>`)}
        </tbody>
      </table>
      <div class="pager">
        <button type="button" disabled=${cursors.length === 1}
          onClick=${() => setCursors(cursors.slice(0, -1))}>${t('previous_page')}</button>
        <span>${t('page_n', { n: cursors.length })}</span>
        <button type="button" disabled=${!page?.next_cursor}
          onClick=${() => setCursors([...cursors, page.next_cursor])}>${t('next_page')}</button>
      </div>
    </div>
  </${Dialog}>`;
}

function InviteForm({ session, isLead, target, portals, api, onBack, onSent }) {
  const [kind, setKind] = useState('collaborate');
  const [masked, setMasked] = useState(false);
  const [comment, setComment] = useState('');
  const [escalate, setEscalate] = useState(false);
  const [after, setAfter] = useState(30);
  const [portal, setPortal] = useState('');
  const key = useRef(idempotencyKey());
  const form = useRef(null);
  // The picked target's button is gone: the focus starts on the form, in
  // the same task as the form appears (a layout effect; a plain effect
  // runs a frame later and took the focus away from a field reached and
  // typed in meanwhile).
  useLayoutEffect(() => { form.current?.querySelector('input')?.focus(); }, []);
  const transfer = kind === 'transfer';
  const others = portals.filter((p) => p.id !== target.agent?.portal.id);
  const escalationPortal = portal || others[0]?.id || portals[0]?.id || '';

  const [send, sending, problem] = useAction(async () => {
    const body = {
      target: target.agent ? { agent: target.agent.id } : { portal: target.portal.id },
      masked: masked && !transfer,
      kind,
    };
    if (comment.trim()) body.comment = comment.trim();
    if (target.agent && escalate) body.escalate = { after_secs: Number(after), portal: escalationPortal };
    // The same key on a retry of this form: one invitation however often it is sent.
    await api('POST', `/v1/sessions/${enc(session)}/invitations`, body, { 'Idempotency-Key': key.current });
    onSent();
  });
  const edited = (f) => (e) => { key.current = idempotencyKey(); f(e); };

  return html`<form class="invite" ref=${form} onSubmit=${(e) => { e.preventDefault(); send(); }}>
    <p class="target">${target.agent
      ? t('invite_agent', { name: target.agent.name, portal: target.agent.portal.name })
      : t('invite_portal', { portal: target.portal.name, n: target.portal.agents_online })}</p>
    ${target.portal && html`<p class="muted">${t('first_accept_wins')}</p>`}
    <fieldset>
      <legend>${t('kind')}</legend>
      <label><input type="radio" name="kind" value="collaborate" checked=${!transfer}
        onChange=${edited(() => setKind('collaborate'))} /> ${t('kind_collaborate')}</label>
      <label><input type="radio" name="kind" value="transfer" checked=${transfer} disabled=${!isLead}
        onChange=${edited(() => setKind('transfer'))} /> ${t('kind_transfer')}</label>
      ${!isLead && html`<p class="muted">${t('transfer_lead_only')}</p>`}
    </fieldset>
    <label class="check"><input type="checkbox" checked=${masked && !transfer} disabled=${transfer}
      onChange=${edited((e) => setMasked(e.target.checked))} />
      <span><${MaskIcon} /> ${t('mask_on_join')}</span></label>
    <p class="muted">${transfer ? t('transfer_never_masked') : t('mask_on_join_hint')}</p>
    <label for="invite-comment">${t('comment_for_invitees')}</label>
    <textarea id="invite-comment" maxlength=${COMMENT_MAX} rows="3" value=${comment}
      aria-describedby="comment-count" onInput=${edited((e) => setComment(e.target.value))}></textarea>
    <p class="muted" id="comment-count">${t('chars_left', { n: COMMENT_MAX - comment.length })} · ${t('comment_hint')}</p>
    ${target.agent && html`<fieldset>
      <legend>${t('escalation')}</legend>
      <label class="check"><input type="checkbox" checked=${escalate}
        onChange=${edited((e) => setEscalate(e.target.checked))} /> ${t('escalate_if_not_taken')}</label>
      ${escalate && html`<div class="row">
        <label for="esc-after">${t('after_secs')}</label>
        <input id="esc-after" type="number" min="5" max="3600" value=${after}
          onInput=${edited((e) => setAfter(e.target.value))} />
        <label for="esc-portal">${t('to_portal')}</label>
        <select id="esc-portal" value=${escalationPortal} onChange=${edited((e) => setPortal(e.target.value))}>
          ${portals.map((p) => html`<option value=${p.id}>${p.name}</option>`)}
        </select>
      </div>`}
    </fieldset>`}
    <${ProblemNote} problem=${problem} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${sending}>${sending ? t('sending') : t('send_invitation')}</button>
      <button type="button" onClick=${onBack}>${t('back')}</button>
    </div>
  </form>`;
}

// The administrators' desk: accounts and their policy, portals, agents
// (membership, presence, tokens, revoke, force logout, delete), sessions,
// the audit trail, and a demo to try everything in a minute. It uses the
// admin API only, with the admin token of this tab.
import { html, mount, useState, useEffect, useCallback } from './lib/html.js';
import { call, enc, query } from './lib/api.js';
import { t, loadWords, formatTime, auditText, targetText } from './lib/i18n.js';
import {
  tokenStore, useAction, ProblemNote, LangSwitch, SignIn, CopyButton,
} from './lib/ui.js';

const tokens = tokenStore('admin');
/** The agents' console for `token`, on this origin (token in the fragment). */
const consoleLink = (token) => `${location.origin}/#token=${encodeURIComponent(token)}`;

function Desk() {
  const [, relang] = useState(0);
  const [token, setToken] = useState(tokens.get());
  const [signIn, busy, problem] = useAction(async (value) => {
    await call(value, 'GET', '/v1/accounts?limit=1');
    tokens.set(value);
    setToken(value);
  });
  const head = html`<header class="top">
    <a class="skip" href="#main">${t('skip_to_main')}</a>
    <span class="brand">collabd · ${t('admin_desk')}</span><span class="grow"></span>
    ${token && html`<button type="button" class="ghost" onClick=${() => { tokens.clear(); setToken(null); }}>${t('sign_out')}</button>`}
    <${LangSwitch} onChange=${() => relang((n) => n + 1)} />
  </header>`;
  if (!token) {
    return html`<div class="app">${head}<${SignIn} title=${t('admin_sign_in')} hint=${t('admin_sign_in_hint')}
      label=${t('admin_token')} onToken=${signIn} problem=${problem} busy=${busy} /></div>`;
  }
  return html`<div class="app">${head}<${Accounts} token=${token} onSignOut=${() => { tokens.clear(); setToken(null); }} /></div>`;
}

function Accounts({ token, onSignOut }) {
  const api = useCallback((method, path, body) => call(token, method, path, body).catch((e) => {
    if (e.status === 401) onSignOut();
    throw e;
  }), [token]);
  const [list, setList] = useState(null);
  const [current, setCurrent] = useState(null);
  const [load, , loadProblem] = useAction(async () => {
    const page = await api('GET', '/v1/accounts?limit=200');
    setList(page.accounts);
    return page.accounts;
  });
  useEffect(() => { load(); }, []);

  return html`<div class="columns">
    <nav class="side" aria-label=${t('accounts')}>
      <h2>${t('accounts')}</h2>
      <${ProblemNote} problem=${loadProblem} />
      <ul class="session-list">
        ${(list || []).map((a) => html`<li key=${a.id}><button type="button" class=${current === a.id ? 'current' : ''}
          aria-current=${current === a.id ? 'page' : undefined} onClick=${() => setCurrent(a.id)}>
          <span class="name">${a.name}</span><span class="meta">${a.id}</span></button></li>`)}
      </ul>
      <${NewAccount} api=${api} onMade=${async (id) => { await load(); setCurrent(id); }} />
      <${Demo} api=${api} onMade=${async () => { await load(); setCurrent('acme'); }} />
    </nav>
    <main id="main" tabindex="-1" class="main">
      ${current ? html`<${Account} key=${current} id=${current} api=${api} onGone=${() => { setCurrent(null); load(); }} />`
        : html`<section class="welcome"><h1>${t('admin_desk')}</h1><p>${t('admin_welcome')}</p></section>`}
    </main>
  </div>`;
}

function NewAccount({ api, onMade }) {
  const [id, setId] = useState('');
  const [name, setName] = useState('');
  const [make, busy, problem] = useAction(async () => {
    await api('PUT', `/v1/accounts/${enc(id.trim())}`, { name: name.trim(), policy: {} });
    setId(''); setName('');
    await onMade(id.trim());
  });
  return html`<form class="stack" onSubmit=${(e) => { e.preventDefault(); make(); }}>
    <h3>${t('new_account')}</h3>
    <label for="acc-id">${t('id')}</label>
    <input id="acc-id" required pattern="[a-z0-9][a-z0-9_\\-]{0,63}" value=${id} onInput=${(e) => setId(e.target.value)} />
    <label for="acc-name">${t('name')}</label>
    <input id="acc-name" required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} />
    <button type="submit" disabled=${busy}>${t('create')}</button>
    <${ProblemNote} problem=${problem} />
  </form>`;
}

/** The README's walk-through, provisioned: account acme, portals tier1 and
 * tier2, agents Ann, Bob, Cat and Dan logged into tier1, a link for each. */
const DEMO_AGENTS = [['ann', 'Ann'], ['bob', 'Bob'], ['cat', 'Cat'], ['dan', 'Dan']];

function Demo({ api, onMade }) {
  const [links, setLinks] = useState(null);
  const [make, busy, problem] = useAction(async () => {
    await api('PUT', '/v1/accounts/acme', { name: 'Acme', policy: { invitation_ttl_secs: 120 } });
    await api('PUT', '/v1/accounts/acme/portals/tier1', { name: 'Tier 1' });
    await api('PUT', '/v1/accounts/acme/portals/tier2', { name: 'Tier 2' });
    const made = [];
    for (const [id, name] of DEMO_AGENTS) {
      await api('PUT', `/v1/accounts/acme/agents/${id}`, { name, portals: ['tier1', 'tier2'] });
      const { token } = await api('POST', `/v1/accounts/acme/agents/${id}/tokens`, {});
      await call(token, 'POST', '/v1/me/login', { portal: 'tier1' });
      made.push({ name, link: consoleLink(token) });
    }
    setLinks(made);
    await onMade();
  });
  return html`<section class="demo" aria-labelledby="demo-h">
    <h3 id="demo-h">${t('demo')}</h3>
    <p class="muted">${t('demo_hint')}</p>
    <button type="button" class="primary" onClick=${make} disabled=${busy}>${busy ? t('working') : t('create_demo')}</button>
    <${ProblemNote} problem=${problem} />
    ${links && html`<ul class="demo-links">${links.map((l) => html`<li key=${l.name}>
      <a href=${l.link} target="_blank" rel="noopener noreferrer">${t('open_console_as', { name: l.name })}</a></li>`)}</ul>`}
  </section>`;
}

const TABS = ['policy', 'portals', 'agents', 'sessions', 'audit'];

function Account({ id, api, onGone }) {
  const [tab, setTab] = useState('policy');
  const [account, setAccount] = useState(null);
  const [load, , problem] = useAction(async () => setAccount(await api('GET', `/v1/accounts/${enc(id)}`)));
  const [remove, removing, removeProblem] = useAction(async () => {
    await api('DELETE', `/v1/accounts/${enc(id)}`);
    onGone();
  });
  useEffect(() => { load(); }, [id]);
  if (!account) return html`<p>${t('loading')}</p><${ProblemNote} problem=${problem} />`;
  return html`<article aria-labelledby="acc-h">
    <header class="ws-head">
      <div><h1 id="acc-h">${account.name}</h1><p class="meta">${account.id}</p></div>
      <div class="actions"><${Confirm} label=${t('delete_account')} busy=${removing} onYes=${remove} /></div>
    </header>
    <${ProblemNote} problem=${removeProblem} />
    <div class="tabs" role="tablist" aria-label=${t('account')}>
      ${TABS.map((name) => html`<button type="button" role="tab" id=${`tab-${name}`} aria-selected=${tab === name}
        aria-controls="tab-panel" tabindex=${tab === name ? 0 : -1} onClick=${() => setTab(name)}
        onKeyDown=${(e) => tabKeys(e, name, setTab)}>${t(`tab_${name}`)}</button>`)}
    </div>
    <section id="tab-panel" role="tabpanel" aria-labelledby=${`tab-${tab}`}>
      ${tab === 'policy' && html`<${PolicyForm} account=${account} api=${api} onSaved=${setAccount} />`}
      ${tab === 'portals' && html`<${Portals} id=${id} api=${api} />`}
      ${tab === 'agents' && html`<${Agents} id=${id} api=${api} />`}
      ${tab === 'sessions' && html`<${Sessions} id=${id} api=${api} />`}
      ${tab === 'audit' && html`<${AuditTrail} id=${id} api=${api} />`}
    </section>
  </article>`;
}

/** Arrow keys move between tabs (the ARIA tabs pattern). */
function tabKeys(e, name, setTab) {
  const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
  if (!step) return;
  const next = TABS[(TABS.indexOf(name) + step + TABS.length) % TABS.length];
  setTab(next);
  requestAnimationFrame(() => document.getElementById(`tab-${next}`)?.focus());
}

/** A button that asks once more before it does something that cannot be undone. */
function Confirm({ label, busy, onYes }) {
  const [asking, setAsking] = useState(false);
  if (!asking) return html`<button type="button" class="danger" onClick=${() => setAsking(true)}>${label}</button>`;
  return html`<span class="confirm" role="group" aria-label=${label}>
    <button type="button" class="danger" disabled=${busy} onClick=${async () => { await onYes(); setAsking(false); }}>
      ${t('yes_really', { what: label })}</button>
    <button type="button" onClick=${() => setAsking(false)}>${t('cancel')}</button>
  </span>`;
}

const SWITCHES = ['collaboration', 'portal_invitations', 'masking', 'comments'];
const NUMBERS = ['invitation_ttl_secs', 'max_agents_per_session', 'max_active_sessions_per_agent',
  'max_pending_invitations_per_session', 'max_messages_per_session', 'max_invitations_per_session',
  'session_idle_timeout_secs', 'retention_secs'];

function PolicyForm({ account, api, onSaved }) {
  const [name, setName] = useState(account.name);
  const [policy, setPolicy] = useState(account.policy);
  const [saved, setSaved] = useState(false);
  const set = (k, v) => { setSaved(false); setPolicy({ ...policy, [k]: v }); };
  const [save, busy, problem] = useAction(async () => {
    onSaved(await api('PATCH', `/v1/accounts/${enc(account.id)}`, { name, policy }));
    setSaved(true);
  });
  return html`<form class="policy" onSubmit=${(e) => { e.preventDefault(); save(); }}>
    <label for="pol-name">${t('name')}</label>
    <input id="pol-name" required maxlength="200" value=${name} onInput=${(e) => { setSaved(false); setName(e.target.value); }} />
    <fieldset><legend>${t('features')}</legend>
      ${SWITCHES.map((k) => html`<label class="check"><input type="checkbox" checked=${policy[k]}
        onChange=${(e) => set(k, e.target.checked)} /> ${t(`policy_${k}`)}</label>`)}
      ${['web', 'queue'].map((m) => html`<label class="check"><input type="checkbox"
        checked=${policy.session_modes.includes(m)}
        onChange=${(e) => set('session_modes', e.target.checked
          ? [...policy.session_modes, m] : policy.session_modes.filter((x) => x !== m))} />
        ${t('mode_allowed', { mode: t(`mode_${m}`) })}</label>`)}
    </fieldset>
    <fieldset><legend>${t('limits')}</legend>
      <div class="grid2">${NUMBERS.map((k) => html`<label for=${`pol-${k}`}>${t(`policy_${k}`)}</label>
        <input id=${`pol-${k}`} type="number" min="1" value=${policy[k]}
          onInput=${(e) => set(k, Number(e.target.value))} />`)}</div>
    </fieldset>
    <${ProblemNote} problem=${problem} />
    <div class="actions"><button type="submit" class="primary" disabled=${busy}>${t('save')}</button>
      ${saved && html`<span role="status">${t('saved')}</span>`}</div>
  </form>`;
}

function Portals({ id, api }) {
  const [portals, setPortals] = useState(null);
  const [pid, setPid] = useState('');
  const [name, setName] = useState('');
  const [load, , problem] = useAction(async () => setPortals((await api('GET', `/v1/accounts/${enc(id)}/portals`)).portals));
  const [put, busy, putProblem] = useAction(async () => {
    await api('PUT', `/v1/accounts/${enc(id)}/portals/${enc(pid.trim())}`, { name: name.trim() });
    setPid(''); setName('');
    await load();
  });
  const [remove, removing, removeProblem] = useAction(async (p) => {
    await api('DELETE', `/v1/accounts/${enc(id)}/portals/${enc(p)}`);
    await load();
  });
  useEffect(() => { load(); }, [id]);
  return html`<div>
    <${ProblemNote} problem=${problem || removeProblem} />
    <table><thead><tr><th scope="col">${t('id')}</th><th scope="col">${t('name')}</th><th scope="col"><span class="sr-only">${t('actions')}</span></th></tr></thead>
      <tbody>${(portals || []).map((p) => html`<tr key=${p.id}><td>${p.id}</td><td>${p.name}</td>
        <td><${Confirm} label=${t('delete_name', { name: p.name })} busy=${removing} onYes=${() => remove(p.id)} /></td></tr>`)}</tbody></table>
    <form class="row" onSubmit=${(e) => { e.preventDefault(); put(); }}>
      <label for="portal-id">${t('id')}</label>
      <input id="portal-id" required value=${pid} onInput=${(e) => setPid(e.target.value)} />
      <label for="portal-name">${t('name')}</label>
      <input id="portal-name" required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} />
      <button type="submit" disabled=${busy}>${t('create_or_rename_portal')}</button>
    </form>
    <${ProblemNote} problem=${putProblem} />
  </div>`;
}

function Agents({ id, api }) {
  const [agents, setAgents] = useState([]);
  const [next, setNext] = useState(null);
  const [portals, setPortals] = useState([]);
  const [minted, setMinted] = useState(null);
  const [editing, setEditing] = useState(null);
  const [load, , problem] = useAction(async (cursor) => {
    const page = await api('GET', `/v1/accounts/${enc(id)}/agents${query({ limit: 50, cursor })}`);
    setAgents((old) => (cursor ? [...old, ...page.agents] : page.agents));
    setNext(page.next_cursor);
    if (!cursor) setPortals((await api('GET', `/v1/accounts/${enc(id)}/portals`)).portals);
  });
  const [act, busy, actProblem] = useAction(async (agent, what) => {
    const base = `/v1/accounts/${enc(id)}/agents/${enc(agent)}`;
    if (what === 'token') {
      const made = await api('POST', `${base}/tokens`, {});
      setMinted({ agent, ...made });
      return;
    }
    if (what === 'revoke') await api('POST', `${base}/tokens/revoke`);
    if (what === 'logout') await api('POST', `${base}/logout`);
    if (what === 'delete') await api('DELETE', base);
    await load(null);
  });
  useEffect(() => { load(null); }, [id]);
  const portalName = (p) => portals.find((x) => x.id === p)?.name || p;
  return html`<div>
    <${ProblemNote} problem=${problem || actProblem} />
    ${minted && html`<div class="minted" role="status">
      <p><strong>${t('token_for', { name: minted.agent })}</strong> ${t('token_shown_once')}</p>
      <p class="link"><code>${minted.token}</code></p>
      <p class="muted">${t('expires_at', { time: formatTime(minted.expires_at) })}</p>
      <div class="actions"><${CopyButton} text=${minted.token} />
        <a class="button" href=${consoleLink(minted.token)} target="_blank" rel="noopener noreferrer">${t('open_console_as', { name: minted.agent })}</a>
        <button type="button" onClick=${() => setMinted(null)}>${t('hide')}</button></div>
    </div>`}
    <table class="agents-admin"><thead><tr><th scope="col">${t('agent')}</th><th scope="col">${t('portals')}</th>
      <th scope="col">${t('presence')}</th><th scope="col">${t('active_sessions')}</th><th scope="col"><span class="sr-only">${t('actions')}</span></th></tr></thead>
      <tbody>${agents.map((a) => html`<tr key=${a.id}>
        <td>${a.name}<br /><span class="muted">${a.id}</span></td>
        <td>${a.portals.map(portalName).join(', ')}</td>
        <td>${a.presence ? t('online_in', { portal: portalName(a.presence.portal) }) : t('offline')}</td>
        <td>${a.active_sessions}</td>
        <td class="actions">
          <button type="button" class="small" disabled=${busy} onClick=${() => setEditing(a)}>${t('edit')}</button>
          <button type="button" class="small" disabled=${busy} onClick=${() => act(a.id, 'token')}>${t('mint_token')}</button>
          <button type="button" class="small" disabled=${busy || !a.presence} onClick=${() => act(a.id, 'logout')}>${t('force_logout')}</button>
          <button type="button" class="small" disabled=${busy} onClick=${() => act(a.id, 'revoke')}
            aria-label=${t('revoke_name', { name: a.name })}>${t('revoke_tokens')}</button>
          <${Confirm} label=${t('delete_name', { name: a.name })} busy=${busy} onYes=${() => act(a.id, 'delete')} />
        </td></tr>`)}</tbody></table>
    ${next && html`<button type="button" onClick=${() => load(next)}>${t('more')}</button>`}
    <${AgentForm} key=${editing?.id || 'new'} id=${id} agent=${editing} portals=${portals} api=${api}
      onSaved=${() => { setEditing(null); load(null); }} onCancel=${() => setEditing(null)} />
  </div>`;
}

function AgentForm({ id, agent, portals, api, onSaved, onCancel }) {
  const [aid, setAid] = useState(agent?.id || '');
  const [name, setName] = useState(agent?.name || '');
  const [member, setMember] = useState(agent?.portals || []);
  const [save, busy, problem] = useAction(async () => {
    await api('PUT', `/v1/accounts/${enc(id)}/agents/${enc(aid.trim())}`, { name: name.trim(), portals: member });
    onSaved();
  });
  return html`<form class="stack" onSubmit=${(e) => { e.preventDefault(); save(); }}>
    <h3>${agent ? t('edit_agent', { name: agent.name }) : t('new_agent')}</h3>
    <label for="agent-id">${t('id')}</label>
    <input id="agent-id" required disabled=${!!agent} value=${aid} onInput=${(e) => setAid(e.target.value)} />
    <label for="agent-name">${t('name')}</label>
    <input id="agent-name" required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} />
    <fieldset><legend>${t('membership')}</legend>
      ${portals.map((p) => html`<label class="check"><input type="checkbox" checked=${member.includes(p.id)}
        onChange=${(e) => setMember(e.target.checked ? [...member, p.id] : member.filter((x) => x !== p.id))} /> ${p.name}</label>`)}
    </fieldset>
    <${ProblemNote} problem=${problem} />
    <div class="actions"><button type="submit" class="primary" disabled=${busy}>${t('save')}</button>
      ${agent && html`<button type="button" onClick=${onCancel}>${t('cancel')}</button>`}</div>
  </form>`;
}

function Sessions({ id, api }) {
  const [status, setStatus] = useState('active');
  const [sessions, setSessions] = useState([]);
  const [next, setNext] = useState(null);
  const [load, , problem] = useAction(async (cursor) => {
    const page = await api('GET', `/v1/accounts/${enc(id)}/sessions${query({ status, limit: 50, cursor })}`);
    setSessions((old) => (cursor ? [...old, ...page.sessions] : page.sessions));
    setNext(page.next_cursor);
  });
  const [end, busy, endProblem] = useAction(async (sid) => {
    await api('POST', `/v1/accounts/${enc(id)}/sessions/${enc(sid)}/end`);
    await load(null);
  });
  useEffect(() => { load(null); }, [id, status]);
  return html`<div>
    <div class="row"><label for="sess-status">${t('status')}</label>
      <select id="sess-status" value=${status} onChange=${(e) => setStatus(e.target.value)}>
        <option value="active">${t('active')}</option><option value="ended">${t('ended')}</option>
      </select></div>
    <${ProblemNote} problem=${problem || endProblem} />
    <table><thead><tr><th scope="col">${t('customer')}</th><th scope="col">${t('mode')}</th><th scope="col">${t('participants')}</th>
      <th scope="col">${t('open_invitations')}</th><th scope="col">${t('since_col')}</th><th scope="col"><span class="sr-only">${t('actions')}</span></th></tr></thead>
      <tbody>${sessions.map((s) => html`<tr key=${s.id}>
        <td>${s.customer.name}<br /><span class="muted">${s.id}</span></td><td>${t(`mode_${s.mode}`)}</td>
        <td>${s.participants.map((p) => `${p.agent.name}${p.role === 'lead' ? ` (${t('role_lead')})` : ''}${p.masked ? ` (${t('masked')})` : ''}`).join(', ')}</td>
        <td>${s.invitations.map((i) => targetText(i.target)).join(', ')}</td>
        <td>${formatTime(s.created_at)}</td>
        <td>${s.status === 'active'
          ? html`<button type="button" class="small danger" disabled=${busy} onClick=${() => end(s.id)}>${t('end_session')}</button>`
          : t(`ended_${s.ended_reason}`)}</td></tr>`)}</tbody></table>
    ${next && html`<button type="button" onClick=${() => load(next)}>${t('more')}</button>`}
  </div>`;
}

function AuditTrail({ id, api }) {
  const [filter, setFilter] = useState({ session: '', agent: '', since: '' });
  const [entries, setEntries] = useState([]);
  const [next, setNext] = useState(null);
  const [load, busy, problem] = useAction(async (cursor) => {
    const since = filter.since ? new Date(filter.since).toISOString() : '';
    const page = await api('GET', `/v1/accounts/${enc(id)}/audit${query({ ...filter, since, limit: 50, cursor })}`);
    setEntries((old) => (cursor ? [...old, ...page.entries] : page.entries));
    setNext(page.next_cursor);
  });
  useEffect(() => { load(null); }, [id]);
  const field = (k) => (e) => setFilter({ ...filter, [k]: e.target.value });
  return html`<div>
    <form class="row" onSubmit=${(e) => { e.preventDefault(); load(null); }}>
      <label for="aud-session">${t('session')}</label><input id="aud-session" value=${filter.session} onInput=${field('session')} />
      <label for="aud-agent">${t('agent')}</label><input id="aud-agent" value=${filter.agent} onInput=${field('agent')} />
      <label for="aud-since">${t('since_col')}</label><input id="aud-since" type="datetime-local" value=${filter.since} onInput=${field('since')} />
      <button type="submit" disabled=${busy}>${t('filter')}</button>
    </form>
    <${ProblemNote} problem=${problem} />
    <ol class="audit">${entries.map((e, i) => html`<li key=${i}><time datetime=${e.at}>${formatTime(e.at)}</time>
      ${' '}${auditText(e)}${e.session ? html` <span class="muted">${e.session}</span>` : ''}</li>`)}</ol>
    ${entries.length === 0 && !busy && html`<p class="muted">${t('no_entries')}</p>`}
    ${next && html`<button type="button" onClick=${() => load(next)} disabled=${busy}>${t('more')}</button>`}
  </div>`;
}

await loadWords(['admin']);
mount(html`<${Desk} />`);

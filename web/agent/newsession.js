// A new session with a (demo) customer, and the link to hand over: the
// customer's token rides in the link's fragment, which browsers never send
// to a server, so it is in no request line and no log.
import { html, useState, useRef } from '../lib/html.js';
import { idempotencyKey } from '../lib/api.js';
import { t } from '../lib/i18n.js';
import { Dialog, useAction, ProblemNote } from '../lib/ui.js';

/** The customer's page for `token`, on this origin. */
export const customerLink = (token) => `${location.origin}/customer#token=${encodeURIComponent(token)}`;

export function NewSession({ api, dispatch, onClose }) {
  const [name, setName] = useState('');
  const [mode, setMode] = useState('web');
  const key = useRef(idempotencyKey());
  const [create, busy, problem] = useAction(async () => {
    const made = await api('POST', '/v1/sessions', { mode, customer: { name: name.trim() } },
      { 'Idempotency-Key': key.current });
    dispatch({ type: 'view', view: made.session });
    dispatch({ type: 'customer_link', session: made.session.id, link: customerLink(made.customer_token) });
    dispatch({ type: 'select', session: made.session.id });
    onClose();
  });
  const edited = (f) => (e) => { key.current = idempotencyKey(); f(e); };
  return html`<${Dialog} title=${t('new_session')} onClose=${onClose}>
    <form onSubmit=${(e) => { e.preventDefault(); create(); }}>
      <label for="customer-name">${t('customer_name')}</label>
      <input id="customer-name" autofocus required maxlength="200" value=${name}
        onInput=${edited((e) => setName(e.target.value))} />
      <fieldset>
        <legend>${t('mode')}</legend>
        ${['web', 'queue'].map((m) => html`<label><input type="radio" name="mode" value=${m}
          checked=${mode === m} onChange=${edited(() => setMode(m))} /> ${t(`mode_${m}`)}</label>`)}
      </fieldset>
      <${ProblemNote} problem=${problem} />
      <div class="actions">
        <button type="submit" class="primary" disabled=${busy || !name.trim()}>${t('create_session')}</button>
        <button type="button" onClick=${onClose}>${t('cancel')}</button>
      </div>
    </form>
  </${Dialog}>`;
}

// The invitation alert (seed step 6), shown wherever the agent is in the
// console: who invites, for which customer, masked or not, the comment,
// time left; Yes / No. It goes the moment someone else won, saying who
// or why. New alerts are announced to screen readers; when one goes while
// it has the focus, the focus moves to the next alert or back to the page.
import { html, useEffect, useLayoutEffect, useRef, useState } from '../lib/html.js';
import { enc } from '../lib/api.js';
import { t, targetText } from '../lib/i18n.js';
import { useAction, ProblemNote, TimeLeft, MaskIcon } from '../lib/ui.js';

/** How long a withdrawn alert stays to say why (ms). */
const GONE_STAYS_MS = 8000;
/**
 * How long a withdrawn alert's OK ignores presses (ms): it takes the place
 * of "Yes", so a press meant for "Yes" that lands just after someone else
 * won would otherwise dismiss the alert before its reason could be read.
 */
const OK_GUARD_MS = 1000;

export function Alerts({ state, dispatch, api }) {
  const region = useRef(null);
  const [said, setSaid] = useState('');
  const seen = useRef(new Map());

  // Say what changed: a new invitation, or one gone (and why).
  useEffect(() => {
    const lines = [];
    for (const { offer, gone } of state.offers) {
      const before = seen.current.get(offer.id);
      if (!before) lines.push(t('alert_new', { inviter: offer.inviter.name, customer: offer.customer.name }));
      else if (before === 'open' && gone) lines.push(goneText(offer, gone));
      seen.current.set(offer.id, gone ? 'gone' : 'open');
    }
    if (lines.length) setSaid(lines.join(' '));
  }, [state.offers]);

  // A withdrawn alert says why for a few seconds, then goes.
  useEffect(() => {
    const timers = state.offers
      .filter((o) => o.gone)
      .map((o) => setTimeout(() => dismiss(o.offer.id), Math.max(0, o.gone.at + GONE_STAYS_MS - Date.now())));
    return () => timers.forEach(clearTimeout);
  }, [state.offers]);

  function dismiss(id) {
    const el = region.current?.querySelector(`[data-invitation="${CSS.escape(id)}"]`);
    const hadFocus = el?.contains(document.activeElement);
    dispatch({ type: 'dismiss', invitation: id });
    if (hadFocus) {
      // After the render: the next alert's first button, else the page.
      requestAnimationFrame(() => {
        const next = region.current?.querySelector('.alert button');
        (next || document.getElementById('main'))?.focus();
      });
    }
  }

  const open = state.offers.filter((o) => !o.gone).length;
  return html`<section class="alerts" ref=${region} aria-labelledby="alerts-h">
    <h2 id="alerts-h" class=${state.offers.length ? '' : 'sr-only'} tabindex="-1">
      ${t('alerts_heading', { n: open })}
    </h2>
    <p class="sr-only" aria-live="assertive" aria-atomic="true">${said}</p>
    ${state.offers.map((o) => html`<${Alert} key=${o.offer.id} item=${o} api=${api} portals=${state.me?.memberships}
      dispatch=${dispatch} onDismiss=${() => dismiss(o.offer.id)} />`)}
  </section>`;
}

function goneText(offer, gone) {
  if (gone.reason === 'accepted_by_other' && gone.by) return t('gone_taken_by', { name: gone.by.name });
  return t(`gone_${gone.reason}`);
}

function Alert({ item: { offer, gone }, api, dispatch, onDismiss, portals }) {
  const ref = useRef(null);
  const id = offer.id;
  const headingId = `alert-${id}`;

  useLayoutEffect(() => {
    // The moment this alert is on screen (after the next paint), for the
    // wire-to-screen figure: `collabd:offer:<id>` was marked on arrival.
    requestAnimationFrame(() => setTimeout(() => performance.mark(`collabd:alert:${id}`), 0));
  }, []);

  const [accept, accepting, acceptProblem] = useAction(async () => {
    const won = await api('POST', `/v1/invitations/${enc(id)}/accept`);
    dispatch({ type: 'view', view: won.session });
    dispatch({ type: 'select', session: won.session.id });
    dispatch({ type: 'dismiss', invitation: id });
    document.getElementById('main')?.focus();
  });
  const [decline, declining, declineProblem] = useAction(async () => {
    await api('POST', `/v1/invitations/${enc(id)}/decline`);
    onDismiss();
  });

  // Gone while it had the focus (read before its buttons leave the page):
  // the focus stays in the alert, on its "OK".
  const focusOnGone = useRef(false);
  const wasGone = useRef(gone);
  if (gone && !wasGone.current) focusOnGone.current = !!ref.current?.contains(document.activeElement);
  wasGone.current = gone;
  useLayoutEffect(() => {
    if (gone && focusOnGone.current) {
      focusOnGone.current = false;
      ref.current?.querySelector('.actions button')?.focus();
    }
  }, [gone]);

  // The OK takes presses once the guard is over (see OK_GUARD_MS). Its
  // buttons are new elements (the keys), never "Yes" relabelled: a press
  // begun on "Yes" cannot end on "OK".
  const [armed, setArmed] = useState(false);
  useEffect(() => {
    if (!gone) return undefined;
    const timer = setTimeout(() => setArmed(true), Math.max(0, gone.at + OK_GUARD_MS - Date.now()));
    return () => clearTimeout(timer);
  }, [gone]);
  const ok = () => { if (armed) onDismiss(); };

  const busy = accepting || declining;
  const problem = acceptProblem || declineProblem;
  return html`<article class=${`alert ${gone ? 'gone' : ''} ${offer.kind === 'transfer' ? 'transfer' : ''}`}
      ref=${ref} data-invitation=${id} aria-labelledby=${headingId}>
    <h3 id=${headingId}>
      ${t(offer.kind === 'transfer' ? 'alert_transfer_from' : 'alert_from', { name: offer.inviter.name })}
    </h3>
    <dl class="facts">
      <dt>${t('customer')}</dt><dd>${offer.customer.name} · ${t(`mode_${offer.mode}`)}</dd>
      <dt>${t('sent_to')}</dt><dd>${targetText(offer.target, offer.recipient_count, portals)}</dd>
      ${offer.comment && html`<dt>${t('comment')}</dt><dd class="comment">${offer.comment}</dd>`}
    </dl>
    ${offer.masked && html`<p class="masked-note"><${MaskIcon} /> ${t('alert_masked')}</p>`}
    ${gone
      ? html`<p class="gone-why">${goneText(offer, gone)}</p>
          <${ProblemNote} problem=${problem} />
          <div class="actions" key="gone">
            <button type="button" onClick=${ok} aria-disabled=${armed ? null : 'true'}>${t('ok')}</button>
          </div>`
      : html`<p><${TimeLeft} at=${offer.expires_at} label=${t('time_left')} /></p>
          <${ProblemNote} problem=${problem} />
          <div class="actions" key="open">
            <button type="button" class="primary" onClick=${accept} disabled=${busy}
              aria-describedby=${headingId}>${accepting ? t('accepting') : t('yes_join')}</button>
            <button type="button" onClick=${decline} disabled=${busy}
              aria-describedby=${headingId}>${declining ? t('declining') : t('no_decline')}</button>
          </div>`}
  </article>`;
}

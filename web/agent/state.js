// The agent console's state and the one function that changes it: every
// stream event and every HTTP answer goes through `reduce`. A `snapshot`
// replaces what the stream owns (the agent, its alerts, its sessions):
// after a reconnect nothing from before can linger.

export const initial = {
  /** The agent (`GET /v1/me`, the snapshot's `agent`). */
  me: null,
  /** Alerts: `{offer, gone}`; `gone` = `{reason, by, at}` once withdrawn. */
  offers: [],
  /** Sessions by id: `{view, messages, hasMore, stale, races, left, customerLink}`. */
  sessions: {},
  /** The session shown in the workspace. */
  selected: null,
  /** The stream: `{state, retryIn, reason}`. */
  conn: { state: 'connecting' },
  /** Why someone else logged this agent out, if they did. */
  loggedOut: null,
};

/** Races kept per session once they are over (the live view shows recent ones). */
const RACES_KEPT = 20;

const blank = () => ({
  view: null, messages: null, hasMore: false, stale: true, races: {}, left: false, customerLink: null,
});

/** A race as the session's agents watch it, from an invitation (view or summary). */
function raceOf(inv, old) {
  return {
    id: inv.id,
    kind: inv.kind,
    target: inv.target,
    masked: inv.masked,
    comment: inv.comment,
    inviter: inv.inviter,
    recipientCount: inv.recipient_count,
    createdAt: inv.created_at,
    expiresAt: inv.expires_at,
    escalation: inv.escalation,
    status: inv.status,
    closedReason: inv.closed_reason,
    declined: old?.declined
      || (inv.declined_by || []).map((id) => ({ id, name: id })),
    winner: old?.winner || (inv.accepted_by ? { id: inv.accepted_by, name: inv.accepted_by } : null),
    wonAfterMs: old?.wonAfterMs ?? null,
  };
}

function keepRecent(races) {
  const all = Object.values(races);
  if (all.length <= RACES_KEPT) return races;
  all.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  const keep = all.filter((r, i) => r.status === 'pending' || i < RACES_KEPT);
  return Object.fromEntries(keep.map((r) => [r.id, r]));
}

/** Races of a session view's open invitations, with what was seen before. */
function racesFrom(view, old = {}) {
  const races = { ...old };
  for (const inv of view.invitations) races[inv.id] = raceOf(inv, old[inv.id]);
  // Open before, not open now, and no event said how it ended (missed
  // while disconnected): it is over, how is not known here.
  const open = new Set(view.invitations.map((i) => i.id));
  for (const r of Object.values(races)) {
    if (r.status === 'pending' && !open.has(r.id)) races[r.id] = { ...r, status: 'closed' };
  }
  return keepRecent(races);
}

function withSession(state, id, change) {
  const current = state.sessions[id] || blank();
  return { ...state, sessions: { ...state.sessions, [id]: change(current) } };
}

/** How many times in a row a session read that events overtook is read again. */
const MAX_REREADS = 3;

function withView(state, id, change) {
  if (!state.sessions[id]?.view) {
    // An event for a session this tab has not loaded: load it.
    return withSession(state, id, (s) => ({ ...s, stale: true, epoch: (s.epoch || 0) + 1 }));
  }
  // Counted, so a read that was in flight meanwhile knows it may be older.
  return withSession(state, id, (s) => ({ ...s, view: change(s.view), epoch: (s.epoch || 0) + 1 }));
}

function upsertInvitation(view, inv) {
  const others = view.invitations.filter((i) => i.id !== inv.id);
  const old = view.invitations.find((i) => i.id === inv.id);
  // Events carry summaries; keep the view's recipient lists.
  const merged = { ...old, ...inv };
  return { ...view, invitations: inv.status === 'pending' ? [...others, merged] : others };
}

function onInvitation(state, data, change = (r) => r) {
  const inv = data.invitation;
  let next = withView(state, data.session, (v) => upsertInvitation(v, inv));
  next = withSession(next, data.session, (s) => ({
    ...s,
    races: keepRecent({ ...s.races, [inv.id]: change(raceOf(inv, s.races[inv.id])) }),
  }));
  return next;
}

function replaceParticipant(view, p) {
  const rest = view.participants.filter((x) => x.agent.id !== p.agent.id);
  return { ...view, participants: [...rest, p].sort((a, b) => Date.parse(a.joined_at) - Date.parse(b.joined_at)) };
}

/** A page of the latest messages, with those that arrived on the stream
 * while it was read (newer than the page: it may not have them). */
function latest(page, s) {
  const last = page.length ? page[page.length - 1].seq : -1;
  const newer = [...(s.messages || []), ...(s.early || [])]
    .filter((m) => m.seq > last && !page.some((p) => p.id === m.id));
  const unique = [...new Map(newer.map((m) => [m.id, m])).values()].sort((a, b) => a.seq - b.seq);
  return [...page, ...unique];
}

const EVENTS = {
  snapshot(state, data) {
    const sessions = {};
    for (const view of data.sessions) {
      const old = state.sessions[view.id];
      sessions[view.id] = {
        ...(old || blank()), view, stale: true, left: false, races: racesFrom(view, old?.races),
      };
    }
    // The session on screen stays, to be read again: it may have ended.
    if (state.selected && !sessions[state.selected] && state.sessions[state.selected]) {
      sessions[state.selected] = { ...state.sessions[state.selected], stale: true };
    }
    return {
      ...state,
      me: data.agent,
      offers: data.invitations.map((offer) => ({ offer, gone: null })),
      sessions,
      loggedOut: data.agent.portal ? null : state.loggedOut,
    };
  },
  invitation_offered(state, offer) {
    const others = state.offers.filter((o) => o.offer.id !== offer.id);
    return { ...state, offers: [...others, { offer, gone: null }] };
  },
  invitation_withdrawn(state, data) {
    return {
      ...state,
      offers: state.offers.map((o) => (o.offer.id === data.invitation && !o.gone
        ? { ...o, gone: { reason: data.reason, by: data.accepted_by || null, at: Date.now() } }
        : o)),
    };
  },
  invitation_sent: (s, d) => onInvitation(s, d),
  invitation_escalated: (s, d) => onInvitation(s, d),
  invitation_accepted: (s, d) => onInvitation(s, d, (r) => ({
    ...r, winner: r.winner?.id === d.by ? r.winner : { id: d.by, name: d.by },
  })),
  invitation_declined: (s, d) => onInvitation(s, d, (r) => ({
    ...r,
    declined: [...r.declined.filter((a) => a.id !== d.by), d.agent || { id: d.by, name: d.by }],
  })),
  invitation_expired: (s, d) => onInvitation(s, d),
  invitation_cancelled: (s, d) => onInvitation(s, d),
  participant_joined(state, { session, participant: p }) {
    let next = withView(state, session, (v) => replaceParticipant(v, p));
    next = withSession(next, session, (s) => {
      const races = { ...s.races };
      for (const r of Object.values(races)) {
        if (r.winner?.id === p.agent.id && r.wonAfterMs === null) {
          races[r.id] = {
            ...r, winner: p.agent, wonAfterMs: Date.parse(p.joined_at) - Date.parse(r.createdAt),
          };
        }
      }
      return { ...s, races };
    });
    return next;
  },
  participant_left(state, { session, participant: p }) {
    const next = withView(state, session, (v) => ({
      ...v, participants: v.participants.filter((x) => x.agent.id !== p.agent.id),
    }));
    if (p.agent.id !== state.me?.id) return next;
    return withSession(next, session, (s) => ({ ...s, left: true }));
  },
  participant_updated: (state, { session, participant }) => withView(
    state, session, (v) => replaceParticipant(v, participant),
  ),
  lead_changed: (state, { session, lead }) => withView(state, session, (v) => ({
    ...v,
    lead: lead.id,
    participants: v.participants.map((p) => ({
      ...p, role: p.agent.id === lead.id ? 'lead' : 'collaborator',
    })),
  })),
  message(state, { session, message }) {
    return withSession(state, session, (s) => {
      // Not read yet: kept until the page read arrives (it may not have it).
      if (!s.messages) return { ...s, early: [...(s.early || []), message] };
      if (s.messages.some((m) => m.id === message.id)) return s;
      return {
        ...s,
        messages: [...s.messages, message],
        view: s.view && { ...s.view, message_count: s.view.message_count + 1 },
      };
    });
  },
  customer_reconnect_required: (state, { session, generation }) => withView(state, session, (v) => ({
    ...v, customer: { ...v.customer, generation, reconnect_required: true },
  })),
  customer_reconnected: (state, { session, generation, screen_shared: shared }) => withView(
    state, session, (v) => ({
      ...v,
      customer: {
        ...v.customer,
        generation,
        reconnect_required: v.customer.generation > generation,
        screen_shared: shared,
      },
    }),
  ),
  session_ended: (state, { session, reason }) => withView(state, session, (v) => ({
    ...v, status: 'ended', ended_reason: reason, invitations: [],
  })),
  logged_out(state, { reason }) {
    return {
      ...state,
      loggedOut: reason,
      me: state.me && { ...state.me, portal: null },
      offers: state.offers.map((o) => (o.gone ? o : { ...o, gone: { reason: 'logged_out', at: Date.now() } })),
    };
  },
};

/** The next state after `action`. */
export function reduce(state, action) {
  switch (action.type) {
    case 'event':
      return EVENTS[action.name] ? EVENTS[action.name](state, action.data) : state;
    case 'conn':
      return { ...state, conn: action.status };
    case 'me':
      return { ...state, me: action.me, loggedOut: action.me.portal ? null : state.loggedOut };
    case 'portal':
      return { ...state, me: state.me && { ...state.me, portal: action.portal }, loggedOut: null };
    case 'view':
      return withSession(state, action.view.id, (s) => {
        // A read of the session that events overtook (a mask, a join while
        // it was in flight) may be older than they are: shown, and read
        // again, a few times in a row at most.
        const overtaken = action.epoch !== undefined && action.epoch !== (s.epoch || 0);
        const rereads = overtaken ? (s.rereads || 0) + 1 : 0;
        const again = overtaken && rereads <= MAX_REREADS;
        return {
          ...s,
          view: action.view,
          stale: again,
          rereads,
          reread: (s.reread || 0) + (again ? 1 : 0),
          races: racesFrom(action.view, s.races),
        };
      });
    case 'messages':
      return withSession(state, action.session, (s) => ({
        ...s,
        messages: action.older ? [...action.messages, ...(s.messages || [])] : latest(action.messages, s),
        early: [],
        hasMore: action.hasMore,
      }));
    case 'customer_link':
      return withSession(state, action.session, (s) => ({ ...s, customerLink: action.link }));
    case 'select':
      return { ...state, selected: action.session };
    case 'forget': {
      const sessions = { ...state.sessions };
      delete sessions[action.session];
      return { ...state, sessions, selected: state.selected === action.session ? null : state.selected };
    }
    case 'dismiss':
      return { ...state, offers: state.offers.filter((o) => o.offer.id !== action.invitation) };
    default:
      return state;
  }
}

/** The sessions to list: active ones this agent is in, oldest first. */
export function activeSessions(state) {
  return Object.values(state.sessions)
    .filter((s) => s.view && !s.left)
    .sort((a, b) => Date.parse(a.view.created_at) - Date.parse(b.view.created_at));
}

/** This agent's place in a session, if it is in it. */
export function myPart(state, view) {
  return view?.participants.find((p) => p.agent.id === state.me?.id) || null;
}

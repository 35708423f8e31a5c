// The agent console's reducer on its own (no browser): rules that a race
// between a read and the stream can break.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initial, reduce } from '../../web/agent/state.js';

const bob = (masked) => ({
  agent: { id: 'bob', name: 'Bob' }, role: 'collaborator', masked, joined_at: '2026-12-07T09:00:00Z',
});
const view = (masked) => ({
  id: 's1', status: 'active', lead: 'ann', participants: [bob(masked)], invitations: [],
});

test('a session read that a stream event overtook is read again, not trusted', () => {
  let state = reduce({ ...initial, me: { id: 'bob' } }, { type: 'view', view: view(false), epoch: 0 });
  assert.equal(state.sessions.s1.stale, false);
  // A read leaves (epoch 0 seen)… Ann masks Bob meanwhile, on the stream…
  const epoch = state.sessions.s1.epoch || 0;
  state = reduce(state, { type: 'event', name: 'participant_updated', data: { session: 's1', participant: bob(true) } });
  assert.equal(state.sessions.s1.view.participants[0].masked, true);
  // …and the read's older answer arrives: shown, but read again.
  state = reduce(state, { type: 'view', view: view(false), epoch });
  assert.equal(state.sessions.s1.stale, true);
  assert.equal(state.sessions.s1.reread, 1);
  // The second read, with nothing in between, is trusted.
  state = reduce(state, { type: 'view', view: view(true), epoch: state.sessions.s1.epoch });
  assert.equal(state.sessions.s1.stale, false);
  assert.equal(state.sessions.s1.view.participants[0].masked, true);
});

test('a session that events keep overtaking is read again a few times, then left', () => {
  let state = reduce({ ...initial, me: { id: 'bob' } }, { type: 'view', view: view(false), epoch: 0 });
  for (let i = 0; i < 10; i++) {
    const epoch = state.sessions.s1.epoch || 0;
    state = reduce(state, { type: 'event', name: 'participant_updated', data: { session: 's1', participant: bob(i % 2 === 0) } });
    state = reduce(state, { type: 'view', view: view(false), epoch });
  }
  assert.equal(state.sessions.s1.reread, 3);
  assert.equal(state.sessions.s1.stale, false);
});

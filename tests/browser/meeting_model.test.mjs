// Unit tests of the client's meeting model (web/app/meeting.js, plain ES module, no DOM):
// snapshots, roster deltas in order, stale deltas ignored, capture notice texts, and who
// may moderate.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MeetingState, captureNotice } from '../../web/app/meeting.js';

const person = (id, extra = {}) => ({
  participantId: id,
  displayName: id,
  role: 'attendee',
  isExternal: false,
  state: 'connected',
  muted: false,
  handRaised: false,
  screenSharing: false,
  ...extra,
});

function joined(overrides = {}) {
  return {
    type: 'joined',
    resumeToken: 'r',
    snapshot: {
      conversationId: 'c1',
      kind: 'meeting',
      subject: 'Sync',
      participantId: 'me',
      state: 'connected',
      role: 'organizer',
      capture: { recording: 'inactive', transcription: 'inactive' },
      policy: { lobbyBypass: 'organization' },
      rosterVersion: 3,
      participants: [person('me', { role: 'organizer' }), person('bob', { isExternal: true, state: 'lobby' })],
      ...overrides,
    },
  };
}

const delta = (v, d) => ({ type: 'roster.delta', rosterVersion: v, delta: d });

test('a snapshot fills the roster, lobby and capture state', () => {
  const m = new MeetingState();
  const changed = m.apply(joined());
  assert.ok(changed.roster && changed.capture && changed.self);
  assert.equal(m.subject, 'Sync');
  assert.equal(m.selfRole, 'organizer');
  assert.deepEqual(m.present().map((p) => p.participantId), ['me']);
  assert.deepEqual(m.lobby().map((p) => p.participantId), ['bob']);
  assert.equal(m.inLobby, false);
  assert.equal(m.canModerateLobby, true);
  assert.equal(m.canControlCapture, true);
});

test('deltas apply in order and stale ones are ignored', () => {
  const m = new MeetingState();
  m.apply(joined());
  m.apply(delta(4, { change: 'stateChanged', participantId: 'bob', state: 'connected' }));
  m.apply(delta(5, { change: 'muted', participantId: 'bob', muted: true, by: 'me' }));
  m.apply(delta(6, { change: 'handRaised', participantId: 'bob', raised: true }));
  m.apply(delta(7, { change: 'screenShare', participantId: 'me', active: true }));
  m.apply(delta(8, { change: 'roleChanged', participantId: 'bob', role: 'presenter' }));
  const bob = m.participants.get('bob');
  assert.deepEqual([bob.state, bob.muted, bob.handRaised, bob.role], ['connected', true, true, 'presenter']);
  assert.equal(m.self.screenSharing, true);
  // A delta older than what we have changes nothing.
  const stale = m.apply(delta(6, { change: 'muted', participantId: 'bob', muted: false }));
  assert.equal(stale.roster, false);
  assert.equal(m.participants.get('bob').muted, true);
  m.apply(delta(9, { change: 'activeSpeakers', participantIds: ['bob'] }));
  assert.deepEqual([...m.activeSpeakers], ['bob']);
  m.apply(delta(10, { change: 'left', participantId: 'bob', reason: 'Left' }));
  assert.equal(m.participants.has('bob'), false);
  assert.equal(m.activeSpeakers.has('bob'), false);
  m.apply(delta(11, { change: 'joined', participant: person('cy') }));
  assert.deepEqual(m.present().map((p) => p.participantId).sort(), ['cy', 'me']);
});

test('a participant waiting in the lobby becomes connected through its own snapshot', () => {
  const m = new MeetingState();
  m.apply(joined({ participantId: 'bob', state: 'lobby', role: 'attendee', participants: [] }));
  assert.equal(m.inLobby, true);
  m.apply({ type: 'capture.changed', capture: { recording: 'active', transcription: 'inactive' }, changedBy: 'x' });
  assert.equal(m.recording, true, 'the notice reaches the lobby');
  m.apply({ type: 'snapshot', snapshot: { ...joined().snapshot, participantId: 'bob', role: 'attendee',
    capture: { recording: 'active', transcription: 'inactive' } } });
  assert.equal(m.inLobby, false);
  assert.equal(m.recording, true);
  assert.equal(m.canModerateLobby, false);
});

test('external users never control capture; external presenters may admit', () => {
  const m = new MeetingState();
  m.apply(joined({ participantId: 'ext', role: 'presenter', participants: [person('ext', { role: 'presenter', isExternal: true })] }));
  assert.equal(m.canModerateLobby, true);
  assert.equal(m.canControlCapture, false);
  const a = new MeetingState();
  a.apply(joined({ participantId: 'att', role: 'attendee', participants: [person('att')] }));
  assert.equal(a.canModerateLobby, false);
  assert.equal(a.canControlCapture, false);
});

test('the notice text names what is captured', () => {
  assert.equal(captureNotice({ recording: 'inactive', transcription: 'inactive' }), '');
  assert.equal(captureNotice({ recording: 'active', transcription: 'inactive' }), 'This meeting is being recorded.');
  assert.equal(captureNotice({ recording: 'inactive', transcription: 'active' }), 'This meeting is being transcribed.');
  assert.equal(
    captureNotice({ recording: 'active', transcription: 'active' }),
    'This meeting is being recorded and transcribed.',
  );
});

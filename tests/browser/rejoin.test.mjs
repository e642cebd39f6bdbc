// Unit tests (Node, no browser) of the web client's rejoin helpers (web/app/rejoin.js): what
// answers a `resume` after a takeover, when to join again, and the silent-home watch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RESUME_REQUEST_ID, SilenceWatch, afterRefusal, asksToResume, resumeAnswer, shouldRejoin } from '../../web/app/rejoin.js';

test('a snapshot gives the same seat back; a joined for the resume is a new seat on the new home', () => {
  assert.deepEqual(resumeAnswer({ type: 'snapshot', snapshot: {} }), { kind: 'resumed', seat: null });
  const joined = {
    type: 'joined',
    requestId: RESUME_REQUEST_ID,
    resumeToken: 'tok-2',
    snapshot: { conversationId: 'conv-b', participantId: 'p-2', state: 'connected', role: 'presenter' },
  };
  assert.deepEqual(resumeAnswer(joined), {
    kind: 'resumed',
    seat: { conversationId: 'conv-b', participantId: 'p-2', resumeToken: 'tok-2' },
  });
  assert.equal(resumeAnswer({ ...joined, requestId: 'r7' }), null, 'a joined of another request is not the answer');
  assert.deepEqual(resumeAnswer({ type: 'error', requestId: RESUME_REQUEST_ID, code: 'NotFound' }), {
    kind: 'refused',
    code: 'NotFound',
  });
  assert.equal(resumeAnswer({ type: 'roster.delta' }), null);
});

test('a gone conversation or node is joined again; a final refusal is not', () => {
  assert.ok(shouldRejoin('NotFound'));
  assert.ok(shouldRejoin('NodeUnavailable'));
  assert.ok(!shouldRejoin('TokenRevoked'));
  assert.ok(!shouldRejoin('Forbidden'));
});

test('a home being taken over is resumed again, a gone conversation joined afresh, a final refusal ends', () => {
  assert.equal(afterRefusal('NodeUnavailable'), 'resume', 'the seat is still carried: a fresh join would split billing');
  assert.equal(afterRefusal('NotFound'), 'join');
  assert.equal(afterRefusal('TokenRevoked'), 'end');
  assert.equal(afterRefusal('Forbidden'), 'end');
});

test('silence counts only after audio flowed and for longer than the timeout', () => {
  const watch = new SilenceWatch(2000);
  watch.sample(0, 0);
  assert.ok(!watch.silent(10_000), 'no audio yet: not silent');
  watch.sample(500, 1000);
  assert.ok(!watch.silent(3000));
  assert.ok(watch.silent(3001));
  watch.sample(900, 3500);
  assert.ok(!watch.silent(4000));
  watch.reset();
  assert.ok(!watch.silent(100_000));
});

test('a draining home asks to resume; its refusal is retried, not joined afresh', () => {
  assert.ok(asksToResume({ type: 'error', code: 'NodeDraining', message: 'draining' }));
  assert.ok(!asksToResume({ type: 'error', code: 'NodeUnavailable' }));
  assert.ok(!asksToResume({ type: 'session.ended', reason: 'ServerShutdown' }));
  assert.equal(afterRefusal('NodeDraining'), 'resume', 'a draining node kept the session: resume elsewhere');
  assert.equal(afterRefusal('NodeUnavailable'), 'resume');
  assert.equal(afterRefusal('NotFound'), 'join', 'a gone conversation is joined afresh');
});

// Coming back after a lost connection (docs/cluster.md, "Clients that resume by themselves"),
// as pure helpers the client and its unit tests share (no DOM, no sockets):
// - `resumeAnswer` reads what answers a `resume`: a `snapshot` (the home is alive and gave the
//   seat back), a `joined` for the resume request (the conversation moved to a new home after its
//   home died; the participant is in again with its carried role and lobby standing, under a new
//   participant id and resume token), or an `error`: `afterRefusal` says what next. The
//   conversation is gone from every node: join it afresh, unless the refusal is final. Its home
//   is unreachable and not yet taken over (`NodeUnavailable`: the home just died, its registry
//   entry has not expired): resume again shortly, since the seat is still carried and a fresh
//   join would split the participant's billing session in two. The same holds for a node that
//   is draining (`NodeDraining`).
// - `asksToResume` spots a home that is draining (`error` `NodeDraining`, a planned stop): it
//   handed the session over, so drop the socket and resume at once on another node.
// - `SilenceWatch` notices a silent home fast: once media flowed, no received audio bytes for
//   `timeoutMs` means the home is gone even though the socket (relayed by a live node) is open.

export const RESUME_REQUEST_ID = 'resume';

/**
 * @returns {null | {kind: 'resumed', seat: null | {conversationId, participantId, resumeToken}} | {kind: 'refused', code: string}}
 */
export function resumeAnswer(frame) {
  if (frame.type === 'snapshot') return { kind: 'resumed', seat: null };
  if (frame.requestId !== RESUME_REQUEST_ID) return null;
  if (frame.type === 'joined') {
    return {
      kind: 'resumed',
      seat: {
        conversationId: frame.snapshot.conversationId,
        participantId: frame.snapshot.participantId,
        resumeToken: frame.resumeToken,
      },
    };
  }
  if (frame.type === 'error') return { kind: 'refused', code: frame.code };
  return null;
}

/** Refusals after which joining the same target again cannot help. */
const FINAL_REFUSALS = new Set([
  'Forbidden',
  'InsufficientScope',
  'InvalidToken',
  'InvalidAccessToken',
  'TokenExpired',
  'TokenRevoked',
  'WrongPasscode',
  'ExternalUsersNotAllowed',
  'NotRoomParticipant',
  'DirectoryUserCannotJoinExternalCall',
]);

/** Refusals of a `resume` that a later `resume` may overcome (the home is draining, or being taken over). */
const RESUME_AGAIN = new Set(['NodeDraining', 'NodeUnavailable']);

/** Whether a refused resume should be followed by a fresh join. */
export function shouldRejoin(code) {
  return !FINAL_REFUSALS.has(code);
}

/** Whether `frame` tells the client to leave this node and resume elsewhere (the home is draining). */
export function asksToResume(frame) {
  return frame.type === 'error' && frame.code === 'NodeDraining';
}

/** What follows a refused `resume`: `'resume'` again after a pause, a fresh `'join'`, or `'end'`. */
export function afterRefusal(code) {
  if (RESUME_AGAIN.has(code)) return 'resume';
  return shouldRejoin(code) ? 'join' : 'end';
}

export class SilenceWatch {
  constructor(timeoutMs) {
    this.timeoutMs = timeoutMs;
    this.lastBytes = 0;
    this.lastChangeMs = null;
  }

  /** Feed the received audio byte total read at `nowMs`. */
  sample(bytes, nowMs) {
    if (bytes > this.lastBytes) {
      this.lastBytes = bytes;
      this.lastChangeMs = nowMs;
    }
  }

  /** Start again (a new media session counts from zero). */
  reset() {
    this.lastBytes = 0;
    this.lastChangeMs = null;
  }

  /** Whether the media went silent for longer than the timeout, after having flowed. */
  silent(nowMs) {
    return this.lastChangeMs !== null && nowMs - this.lastChangeMs > this.timeoutMs;
  }
}

// The client's model of one joined conversation: built from `joined`/`snapshot` frames and
// kept current by `roster.delta`, `capture.changed` and `policy.changed`. No DOM here:
// `apply(frame)` returns which parts changed and the views redraw them.

export const ROLE_LABELS = {
  organizer: 'Organizer',
  coOrganizer: 'Co-organizer',
  presenter: 'Presenter',
  attendee: 'Attendee',
};

/** Roles that may admit/deny people waiting in the lobby (docs/signaling.md, authorization matrix). */
const LOBBY_MODERATORS = new Set(['organizer', 'coOrganizer', 'presenter']);

export class MeetingState {
  constructor() {
    this.snapshot = null;
    this.participants = new Map();
    this.capture = { recording: 'inactive', transcription: 'inactive' };
    this.policy = null;
    this.selfId = null;
    this.selfState = null;
    this.selfRole = null;
    this.subject = '';
    this.kind = 'meeting';
    this.rosterVersion = -1;
    this.activeSpeakers = new Set();
  }

  /** Replace everything from a snapshot (`joined`, admission, resume). */
  loadSnapshot(s) {
    this.snapshot = s;
    this.selfId = s.participantId;
    this.selfState = s.state;
    this.selfRole = s.role || null;
    this.subject = s.subject || '';
    this.kind = s.kind || 'meeting';
    this.capture = { ...this.capture, ...(s.capture || {}) };
    this.policy = s.policy || null;
    this.rosterVersion = typeof s.rosterVersion === 'number' ? s.rosterVersion : -1;
    this.participants = new Map();
    for (const p of s.participants || []) this.participants.set(p.participantId, { ...p });
    this.activeSpeakers = new Set();
  }

  /** Apply one server frame; returns `{roster, capture, policy, self, speakers}` flags. */
  apply(frame) {
    const changed = { roster: false, capture: false, policy: false, self: false, speakers: false };
    switch (frame.type) {
      case 'joined':
      case 'snapshot':
        this.loadSnapshot(frame.snapshot);
        Object.assign(changed, { roster: true, capture: true, policy: true, self: true, speakers: true });
        break;
      case 'capture.changed':
        this.capture = { ...this.capture, ...frame.capture };
        changed.capture = true;
        break;
      case 'policy.changed':
        this.policy = frame.policy;
        changed.policy = true;
        break;
      case 'roster.delta':
        if (typeof frame.rosterVersion === 'number' && frame.rosterVersion <= this.rosterVersion) break;
        this.rosterVersion = frame.rosterVersion;
        this.applyDelta(frame.delta, changed);
        break;
      default:
        break;
    }
    return changed;
  }

  applyDelta(d, changed) {
    const p = d.participantId ? this.participants.get(d.participantId) : undefined;
    switch (d.change) {
      case 'joined':
        this.participants.set(d.participant.participantId, { ...d.participant });
        break;
      case 'left':
        this.participants.delete(d.participantId);
        this.activeSpeakers.delete(d.participantId);
        break;
      case 'stateChanged':
        if (p) p.state = d.state;
        break;
      case 'roleChanged':
        if (p) p.role = d.role;
        break;
      case 'muted':
        if (p) p.muted = d.muted;
        break;
      case 'handRaised':
        if (p) p.handRaised = d.raised;
        break;
      case 'screenShare':
        if (p) p.screenSharing = d.active;
        break;
      case 'activeSpeakers':
        this.activeSpeakers = new Set(d.participantIds || []);
        changed.speakers = true;
        return;
      default:
        return;
    }
    changed.roster = true;
    if (d.participantId === this.selfId || (d.participant && d.participant.participantId === this.selfId)) {
      const me = this.participants.get(this.selfId);
      if (me) {
        this.selfState = me.state;
        this.selfRole = me.role || this.selfRole;
      }
      changed.self = true;
    }
  }

  get self() {
    return this.participants.get(this.selfId) || null;
  }

  get inLobby() {
    return this.selfState === 'lobby';
  }

  get recording() {
    return this.capture.recording === 'active';
  }

  get transcribing() {
    return this.capture.transcription === 'active';
  }

  /** May I admit or deny people in the lobby? */
  get canModerateLobby() {
    if (this.kind === 'groupCall') return true;
    const me = this.self;
    return LOBBY_MODERATORS.has(this.selfRole) && !(me && me.isExternal && this.selfRole === 'attendee');
  }

  /** May I start/stop recording and transcription? (external users never may) */
  get canControlCapture() {
    const me = this.self;
    if (me && me.isExternal) return false;
    return this.kind === 'groupCall' || LOBBY_MODERATORS.has(this.selfRole);
  }

  /** People waiting in the lobby, oldest roster entry first. */
  lobby() {
    return [...this.participants.values()].filter((p) => p.state === 'lobby');
  }

  /** People in the conversation (connected or reconnecting). */
  present() {
    return [...this.participants.values()].filter((p) => p.state !== 'lobby');
  }
}

/** The banner text for a capture state, or '' when nothing is captured. */
export function captureNotice(capture) {
  const rec = capture.recording === 'active';
  const tr = capture.transcription === 'active';
  if (rec && tr) return 'This meeting is being recorded and transcribed.';
  if (rec) return 'This meeting is being recorded.';
  if (tr) return 'This meeting is being transcribed.';
  return '';
}

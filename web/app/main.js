// The reference client's controller: sign-in (development mode), device check, join by
// link or meeting id + passcode, lobby, meeting controls, and wiring of server frames to the
// model (meeting.js), the views (views.js) and the media session (media.js).

import * as api from './api.js';
import { ChatPane } from './chat.js';
import { DeviceCheck } from './devices.js';
import { MediaSession } from './media.js';
import { MeetingState } from './meeting.js';
import { RESUME_REQUEST_ID, SilenceWatch, afterRefusal, asksToResume, resumeAnswer } from './rejoin.js';
import { Signaling } from './signaling.js';
import * as views from './views.js';

const $ = (id) => document.getElementById(id);

const ENDED_REASONS = {
  Left: 'You left the meeting.',
  Removed: 'You were removed from the meeting, or not admitted from the lobby.',
  ConversationEnded: 'The meeting has ended.',
  ConnectionLost: 'The connection was lost.',
  TokenExpired: 'Your sign-in expired.',
  ServerShutdown: 'The server is shutting down.',
};

const app = {
  devMode: false,
  identity: null, // {rawId, token, displayName?, kind}
  createdMeeting: null,
  signaling: null,
  state: new MeetingState(),
  media: null,
  mediaStarted: false,
  /** mid → {track, stream} of each remote video slot (the stream holds only that track). */
  slotTracks: new Map(),
  /** mid → {kind, participantId} from the server's last `media.slots` frame. */
  slots: new Map(),
  localStream: null,
  cameraOff: false,
  ended: false,
  resume: null, // {conversationId, participantId, resumeToken} once joined
  resumed: 0, // sessions taken back after a dropped socket
  rejoined: 0, // fresh joins after a resume was refused (the conversation was gone)
  resumeWaiter: null,
  chat: null, // the chat pane, once in the meeting
  joinName: '',
};

/** How long the server keeps a dropped participant (docs/signaling.md: 30 s grace). */
const RESUME_GRACE_MS = 30_000;
const RESUME_RETRY_MS = 500;
/** No received audio for this long (once it flowed): the home is gone, reconnect at once. */
const SILENCE_MS = 2_000;
const SILENCE_CHECK_MS = 500;
const silence = new SilenceWatch(SILENCE_MS);
window.palaverClient = app;

const who = () => document.querySelector('input[name="who"]:checked').value;

function meetingIdFromLink(link) {
  const m = /\/meetings\/join\/([0-9a-fA-F-]{36})/.exec(link || '');
  return m ? m[1] : null;
}

async function init() {
  const check = new DeviceCheck({
    preview: $('preview'),
    cameraSelect: $('camera-select'),
    micSelect: $('mic-select'),
    meterBar: $('mic-meter-bar'),
    meter: $('mic-meter'),
    status: $('device-status'),
  });
  app.deviceCheck = check;
  if (meetingIdFromLink(location.pathname)) $('meeting-link').value = `${location.origin}${location.pathname}`;
  const params = new URLSearchParams(location.search);
  if (params.get('code')) $('meeting-code').value = params.get('code');
  if (params.get('passcode')) $('meeting-passcode').value = params.get('passcode');
  const hashToken = new URLSearchParams(location.hash.slice(1)).get('access_token');
  if (hashToken) app.identity = { token: hashToken, kind: 'provided' };

  try {
    const status = await api.devStatus();
    app.devMode = status.devMode;
    views.renderDevNotice(status);
  } catch (err) {
    views.showError('setup-error', `Cannot reach the server: ${err.message}`);
  }
  if (!app.devMode && !app.identity) {
    views.showError('setup-error', 'Sign-in needs a token from your backend: open this page with #access_token=…');
  }
  document.querySelectorAll('input[name="who"]').forEach((r) => r.addEventListener('change', updateWho));
  updateWho();
  $('create-meeting').addEventListener('click', () => createMeeting().catch(reportSetupError));
  $('setup-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    join().catch(reportSetupError);
  });
  $('lobby-leave').addEventListener('click', leave);
  $('leave').addEventListener('click', leave);
  $('rejoin').addEventListener('click', () => location.reload());
  $('toggle-mute').addEventListener('click', () => command({ type: 'self.mute', muted: !(app.state.self && app.state.self.muted) }));
  $('toggle-hand').addEventListener('click', () =>
    command({ type: 'self.raiseHand', raised: !(app.state.self && app.state.self.handRaised) }),
  );
  $('toggle-camera').addEventListener('click', toggleCamera);
  $('toggle-share').addEventListener('click', () => toggleShare().catch((e) => views.showError('meeting-error', e.message)));
  $('toggle-recording').addEventListener('click', () => command({ type: app.state.recording ? 'recording.stop' : 'recording.start' }));
  $('toggle-transcription').addEventListener('click', () =>
    command({ type: app.state.transcribing ? 'transcription.stop' : 'transcription.start' }),
  );
  views.showScreen('setup');
  await check.open();
}

function updateWho() {
  const directory = who() === 'directory';
  $('create-meeting').disabled = !directory || !app.devMode;
  $('create-hint').hidden = directory;
}

function reportSetupError(err) {
  const code = err.code ? `${err.code}: ` : '';
  views.showError('setup-error', `${code}${err.message}`);
  $('join-button').disabled = false;
}

function displayName() {
  const name = $('display-name').value.trim();
  if (!name) {
    $('display-name').focus();
    throw Object.assign(new Error('Please enter your name.'), { code: '' });
  }
  return name;
}

/** Sign in once per page (development endpoints), as the kind chosen on the form. */
async function signIn() {
  const kind = who();
  if (app.identity && (app.identity.kind === kind || app.identity.kind === 'provided')) return app.identity;
  if (!app.devMode) throw Object.assign(new Error('development sign-in is off on this server'), { code: 'NotAvailable' });
  const signed = kind === 'directory' ? await api.signInDirectory(displayName()) : await api.signInExternal();
  app.identity = { ...signed, kind };
  return app.identity;
}

async function createMeeting() {
  views.showError('setup-error', '');
  if (who() !== 'directory') throw Object.assign(new Error('Only directory users can create meetings.'), { code: '' });
  const identity = await signIn();
  const meeting = await api.createMeeting(identity.token, $('meeting-subject').value.trim());
  // The link to share is on this page's own origin: the server's `joinUrl` is built from the
  // Host header, which HTTP/2 requests do not carry (and a proxy may rewrite).
  meeting.joinUrl = `${location.origin}/meetings/join/${meeting.id}`;
  app.createdMeeting = meeting;
  $('meeting-link').value = meeting.joinUrl;
  const created = $('created-meeting');
  created.textContent = `Meeting created. Link: ${meeting.joinUrl} · Meeting ID ${meeting.meetingCode} · Passcode ${meeting.passcode}`;
  created.hidden = false;
}

function joinTarget() {
  const link = $('meeting-link').value.trim();
  if (link) return { kind: 'meetingLink', joinUrl: link };
  const code = $('meeting-code').value.replace(/\s+/g, '');
  const passcode = $('meeting-passcode').value.trim();
  if (code && passcode) return { kind: 'meetingCode', meetingCode: code, passcode };
  throw Object.assign(new Error('Enter a join link, or a meeting ID and passcode.'), { code: '' });
}

async function join() {
  views.showError('setup-error', '');
  const name = displayName();
  const target = joinTarget();
  $('join-button').disabled = true;
  const identity = await signIn();
  app.joinName = name;
  app.ended = false;
  app.signaling = newSignaling(identity.token);
  await app.signaling.connect();
  let joined;
  try {
    joined = await app.signaling.request({ type: 'join', displayName: name, target });
  } catch (err) {
    app.ended = true;
    app.signaling.close();
    throw err;
  }
  $('join-button').disabled = false;
  app.resume = {
    conversationId: joined.snapshot.conversationId,
    participantId: joined.snapshot.participantId,
    resumeToken: joined.resumeToken,
  };
  if (!app.state.inLobby) enterMeeting();
  return joined;
}

function newSignaling(token) {
  const signaling = new Signaling(token, { onFrame, onClose: onSocketClosed, refreshToken });
  return signaling;
}

/** Answer `token.expiring`: a new token for the same identity (development mode only). */
async function refreshToken() {
  if (!app.devMode || !app.identity || app.identity.kind === 'provided') throw new Error('cannot refresh');
  const { kind, rawId, secret } = app.identity;
  const signed =
    kind === 'directory'
      ? await api.signInDirectory(app.identity.displayName, rawId.slice('8:orgid:'.length), secret)
      : await api.signInExternal(rawId, secret);
  app.identity = { ...signed, kind };
  return signed.token;
}

function onFrame(frame) {
  const answer = app.resumeWaiter ? resumeAnswer(frame) : null;
  if (answer) {
    const waiter = app.resumeWaiter;
    app.resumeWaiter = null;
    waiter(answer);
    if (answer.kind === 'refused') return;
  }
  if (app.media) {
    app.media.handleFrame(frame).catch((err) => views.renderMediaStatus(`Media negotiation failed: ${err.message}`, 'error'));
    if (frame.type.startsWith('media.') || (frame.type === 'error' && frame.code === 'MediaUnavailable')) return;
  }
  if (frame.type === 'chat.event') {
    if (app.chat) app.chat.handleEvent(frame.event, frame.data);
    return;
  }
  if (asksToResume(frame)) {
    // The home is draining and kept the session for the next one: resume through another node.
    if (app.signaling) app.signaling.close();
    return;
  }
  if (frame.type === 'session.ended') {
    endSession(frame.reason);
    return;
  }
  if (frame.type === 'error') {
    views.showError(app.state.inLobby ? 'setup-error' : 'meeting-error', `${frame.code}: ${frame.message}`);
    return;
  }
  const wasInLobby = app.state.inLobby || app.state.selfState === null;
  const changed = app.state.apply(frame);
  if (changed.capture) views.renderCaptureBanner(app.state.capture);
  if (changed.self || frame.type === 'joined' || frame.type === 'snapshot') {
    if (app.state.inLobby) views.showScreen('lobby');
    else if (wasInLobby && frame.type !== 'joined') enterMeeting();
  }
  if (changed.roster || changed.speakers || changed.self) renderMeeting();
}

function renderMeeting() {
  const s = app.state;
  views.renderRoster(s, {
    admit: (id) => command({ type: 'lobby.admit', participantId: id }),
    deny: (id) => command({ type: 'lobby.deny', participantId: id }),
    muteOther: (id) => command({ type: 'participant.mute', participantId: id }),
  });
  // Each video slot's track goes to the tile of the participant the server says it carries.
  const media = new Map();
  const screens = [];
  for (const [mid, slot] of app.slots) {
    const remote = app.slotTracks.get(mid);
    if (!remote || !slot.participantId || !s.participants.has(slot.participantId)) continue;
    const entry = { participantId: slot.participantId, stream: remote.stream, mid };
    if (slot.kind === 'screen') screens.push(entry);
    else if (!media.has(slot.participantId)) media.set(slot.participantId, entry);
  }
  if (app.localStream && s.selfId) media.set(s.selfId, { stream: app.localStream, mid: null });
  views.renderGrid(s, media, screens);
  watchTiles();
  updateSlotWishes();
  const me = s.self;
  const muted = !!(me && me.muted);
  views.setToggle('toggle-mute', muted, muted ? 'Unmute' : 'Mute');
  views.setToggle('toggle-hand', !!(me && me.handRaised), me && me.handRaised ? 'Lower hand' : 'Raise hand');
  views.setToggle('toggle-share', !!(me && me.screenSharing), me && me.screenSharing ? 'Stop sharing' : 'Share screen');
  if (app.media) app.media.setMuted(muted);
  $('capture-controls').hidden = !s.canControlCapture;
  $('toggle-recording').textContent = s.recording ? 'Stop recording' : 'Start recording';
  $('toggle-transcription').textContent = s.transcribing ? 'Stop transcription' : 'Start transcription';
  $('meeting-title').textContent = s.subject || 'Meeting';
}

function enterMeeting() {
  views.showScreen('meeting');
  views.renderMeetingInfo(app.createdMeeting);
  renderMeeting();
  startChat();
  if (app.mediaStarted) return;
  app.mediaStarted = true;
  app.localStream = app.deviceCheck.takeStream();
  if (app.localStream && $('join-camera-off').checked) toggleCamera();
  if ($('join-muted').checked && !(app.state.self && app.state.self.muted)) command({ type: 'self.mute', muted: true });
  app.media = newMediaSession();
  app.media.start().catch((err) => views.renderMediaStatus(`Audio and video could not start: ${err.message}`, 'error'));
  renderMeeting();
}

/** The meeting's chat thread (its id is in the snapshot once past the lobby). */
function startChat() {
  const threadId = app.state.snapshot && app.state.snapshot.threadId;
  if (!threadId) return;
  if (!app.chat) {
    app.chat = new ChatPane({
      token: () => app.identity.token,
      selfRawId: () => (app.identity && app.identity.rawId) || (app.signaling && app.signaling.welcome?.identifier?.rawId) || null,
      displayName: () => app.joinName || (app.identity && app.identity.displayName) || '',
      onError: (message) => views.showError('meeting-error', message),
    });
  }
  app.chat.start(threadId).catch((err) => views.showError('meeting-error', `Chat: ${err.code || 'Error'}: ${err.message}`));
}

function onRemoteTrack(track, streams, transceiver) {
  // Slots start and stop carrying frames as people join, leave or share: redraw on each.
  track.addEventListener('mute', renderMeeting);
  track.addEventListener('unmute', renderMeeting);
  if (track.kind === 'video') {
    const mid = transceiver ? transceiver.mid : null;
    if (mid === null || mid === undefined) return;
    app.slotTracks.set(mid, { track, stream: new MediaStream([track]) });
    track.addEventListener('ended', () => {
      if (app.slotTracks.get(mid)?.track === track) app.slotTracks.delete(mid);
      renderMeeting();
    });
    renderMeeting();
    return;
  }
  // Remote audio plays through a hidden element (no tile shows it).
  const stream = streams[0] || new MediaStream([track]);
  const id = stream.id;
  let audio = document.querySelector(`audio[data-stream="${CSS.escape(id)}"]`);
  if (!audio) {
    audio = document.createElement('audio');
    audio.autoplay = true;
    audio.dataset.stream = id;
    audio.hidden = true;
    document.body.append(audio);
  }
  audio.srcObject = stream;
  track.addEventListener('ended', () => {
    if (stream.getTracks().every((t) => t.readyState === 'ended')) audio.remove();
  });
}

function onSlots(slots) {
  app.slots = slots;
  renderMeeting();
}

/** Picture heights the server is asked for (roughly its simulcast layers). */
const HEIGHT_STEPS = [180, 360, 720, 1080];
const tileObserver = typeof IntersectionObserver === 'function' ? new IntersectionObserver(onTilesSeen) : null;
const gridObserver = typeof ResizeObserver === 'function' ? new ResizeObserver(() => updateSlotWishes()) : null;

function onTilesSeen(entries) {
  for (const e of entries) e.target.dataset.visible = e.isIntersecting ? '1' : '0';
  updateSlotWishes();
}

/** Observe new tiles' visibility (scrolled off on a phone, …) and the grid's size. */
function watchTiles() {
  const grid = document.getElementById('grid');
  if (gridObserver && !grid.dataset.observed) {
    grid.dataset.observed = '1';
    gridObserver.observe(grid);
  }
  if (!tileObserver) return;
  for (const tile of grid.querySelectorAll('figure.tile:not([data-observed])')) {
    tile.dataset.observed = '1';
    tileObserver.observe(tile);
  }
}

/**
 * Each video slot that carries someone: paused while its tile is off screen (or the page is
 * hidden, or nobody's tile shows it), otherwise capped at the tile's height in device pixels.
 */
function updateSlotWishes() {
  if (!app.media) return;
  const shown = new Map();
  for (const tile of document.querySelectorAll('#grid figure.tile')) {
    const mid = tile.querySelector('video').dataset.mid;
    if (mid) shown.set(mid, tile);
  }
  const wishes = new Map();
  for (const [mid, slot] of app.slots) {
    if (!slot.participantId) continue;
    const tile = shown.get(mid);
    const visible = !!tile && tile.dataset.visible !== '0' && !document.hidden;
    const needed = tile ? tile.clientHeight * (window.devicePixelRatio || 1) : 0;
    const maxHeight = HEIGHT_STEPS.find((h) => h >= needed) || HEIGHT_STEPS[HEIGHT_STEPS.length - 1];
    wishes.set(mid, { paused: !visible, maxHeight });
  }
  app.media.setSlotWishes(wishes);
}

document.addEventListener('visibilitychange', updateSlotWishes);

async function command(frame) {
  views.showError('meeting-error', '');
  if (!app.signaling) return;
  try {
    await app.signaling.request(frame);
  } catch (err) {
    views.showError(app.state.inLobby ? 'setup-error' : 'meeting-error', `${err.code}: ${err.message}`);
  }
}

function toggleCamera() {
  app.cameraOff = !app.cameraOff;
  if (app.media) app.media.setCameraOff(app.cameraOff);
  else if (app.localStream) app.localStream.getVideoTracks().forEach((t) => (t.enabled = !app.cameraOff));
  views.setToggle('toggle-camera', app.cameraOff, app.cameraOff ? 'Camera on' : 'Camera off');
}

async function toggleShare() {
  const me = app.state.self;
  if (me && me.screenSharing) {
    await command({ type: 'screenShare.stop' });
    if (app.media) await app.media.stopScreenShare();
    return;
  }
  await app.signaling.request({ type: 'screenShare.start' });
  try {
    if (app.media) await app.media.startScreenShare(() => command({ type: 'screenShare.stop' }));
  } catch (err) {
    await command({ type: 'screenShare.stop' });
    throw new Error(`Screen sharing did not start (${err.name || err.message}).`);
  }
}

function leave() {
  if (app.signaling) app.signaling.send({ type: 'leave' });
  endSession('Left');
}

function endSession(reason) {
  if (app.ended) return;
  app.ended = true;
  if (app.media) app.media.close();
  app.media = null;
  clearRemoteMedia();
  if (app.signaling) app.signaling.close();
  $('connection-status').hidden = true;
  $('ended-title').textContent = reason === 'Left' ? 'You left the meeting' : 'The meeting is over for you';
  $('ended-reason').textContent = ENDED_REASONS[reason] || `Session ended (${reason}).`;
  views.renderCaptureBanner({ recording: 'inactive', transcription: 'inactive' });
  views.showScreen('ended');
}

function onSocketClosed(info) {
  if (app.ended || !info.welcomed || app.reconnecting) return;
  if (!app.resume) {
    endSession('ConnectionLost');
    return;
  }
  reconnect().catch(() => endSession('ConnectionLost'));
}

/**
 * The socket dropped: take the seat back with `resume` on a new socket within the server's
 * grace period. Success is a fresh `snapshot`; media is renegotiated on the new session.
 */
async function reconnect() {
  app.reconnecting = true;
  const status = $('connection-status');
  status.textContent = 'Connection lost. Reconnecting…';
  status.hidden = false;
  const deadline = Date.now() + RESUME_GRACE_MS;
  try {
    for (;;) {
      if (app.ended) return;
      const signaling = newSignaling(app.identity.token);
      try {
        await signaling.connect();
        const waiting = new Promise((resolve) => (app.resumeWaiter = resolve));
        app.signaling = signaling;
        signaling.send({ type: 'resume', requestId: RESUME_REQUEST_ID, ...app.resume });
        const answer = await waiting;
        if (answer.kind === 'refused') {
          // This node cannot seat it yet (it is draining, or the home is being taken over):
          // resume again after a pause, keeping the session (the seat is carried).
          // The conversation is gone from every node (or its new home could not take the
          // resume): join the same meeting again, unless the refusal is final.
          const next = afterRefusal(answer.code);
          if (next === 'resume') throw new Error(`resume refused (${answer.code}): try again`);
          if (next === 'end') {
            endSession('ConnectionLost');
            return;
          }
          const joined = await signaling.request({ type: 'join', displayName: app.joinName, target: joinTarget() });
          answer.seat = {
            conversationId: joined.snapshot.conversationId,
            participantId: joined.snapshot.participantId,
            resumeToken: joined.resumeToken,
          };
          app.rejoined += 1;
        }
        // After a takeover the new home seats the participant again under a new id.
        if (answer.seat) app.resume = answer.seat;
        status.hidden = true;
        app.resumed += 1;
        restartMedia();
        return;
      } catch {
        app.resumeWaiter = null;
        signaling.close();
      }
      if (Date.now() + RESUME_RETRY_MS > deadline) {
        endSession('ConnectionLost');
        return;
      }
      await new Promise((r) => setTimeout(r, RESUME_RETRY_MS));
    }
  } finally {
    app.reconnecting = false;
  }
}

/** A silent home (frozen or cut off, its socket relayed by a live node): drop the socket. */
async function watchSilence() {
  if (!app.media || app.reconnecting || app.ended) return;
  const stats = await app.media.stats().catch(() => null);
  if (!stats) return;
  silence.sample(stats.audioIn.bytes, Date.now());
  if (silence.silent(Date.now()) && app.signaling && !app.reconnecting) {
    silence.reset();
    if (app.signaling.ws) app.signaling.ws.close(4000, 'no media');
  }
}
setInterval(() => watchSilence().catch(() => {}), SILENCE_CHECK_MS);

function restartMedia() {
  silence.reset();
  if (!app.mediaStarted || app.state.inLobby) return;
  if (app.media) app.media.close({ keepLocal: true });
  clearRemoteMedia();
  app.media = newMediaSession();
  app.media.start().catch((err) => views.renderMediaStatus(`Audio and video could not start: ${err.message}`, 'error'));
  renderMeeting();
}

function clearRemoteMedia() {
  app.slotTracks.clear();
  app.slots = new Map();
  document.querySelectorAll('audio[data-stream]').forEach((a) => a.remove());
}

function newMediaSession() {
  const media = new MediaSession(app.signaling, app.localStream, {
    onRemoteTrack: onRemoteTrack,
    onSlots: onSlots,
    onStatus: views.renderMediaStatus,
    onQuality: views.renderQuality,
  });
  media.setMuted(!!(app.state.self && app.state.self.muted));
  if (app.cameraOff) media.setCameraOff(true);
  return media;
}

init().catch((err) => views.showError('setup-error', err.message));

// Rendering: screens, the recording/transcription banner, roster, lobby requests and the
// video grid. Everything is built with textContent (names come from other users).

import { ROLE_LABELS, captureNotice } from './meeting.js';

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

const SCREENS = ['setup', 'lobby', 'meeting', 'ended'];

export function showScreen(name) {
  for (const s of SCREENS) $(`screen-${s}`).hidden = s !== name;
  document.body.dataset.screen = name;
  const heading = document.querySelector(`#screen-${name} h1`);
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

/**
 * Show or hide the legal notice. The first time it turns on (or off) after a change, the
 * moment is kept in `data-shown-at` / `data-hidden-at` (ms since epoch) for the tests.
 */
export function renderCaptureBanner(capture) {
  const banner = $('capture-banner');
  const text = captureNotice(capture);
  const wasShown = !banner.hidden;
  if (text) {
    $('capture-text').textContent = text;
    if (!wasShown) {
      banner.hidden = false;
      banner.dataset.shownAt = String(Date.now());
      document.body.classList.add('capturing');
    }
  } else if (wasShown) {
    banner.hidden = true;
    banner.dataset.hiddenAt = String(Date.now());
    document.body.classList.remove('capturing');
  }
}

export function renderDevNotice(status) {
  const notice = $('dev-notice');
  notice.textContent = status.message;
  notice.hidden = false;
  notice.classList.toggle('off', !status.devMode);
}

function participantLabel(p, selfId) {
  return p.participantId === selfId ? `${p.displayName} (you)` : p.displayName;
}

function badges(p) {
  const out = [];
  if (p.role) out.push(el('span', { class: `badge role role-${p.role}`, text: ROLE_LABELS[p.role] || p.role }));
  if (p.muted) out.push(el('span', { class: 'badge muted', text: 'Muted' }));
  if (p.handRaised) out.push(el('span', { class: 'badge hand', text: 'Hand raised' }));
  if (p.screenSharing) out.push(el('span', { class: 'badge share', text: 'Sharing screen' }));
  if (p.state === 'reconnecting') out.push(el('span', { class: 'badge reconnecting', text: 'Reconnecting…' }));
  return out;
}

/** The roster of people present, and the lobby panel for those who may admit. */
export function renderRoster(state, actions) {
  const list = $('roster');
  list.replaceChildren();
  for (const p of state.present()) {
    const name = el('span', { class: 'name', text: participantLabel(p, state.selfId) });
    const item = el('li', { 'data-participant-id': p.participantId, class: 'person' }, name, ...badges(p));
    const parts = [participantLabel(p, state.selfId), ROLE_LABELS[p.role] || p.role || ''];
    if (p.muted) parts.push('muted');
    if (p.handRaised) parts.push('hand raised');
    item.setAttribute('aria-label', parts.filter(Boolean).join(', '));
    if (state.canModerateLobby && p.participantId !== state.selfId && !p.muted) {
      item.append(
        el('button', {
          type: 'button',
          class: 'small',
          text: 'Mute',
          'aria-label': `Mute ${p.displayName}`,
          onclick: () => actions.muteOther(p.participantId),
        }),
      );
    }
    list.append(item);
  }
  $('roster-title').textContent = `People (${state.present().length})`;

  const lobby = state.lobby();
  const panel = $('lobby-panel');
  panel.hidden = !(state.canModerateLobby && lobby.length > 0);
  const lobbyList = $('lobby-list');
  lobbyList.replaceChildren();
  for (const p of lobby) {
    lobbyList.append(
      el(
        'li',
        { class: 'person', 'data-participant-id': p.participantId },
        el('span', { class: 'name', text: p.displayName }),
        el('button', {
          type: 'button',
          class: 'small primary',
          text: 'Admit',
          'aria-label': `Admit ${p.displayName}`,
          onclick: () => actions.admit(p.participantId),
        }),
        el('button', {
          type: 'button',
          class: 'small',
          text: 'Deny',
          'aria-label': `Deny ${p.displayName}`,
          onclick: () => actions.deny(p.participantId),
        }),
      ),
    );
  }
  $('lobby-panel-title').textContent = `Waiting in the lobby (${lobby.length})`;
}

/**
 * The video grid: one tile per person present (`data-participant`), plus one wide tile per
 * screen share. `media` maps participantId → `{stream, mid}` (self: the local camera, mid
 * null; others: the video slot the server says carries their camera); `screens` lists
 * `{participantId, stream, mid}` of the screen slot.
 */
export function renderGrid(state, media, screens) {
  const grid = $('grid');
  const wanted = new Map();
  for (const share of screens) {
    const p = state.participants.get(share.participantId);
    if (p) wanted.set(`screen:${p.participantId}`, { p, entry: share, screen: true });
  }
  for (const p of state.present()) wanted.set(`p:${p.participantId}`, { p, entry: media.get(p.participantId), screen: false });
  for (const tile of [...grid.children]) if (!wanted.has(tile.dataset.key)) tile.remove();
  for (const [key, { p, entry, screen }] of wanted) {
    let tile = grid.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (!tile) {
      // Tiles never play sound: every remote audio track plays once, through its <audio> element.
      const video = el('video', { autoplay: '', playsinline: '' });
      video.muted = true;
      tile = el('figure', { class: screen ? 'tile screen' : 'tile', 'data-key': key }, video, el('figcaption'));
      // Initials until the element has a picture (a slot is silent until its first frames).
      const update = () => tile.classList.toggle('no-video', !(video.srcObject && video.videoWidth > 0));
      video.addEventListener('resize', update);
      video.addEventListener('loadeddata', update);
      video.addEventListener('emptied', update);
      tile.dataset.participant = p.participantId;
      tile.dataset.kind = screen ? 'screen' : 'camera';
      grid.append(tile);
    }
    const video = tile.querySelector('video');
    const stream = entry ? entry.stream : null;
    if (video.srcObject !== stream) video.srcObject = stream;
    video.dataset.mid = entry && entry.mid !== null && entry.mid !== undefined ? entry.mid : '';
    tile.classList.toggle('no-video', !(stream && stream.getVideoTracks().length > 0 && video.videoWidth > 0));
    const speaking = !screen && state.activeSpeakers.has(p.participantId);
    tile.classList.toggle('speaking', speaking);
    tile.classList.toggle('sharing', !screen && !!p.screenSharing);
    const name = participantLabel(p, state.selfId);
    const caption = screen ? `${name}: screen` : name;
    const flags = screen ? [] : [p.muted ? 'muted' : '', p.handRaised ? 'hand raised' : ''].filter(Boolean);
    tile.querySelector('figcaption').textContent = [caption, ...flags].join(' · ');
    tile.setAttribute('aria-label', screen ? `Screen shared by ${name}` : `${name}${speaking ? ', speaking' : ''}`);
    tile.dataset.initials = (name.match(/\b\w/g) || ['?']).slice(0, 2).join('').toUpperCase();
  }
  grid.dataset.count = String(wanted.size);
}

export function renderQuality(q) {
  const node = $('quality');
  node.textContent = q.text;
  node.dataset.level = q.level;
}

export function renderMediaStatus(text, kind) {
  const node = $('media-status');
  node.textContent = text;
  node.hidden = !text;
  node.dataset.kind = kind;
}

export function renderMeetingInfo(meeting) {
  const info = $('meeting-info');
  if (!meeting) {
    info.hidden = true;
    return;
  }
  info.replaceChildren(
    el('span', { text: 'Invite others: ' }),
    el('a', { href: meeting.joinUrl, text: meeting.joinUrl, id: 'invite-link' }),
    el('span', { text: ` · Meeting ID ${meeting.meetingCode} · Passcode ${meeting.passcode}` }),
  );
  info.hidden = false;
}

export function showError(id, message) {
  const node = $(id);
  node.textContent = message;
  node.hidden = !message;
}

export function setToggle(id, pressed, label) {
  const b = $(id);
  b.setAttribute('aria-pressed', String(pressed));
  b.textContent = label;
}

// The meeting chat pane: the thread's history on joining (ACS Chat REST API), live messages,
// the typing indicator and read receipts from `chat.event` frames (docs/signaling.md), the
// ` (External)` suffix for external users and an unread count while the pane is closed.
// Message text only ever reaches the page through textContent; an `html` message is first
// reduced to its text in an inert DOMParser document (no script runs, no image loads).

import * as api from './api.js';

/** How long "… is typing" stays without a new notification (ACS clients use ~8 s). */
const TYPING_SHOWN_MS = 8000;
/** At most one typing notification per this interval while the user types. */
const TYPING_SEND_MS = 5000;
const USER_TYPES = new Set(['text', 'html']);

/** External (ACS) users have `8:acs:` raw ids; directory users `8:orgid:`. */
export function isExternal(rawId) {
  return typeof rawId === 'string' && rawId.startsWith('8:acs:');
}

/** The name to show for a sender: ` (External)` appended for external users, once. */
export function chatName(name, rawId) {
  const base = (name || '').trim() || 'Someone';
  return isExternal(rawId) && !base.endsWith(' (External)') ? `${base} (External)` : base;
}

/** Plain text of an `html` message, from a document that never runs or loads anything. */
export function htmlToText(html) {
  const doc = new DOMParser().parseFromString(String(html), 'text/html');
  for (const br of doc.querySelectorAll('br')) br.replaceWith('\n');
  for (const block of doc.querySelectorAll('p, div, li, pre, blockquote')) block.append('\n');
  return doc.body.textContent.replace(/\n{3,}/g, '\n\n').trim();
}

/** The text to show for a message of `type`. */
export function messageText(type, content, toText = htmlToText) {
  if (content === null || content === undefined) return '';
  return type === 'html' ? toText(content) : String(content);
}

/** The id of a chat message as a number (ACS ids are epoch milliseconds, growing per thread). */
const order = (id) => Number(id) || 0;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class ChatPane {
  /**
   * @param {{token: () => string, selfRawId: () => string|null, displayName: () => string, onError: (msg) => void}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.threadId = null;
    this.messages = new Map(); // id → {item, message}
    this.typing = new Map(); // rawId → {name, until}
    this.receipts = new Map(); // rawId → {name, messageId}
    this.unread = 0;
    this.lastTypingSent = 0;
    this.lastReceiptSent = 0;
    this.typingTimer = null;
    const $ = (id) => document.getElementById(id);
    this.panel = $('chat-panel');
    this.toggle = $('chat-toggle');
    this.badge = $('chat-unread');
    this.body = $('chat-body');
    this.list = $('chat-messages');
    this.typingLine = $('chat-typing');
    this.form = $('chat-form');
    this.input = $('chat-input');
    this.open = !window.matchMedia('(max-width: 720px)').matches;
    this.toggle.addEventListener('click', () => this.setOpen(!this.open));
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.send().catch((err) => this.deps.onError(`${err.code || 'Error'}: ${err.message}`));
    });
    this.input.addEventListener('input', () => this.userTyping());
    document.addEventListener('visibilitychange', () => this.markRead());
    this.setOpen(this.open);
  }

  /** Show the pane for `threadId` and load its history (once per thread). */
  async start(threadId) {
    if (!threadId || threadId === this.threadId) return;
    this.threadId = threadId;
    this.panel.hidden = false;
    const page = await api.listChatMessages(this.deps.token(), threadId);
    // Newest first on the wire: shown oldest first. History is never counted as unread.
    for (const m of (page.value || []).slice().reverse()) {
      if (!USER_TYPES.has(m.type)) continue;
      this.upsert({
        id: m.id,
        type: m.type,
        senderRawId: m.senderCommunicationIdentifier ? m.senderCommunicationIdentifier.rawId : null,
        senderName: m.senderDisplayName,
        content: m.content ? m.content.message : '',
        createdOn: m.createdOn,
        edited: !!m.editedOn,
        deleted: !!m.deletedOn,
      });
    }
    this.markRead();
  }

  setOpen(open) {
    this.open = open;
    this.body.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    if (open) {
      this.unread = 0;
      this.markRead();
    }
    this.renderUnread();
  }

  renderUnread() {
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = String(this.unread);
    this.toggle.setAttribute('aria-label', this.unread ? `Chat, ${this.unread} unread` : 'Chat');
  }

  /** One `chat.event` frame (event names and fields of the ACS JS SDK). */
  handleEvent(name, data) {
    if (!data || data.threadId !== this.threadId) return;
    const sender = data.sender ? data.sender.rawId : null;
    switch (name) {
      case 'chatMessageReceived': {
        const fresh = !this.messages.has(data.id);
        this.upsert({ id: data.id, type: data.type, senderRawId: sender, senderName: data.senderDisplayName,
          content: data.message, createdOn: data.createdOn });
        this.typing.delete(sender);
        this.renderTyping();
        if (fresh && sender !== this.deps.selfRawId()) {
          if (this.open && !document.hidden) this.markRead();
          else {
            this.unread += 1;
            this.renderUnread();
          }
        }
        break;
      }
      case 'chatMessageEdited':
        this.upsert({ id: data.id, type: data.type, senderRawId: sender, senderName: data.senderDisplayName,
          content: data.message, createdOn: data.createdOn, edited: true });
        break;
      case 'chatMessageDeleted':
        this.upsert({ id: data.id, type: data.type, senderRawId: sender, senderName: data.senderDisplayName,
          content: '', createdOn: data.createdOn, deleted: true });
        break;
      case 'typingIndicatorReceived':
        if (sender === this.deps.selfRawId()) break;
        this.typing.set(sender, { name: chatName(data.senderDisplayName, sender), until: Date.now() + TYPING_SHOWN_MS });
        this.renderTyping();
        break;
      case 'readReceiptReceived':
        if (sender === this.deps.selfRawId()) break;
        this.receipts.set(sender, { name: chatName(data.senderDisplayName, sender), messageId: data.chatMessageId });
        this.renderReceipts();
        break;
      default:
        break;
    }
  }

  /** Add or update one message, kept in id order. */
  upsert(m) {
    let entry = this.messages.get(m.id);
    if (!entry) {
      const item = el('li', 'chat-message');
      item.dataset.messageId = m.id;
      entry = { item, message: m };
      this.messages.set(m.id, entry);
      const after = [...this.list.children].find((li) => order(li.dataset.messageId) > order(m.id));
      this.list.insertBefore(item, after || null);
    } else {
      entry.message = { ...entry.message, ...m };
    }
    const msg = entry.message;
    const own = msg.senderRawId && msg.senderRawId === this.deps.selfRawId();
    entry.item.className = `chat-message${own ? ' own' : ''}${msg.deleted ? ' deleted' : ''}`;
    const head = el('div', 'chat-head');
    head.append(el('span', 'chat-sender', own ? 'You' : chatName(msg.senderName, msg.senderRawId)));
    const when = msg.createdOn ? new Date(msg.createdOn) : null;
    if (when && !Number.isNaN(when.getTime())) {
      const time = el('time', 'chat-time', when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
      time.dateTime = msg.createdOn;
      head.append(time);
    }
    const text = msg.deleted ? 'This message was deleted.' : messageText(msg.type, msg.content);
    const body = el('p', 'chat-text', text);
    const parts = [head, body];
    if (msg.edited && !msg.deleted) parts.push(el('span', 'chat-edited', 'Edited'));
    parts.push(el('span', 'chat-status'));
    entry.item.replaceChildren(...parts);
    this.list.scrollTop = this.list.scrollHeight;
    if (own) this.renderReceipts();
  }

  /** "Seen by …" under the latest own message each other participant has read. */
  renderReceipts() {
    const own = [...this.messages.values()].filter((e) => e.message.senderRawId === this.deps.selfRawId());
    const seen = new Map(); // message id → names
    for (const { name, messageId } of this.receipts.values()) {
      const read = own.filter((e) => order(e.message.id) <= order(messageId)).pop();
      if (read) seen.set(read.message.id, [...(seen.get(read.message.id) || []), name]);
    }
    for (const e of own) {
      const status = e.item.querySelector('.chat-status');
      const names = seen.get(e.message.id);
      status.textContent = names ? `Seen by ${names.join(', ')}` : '';
    }
  }

  renderTyping() {
    const now = Date.now();
    for (const [raw, t] of this.typing) if (t.until <= now) this.typing.delete(raw);
    const names = [...this.typing.values()].map((t) => t.name);
    this.typingLine.textContent =
      names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
    clearTimeout(this.typingTimer);
    if (names.length) this.typingTimer = setTimeout(() => this.renderTyping(), 1000);
  }

  /** Send a read receipt for the newest message of someone else, if the pane shows it. */
  markRead() {
    if (!this.threadId || !this.open || document.hidden) return;
    const self = this.deps.selfRawId();
    const latest = [...this.messages.values()]
      .map((e) => e.message)
      .filter((m) => m.senderRawId !== self && !m.deleted)
      .reduce((best, m) => (!best || order(m.id) > order(best.id) ? m : best), null);
    if (!latest || order(latest.id) <= this.lastReceiptSent) return;
    this.lastReceiptSent = order(latest.id);
    api.sendChatReadReceipt(this.deps.token(), this.threadId, latest.id).catch(() => {});
  }

  userTyping() {
    const now = Date.now();
    if (!this.threadId || !this.input.value || now - this.lastTypingSent < TYPING_SEND_MS) return;
    this.lastTypingSent = now;
    api.sendChatTyping(this.deps.token(), this.threadId, this.deps.displayName()).catch(() => {});
  }

  async send() {
    const content = this.input.value.trim();
    if (!content || !this.threadId) return;
    this.input.value = '';
    this.lastTypingSent = 0;
    const sent = await api.sendChatMessage(this.deps.token(), this.threadId, content, this.deps.displayName());
    this.upsert({ id: sent.id, type: 'text', senderRawId: this.deps.selfRawId(), senderName: this.deps.displayName(),
      content, createdOn: new Date().toISOString() });
  }
}

// REST calls of the web client: development sign-in, meetings, recording controls, chat.
// Every failure becomes an ApiError carrying the server's ACS error code and message.

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function request(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError('NetworkError', `cannot reach the server (${err.message})`, 0);
  }
  const text = await resp.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!resp.ok) {
    const error = json && json.error ? json.error : { code: `Http${resp.status}`, message: text || resp.statusText };
    throw new ApiError(error.code, error.message, resp.status);
  }
  return json;
}

/** `{devMode, message}`: whether the dev-only sign-in endpoints exist on this server. */
export function devStatus() {
  return request('GET', '/dev/web/status');
}

/**
 * A new external user with a voip+chat token, or a fresh token for `rawId` with the `secret`
 * its sign-in answer carried (development mode only).
 */
export function signInExternal(rawId, secret) {
  return request('POST', '/dev/web/external-user', { body: rawId ? { rawId, secret } : {} });
}

/** A new directory user through the development IdP and the token exchange, or a fresh token for `oid` (with its `secret`). */
export function signInDirectory(name, oid, secret) {
  return request('POST', '/dev/web/directory-user', { body: oid ? { name, oid, secret } : { name } });
}

/** Create a meeting organized by the (directory) user of `token`. */
export function createMeeting(token, subject) {
  return request('POST', '/meetings', { token, body: subject ? { subject } : {} });
}

/** Start or stop recording / transcription of a meeting (`what`: recording|transcription). */
export function setCapture(token, meetingId, what, on) {
  return request('POST', `/meetings/${encodeURIComponent(meetingId)}/${what}:${on ? 'start' : 'stop'}`, { token });
}

/** The Chat API version the client speaks (docs/chat.md). */
const CHAT_API = 'api-version=2024-03-07';
const chatThread = (threadId) => `/chat/threads/${encodeURIComponent(threadId)}`;

/** The newest `maxPageSize` messages of a chat thread the user may read (newest first). */
export function listChatMessages(token, threadId, maxPageSize = 100) {
  return request('GET', `${chatThread(threadId)}/messages?maxPageSize=${maxPageSize}&${CHAT_API}`, { token });
}

/** Send a text message; resolves `{id}`. */
export function sendChatMessage(token, threadId, content, senderDisplayName) {
  return request('POST', `${chatThread(threadId)}/messages?${CHAT_API}`, {
    token,
    body: { content, type: 'text', senderDisplayName },
  });
}

/** Tell the thread the user is typing. */
export function sendChatTyping(token, threadId, senderDisplayName) {
  return request('POST', `${chatThread(threadId)}/typing?${CHAT_API}`, { token, body: { senderDisplayName } });
}

/** Mark `chatMessageId` (and everything before it) as read. */
export function sendChatReadReceipt(token, threadId, chatMessageId) {
  return request('POST', `${chatThread(threadId)}/readReceipts?${CHAT_API}`, { token, body: { chatMessageId } });
}

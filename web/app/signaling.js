// The signaling WebSocket (protocol v1, docs/signaling.md): connects with an access token,
// answers `token.expiring` through a refresh callback, correlates requests with their
// `ack`/`error`/`joined` by requestId, and hands every other frame to `onFrame`.

export class SignalingError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Signaling {
  /**
   * @param {string} token palaver access token (scope voip or voip.join)
   * @param {{onFrame: (frame) => void, onClose: (info) => void, refreshToken?: () => Promise<string>}} handlers
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    this.pending = new Map();
    this.nextId = 1;
    this.ws = null;
    this.welcome = null;
  }

  /** Open the socket; resolves with the `welcome` frame. */
  connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/signaling/v1?access_token=${encodeURIComponent(this.token)}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.ws = ws;
      let welcomed = false;
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (frame.type === 'welcome') {
          welcomed = true;
          this.welcome = frame;
          resolve(frame);
          return;
        }
        this.dispatch(frame);
      };
      ws.onclose = (ev) => {
        for (const { reject: fail } of this.pending.values()) fail(new SignalingError('ConnectionClosed', 'the connection closed'));
        this.pending.clear();
        if (!welcomed) {
          reject(new SignalingError('ConnectionRefused', 'the server refused the connection (is the token valid?)'));
        }
        this.handlers.onClose({ code: ev.code, reason: ev.reason, welcomed });
      };
    });
  }

  dispatch(frame) {
    const waiter = frame.requestId ? this.pending.get(frame.requestId) : undefined;
    if (waiter && (frame.type === 'ack' || frame.type === 'error' || frame.type === 'joined')) {
      this.pending.delete(frame.requestId);
      if (frame.type === 'error') waiter.reject(new SignalingError(frame.code, frame.message));
      else waiter.resolve(frame);
      if (frame.type !== 'joined') return;
    }
    if (frame.type === 'token.expiring' && this.handlers.refreshToken) {
      this.handlers.refreshToken().then(
        (token) => {
          this.token = token;
          this.send({ type: 'token.refresh', token });
        },
        () => {},
      );
    }
    this.handlers.onFrame(frame);
  }

  /** Send a frame without waiting for an answer. */
  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** Send a frame with a requestId; resolves on its ack/joined, rejects on its error. */
  request(frame) {
    const requestId = `r${this.nextId++}`;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new SignalingError('ConnectionClosed', 'not connected'));
        return;
      }
      this.pending.set(requestId, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, requestId }));
    });
  }

  close() {
    if (this.ws) this.ws.close(1000, 'left');
  }
}

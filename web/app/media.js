// The media session: one RTCPeerConnection per joined conversation, negotiated over the
// signaling socket (one offer with audio, camera video, a screen-share video track and
// REMOTE_CAMERA_SLOTS - 1 more receive-only video slots; trickle ICE both ways). The server
// fills each video slot with a different remote camera (the screen slot with the active
// screen share) and says whose track each slot carries in `media.slots` frames (by mid).
// Also the connection-quality figure from getStats().
// When the server has no media plane it answers `MediaUnavailable`; the session then
// reports that clearly and the meeting continues without audio/video.

const STATS_INTERVAL_MS = 2000;

/**
 * Remote cameras shown at once (last-N): the camera transceiver (sendrecv) receives one, each
 * extra receive-only video transceiver one more. With more people the server shows the most
 * recent speakers.
 */
export const REMOTE_CAMERA_SLOTS = 8;

/** Video codecs the server forwards; the extra slots offer only these (keeps the offer small). */
const FORWARDED_VIDEO = new Set(['video/vp8', 'video/vp9', 'video/h264', 'video/av1']);

/** Receive-only slot codecs: what the server forwards, without RTX/RED/FEC (it sends none of them). */
function slotCodecs() {
  const caps = typeof RTCRtpReceiver.getCapabilities === 'function' ? RTCRtpReceiver.getCapabilities('video') : null;
  const codecs = caps ? caps.codecs.filter((c) => FORWARDED_VIDEO.has(c.mimeType.toLowerCase())) : [];
  return codecs.length > 0 ? codecs : null;
}

export class MediaSession {
  /**
   * @param {import('./signaling.js').Signaling} signaling
   * @param {MediaStream|null} localStream camera+microphone from the device check
   * @param {{onRemoteTrack, onSlots, onStatus, onQuality}} callbacks
   */
  constructor(signaling, localStream, callbacks) {
    this.signaling = signaling;
    this.localStream = localStream;
    this.callbacks = callbacks;
    this.pc = null;
    this.cameraTransceiver = null;
    this.screenTransceiver = null;
    /** mid → {kind: 'video'|'screen', participantId|null}, from the last `media.slots`. */
    this.slots = new Map();
    /** mid → "paused/maxHeight" last sent in `media.subscribe`. */
    this.sentWishes = new Map();
    this.screenTrack = null;
    this.statsTimer = null;
    this.lastInbound = null;
    this.unavailable = false;
    this.pendingCandidates = [];
  }

  get audioTrack() {
    return this.localStream ? this.localStream.getAudioTracks()[0] || null : null;
  }

  get videoTrack() {
    return this.localStream ? this.localStream.getVideoTracks()[0] || null : null;
  }

  async start() {
    if (typeof RTCPeerConnection === 'undefined') {
      this.callbacks.onStatus('This browser has no WebRTC: audio and video are off.', 'warn');
      return;
    }
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    const streams = this.localStream ? [this.localStream] : [];
    pc.addTransceiver(this.audioTrack || 'audio', { direction: 'sendrecv', streams });
    this.cameraTransceiver = pc.addTransceiver(this.videoTrack || 'video', { direction: 'sendrecv', streams });
    // The server reads the second video m-section as the screen share, later ones as camera slots.
    this.screenTransceiver = pc.addTransceiver('video', { direction: 'sendrecv' });
    const codecs = slotCodecs();
    for (let i = 1; i < REMOTE_CAMERA_SLOTS; i++) {
      const slot = pc.addTransceiver('video', { direction: 'recvonly' });
      if (codecs && typeof slot.setCodecPreferences === 'function') slot.setCodecPreferences(codecs);
    }
    pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return;
      const c = ev.candidate;
      this.signaling.send({
        type: 'media.iceCandidate',
        candidate: { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex },
      });
    };
    pc.ontrack = (ev) => this.callbacks.onRemoteTrack(ev.track, ev.streams, ev.transceiver);
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === 'connected') this.callbacks.onStatus('', 'ok');
      else if (s === 'failed') this.callbacks.onStatus('The media connection failed: no audio or video.', 'error');
      else if (s === 'disconnected') this.callbacks.onStatus('The media connection is interrupted…', 'warn');
    };
    this.callbacks.onStatus('Connecting audio and video…', 'info');
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    this.signaling.send({ type: 'media.offer', sdp: pc.localDescription.sdp });
    this.statsTimer = setInterval(() => this.sampleQuality(), STATS_INTERVAL_MS);
  }

  /** A server frame concerning media; returns true when it was one. */
  async handleFrame(frame) {
    if (!this.pc) return false;
    if (frame.type === 'media.answer' && !frame.callId) {
      await this.pc.setRemoteDescription({ type: 'answer', sdp: frame.sdp });
      for (const c of this.pendingCandidates.splice(0)) await this.addCandidate(c);
      return true;
    }
    if (frame.type === 'media.slots') {
      // May arrive just before the answer: mids are known from the local offer already.
      this.slots = new Map((frame.slots || []).map((s) => [s.mid, { kind: s.kind, participantId: s.participantId || null }]));
      // A slot may now carry someone else (a fresh consumer on the server): send every wish again.
      this.sentWishes.clear();
      this.callbacks.onSlots(this.slots);
      return true;
    }
    if (frame.type === 'media.iceCandidate' && !frame.callId) {
      if (this.pc.remoteDescription) await this.addCandidate(frame.candidate);
      else this.pendingCandidates.push(frame.candidate);
      return true;
    }
    if (frame.type === 'error' && !frame.requestId && frame.code === 'MediaUnavailable') {
      this.unavailable = true;
      this.callbacks.onStatus(
        'Audio and video are unavailable on this server (no media plane). You can still see who is here, and the recording notice.',
        'warn',
      );
      this.callbacks.onQuality({ level: 'unavailable', text: 'Connection: no media' });
      this.stopStats();
      return true;
    }
    return false;
  }

  async addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      console.warn('ignored a remote ICE candidate', err);
    }
  }

  /**
   * Tell the server how each video slot is shown: `wishes` maps mid → {paused, maxHeight}
   * (off-screen tiles paused, small tiles a lower simulcast layer). Only changes are sent.
   */
  setSlotWishes(wishes) {
    if (!this.pc || this.unavailable || !this.pc.remoteDescription) return;
    const changed = [];
    for (const [mid, w] of wishes) {
      const key = `${w.paused}/${w.maxHeight}`;
      if (this.sentWishes.get(mid) === key) continue;
      this.sentWishes.set(mid, key);
      changed.push(w.paused ? { mid, paused: true } : { mid, paused: false, maxHeight: w.maxHeight });
    }
    if (changed.length === 0) return;
    this.signaling.request({ type: 'media.subscribe', slots: changed }).catch((err) => {
      console.warn('media.subscribe refused', err);
      for (const { mid } of changed) this.sentWishes.delete(mid);
    });
  }

  setMuted(muted) {
    if (this.audioTrack) this.audioTrack.enabled = !muted;
  }

  setCameraOff(off) {
    if (this.videoTrack) this.videoTrack.enabled = !off;
  }

  /** Start sending the screen; resolves with the track (ends the share when the user stops it). */
  async startScreenShare(onEnded) {
    const display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = display.getVideoTracks()[0];
    this.screenTrack = track;
    track.addEventListener('ended', onEnded);
    if (this.screenTransceiver) await this.screenTransceiver.sender.replaceTrack(track);
    return track;
  }

  async stopScreenShare() {
    if (this.screenTransceiver) await this.screenTransceiver.sender.replaceTrack(null).catch(() => {});
    if (this.screenTrack) this.screenTrack.stop();
    this.screenTrack = null;
  }

  /** Inbound/outbound totals from getStats() (also used by the browser tests). */
  async stats() {
    const out = {
      connectionState: this.pc ? this.pc.connectionState : 'none',
      audioIn: { packets: 0, bytes: 0, energy: 0, lost: 0 },
      videoIn: { packets: 0, bytes: 0, framesDecoded: 0, lost: 0 },
      /** mid → frames decoded on that video slot. */
      framesDecodedByMid: {},
      audioOut: { packets: 0 },
      videoOut: { packets: 0 },
      rttMs: null,
      jitterMs: 0,
    };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioIn.packets += s.packetsReceived || 0;
        out.audioIn.bytes += s.bytesReceived || 0;
        out.audioIn.energy += s.totalAudioEnergy || 0;
        out.audioIn.lost += s.packetsLost || 0;
        out.jitterMs = Math.max(out.jitterMs, (s.jitter || 0) * 1000);
      } else if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.videoIn.packets += s.packetsReceived || 0;
        out.videoIn.bytes += s.bytesReceived || 0;
        out.videoIn.framesDecoded += s.framesDecoded || 0;
        out.videoIn.lost += s.packetsLost || 0;
        if (s.mid !== undefined) out.framesDecodedByMid[s.mid] = s.framesDecoded || 0;
      } else if (s.type === 'outbound-rtp') {
        (s.kind === 'audio' ? out.audioOut : out.videoOut).packets += s.packetsSent || 0;
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        if (typeof s.currentRoundTripTime === 'number') out.rttMs = s.currentRoundTripTime * 1000;
      }
    });
    return out;
  }

  async sampleQuality() {
    if (!this.pc || this.unavailable) return;
    const s = await this.stats();
    const received = s.audioIn.packets + s.videoIn.packets;
    const lost = s.audioIn.lost + s.videoIn.lost;
    const prev = this.lastInbound || { received: 0, lost: 0 };
    this.lastInbound = { received, lost };
    const dReceived = received - prev.received;
    const dLost = Math.max(0, lost - prev.lost);
    const lossPct = dReceived + dLost > 0 ? (100 * dLost) / (dReceived + dLost) : 0;
    let level = 'good';
    if (s.connectionState !== 'connected') level = 'poor';
    else if (lossPct > 5 || (s.rttMs || 0) > 400 || s.jitterMs > 60) level = 'poor';
    else if (lossPct > 1 || (s.rttMs || 0) > 150 || s.jitterMs > 30) level = 'fair';
    const rtt = s.rttMs === null ? '' : `, ${Math.round(s.rttMs)} ms`;
    this.callbacks.onQuality({ level, text: `Connection: ${level}${rtt}, ${lossPct.toFixed(1)}% loss`, stats: s });
  }

  stopStats() {
    if (this.statsTimer) clearInterval(this.statsTimer);
    this.statsTimer = null;
  }

  /** End the peer connection; the camera and microphone stay on when `keepLocal` (resume). */
  close({ keepLocal = false } = {}) {
    this.stopStats();
    if (this.screenTrack) this.screenTrack.stop();
    if (this.pc) this.pc.close();
    this.pc = null;
    if (this.localStream && !keepLocal) for (const t of this.localStream.getTracks()) t.stop();
  }
}

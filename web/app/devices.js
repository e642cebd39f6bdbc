// The device check before joining: camera preview, microphone level meter, and the choice
// of camera and microphone. The checked stream is handed to the meeting so the browser
// does not ask twice.

export class DeviceCheck {
  constructor({ preview, cameraSelect, micSelect, meterBar, meter, status }) {
    Object.assign(this, { preview, cameraSelect, micSelect, meterBar, meter, status });
    this.stream = null;
    this.audioContext = null;
    this.meterTimer = null;
    cameraSelect.addEventListener('change', () => this.open());
    micSelect.addEventListener('change', () => this.open());
  }

  /** Open (or reopen) the selected devices and show them. Never throws. */
  async open() {
    this.stopTracks();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.status.textContent = 'This browser cannot use a camera or microphone here (a secure https page is needed).';
      return;
    }
    const camera = this.cameraSelect.value;
    const mic = this.micSelect.value;
    const constraints = {
      audio: mic ? { deviceId: { exact: mic } } : true,
      video: camera ? { deviceId: { exact: camera }, width: { ideal: 640 }, height: { ideal: 360 } } : { width: { ideal: 640 }, height: { ideal: 360 } },
    };
    try {
      this.stream = await navigator.mediaDevices.getUserMedia(constraints);
    } catch (err) {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        this.status.textContent = `Camera unavailable (${err.name}); you can join with audio only.`;
      } catch (err2) {
        this.stream = null;
        this.status.textContent = `Camera and microphone unavailable (${err2.name}); you can still join and watch.`;
        return;
      }
    }
    this.preview.srcObject = this.stream;
    await this.listDevices();
    this.startMeter();
    if (this.stream.getVideoTracks().length) this.status.textContent = 'Camera and microphone are working.';
  }

  async listDevices() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select, kind, current) => {
      const previous = select.value;
      select.replaceChildren();
      let n = 0;
      for (const d of devices.filter((x) => x.kind === kind)) {
        n += 1;
        const opt = document.createElement('option');
        opt.value = d.deviceId;
        opt.textContent = d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${n}`;
        select.append(opt);
      }
      const active = current && current.getSettings().deviceId;
      select.value = active || previous || (select.options[0] && select.options[0].value) || '';
    };
    fill(this.cameraSelect, 'videoinput', this.stream && this.stream.getVideoTracks()[0]);
    fill(this.micSelect, 'audioinput', this.stream && this.stream.getAudioTracks()[0]);
  }

  startMeter() {
    const track = this.stream && this.stream.getAudioTracks()[0];
    if (!track || typeof AudioContext === 'undefined') return;
    this.audioContext = new AudioContext();
    const source = this.audioContext.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.audioContext.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const data = new Uint8Array(analyser.fftSize);
    this.meterTimer = setInterval(() => {
      analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
      const level = Math.min(100, Math.round((peak / 128) * 100));
      this.meterBar.style.width = `${level}%`;
      this.meter.setAttribute('aria-valuenow', String(level));
    }, 100);
  }

  stopMeter() {
    if (this.meterTimer) clearInterval(this.meterTimer);
    this.meterTimer = null;
    if (this.audioContext) this.audioContext.close().catch(() => {});
    this.audioContext = null;
  }

  stopTracks() {
    this.stopMeter();
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }

  /** Hand the checked stream over (the check stops showing it but keeps the tracks running). */
  takeStream() {
    this.stopMeter();
    const s = this.stream;
    this.stream = null;
    this.preview.srcObject = null;
    return s;
  }
}

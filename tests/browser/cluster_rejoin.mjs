// The web client through the loss of its meeting's home node (driven by
// tests/cluster/standing.py, which starts the cluster and kills the home; docs/cluster.md,
// "Resume across a takeover").
//
// The pages reach the cluster through a TCP load balancer in this process (the first node of
// `PALAVER_NODES` that accepts a connection, as an operator's L4 balancer would), so a page's
// origin outlives any one node. Three Chromium pages: Ada (a directory user, the meeting's
// organizer), Bob (external, admitted from the lobby: attendee) and Carol (external, left
// waiting in the lobby). Ada and Bob send and receive audio (Chromium's fake microphone);
// Ada starts recording and transcription (`recording.start`, `transcription.start`). Then this script prints a
// `ready` line (the meeting id) and waits for `killed <epoch ms>` on stdin: the driver has
// killed the home with SIGKILL. After it, each page must come back by itself (rejoin.js:
// `resume` on a new socket): every page gets the recording/transcription notice
// (`capture.changed`, or a `joined` snapshot with capture on) again, Ada and Bob keep their
// roles (Organizer, Attendee) and hear audio again (getStats: new inbound audio with energy),
// Carol is still in the lobby and is then admitted by Ada on the new home. Everyone leaves,
// and a `done` line carries each page's timeline for the driver (takeover instant, billing
// oracle). Any failed check exits non-zero.
//
// Every received signaling frame is time-stamped in the page (an init script wraps
// `WebSocket`), so the notice's arrival is measured, not the banner's repaint.

import assert from 'node:assert/strict';
import net from 'node:net';
import readline from 'node:readline';
import { launchBrowser, newUserPage, rosterEntry, screenshot, waitFor } from './harness.mjs';

const NODES = (process.env.PALAVER_NODES || '').split(',').filter(Boolean).map((u) => new URL(u));
const AFTER_KILL_MS = 25_000;

function out(event, fields = {}) {
  console.log(JSON.stringify({ event, at_ms: Date.now(), ...fields }));
}

/** A TCP balancer on a free loopback port: each connection goes to the first node that accepts. */
async function balancer() {
  const server = net.createServer((client) => {
    client.pause();
    const tryNode = (i) => {
      if (i >= NODES.length) return client.destroy();
      const upstream = net.connect(Number(NODES[i].port), NODES[i].hostname);
      upstream.once('error', () => tryNode(i + 1));
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.pipe(upstream).pipe(client);
        client.resume();
      });
    };
    tryNode(0);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `https://127.0.0.1:${server.address().port}` };
}

/** Records every received signaling frame with its arrival time (window.__frames). */
function recordFrames() {
  window.__frames = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const send = this.send.bind(this);
      this.send = (data) => {
        try {
          const f = JSON.parse(data);
          if (['resume', 'join', 'leave'].includes(f.type)) window.__frames.push({ t: Date.now(), type: `>${f.type}` });
        } catch {
          /* not JSON */
        }
        return send(data);
      };
      this.addEventListener('close', (e) => window.__frames.push({ t: Date.now(), type: 'socket.closed', code: e.code }));
      this.addEventListener('message', (e) => {
        try {
          const f = JSON.parse(e.data);
          window.__frames.push({ t: Date.now(), type: f.type, requestId: f.requestId, code: f.code, capture: f.capture || (f.snapshot && f.snapshot.capture) });
        } catch {
          /* not JSON */
        }
      });
    }
  };
}

async function page(browser) {
  const p = await newUserPage(browser);
  await p.addInitScript(recordFrames);
  return p;
}

async function joinAndWaitFor(p, screen) {
  await p.getByRole('button', { name: 'Join', exact: true }).click();
  await p.locator(`#screen-${screen}`).waitFor({ state: 'visible', timeout: 15_000 });
}

/** The organizer admits `name` from the lobby panel; on a timeout its last frames are printed. */
async function admit(organizer, name) {
  await organizer.getByRole('button', { name: `Admit ${name}` }).click();
  try {
    await organizer.locator('#lobby-list li', { hasText: name }).waitFor({ state: 'detached', timeout: 10_000 });
  } catch (err) {
    const frames = await organizer.evaluate(() => window.__frames.slice(-15).map((f) => `${f.type}${f.code ? `:${f.code}` : ''}@${f.t}`));
    console.error(`cluster_rejoin: ${name} still in the lobby list 10 s after Admit; organizer's last frames: ${frames.join(' ')}`);
    throw err;
  }
}

async function inboundAudio(p) {
  return p.evaluate(async () => {
    const m = window.palaverClient.media;
    return m ? (await m.stats()).audioIn : null;
  });
}

const client = (p, expr, arg) => p.evaluate(expr, arg);

async function main() {
  assert.ok(NODES.length >= 2, 'PALAVER_NODES: the nodes base URLs, comma separated');
  const lb = await balancer();
  const browser = await launchBrowser();
  const pages = {};
  try {
    const ada = (pages.ada = await page(browser));
    const bob = (pages.bob = await page(browser));
    const carol = (pages.carol = await page(browser));
    const firstRequest = {};

    await ada.goto(`${lb.base}/`);
    await ada.getByText(/Development mode/).waitFor();
    await ada.getByLabel('Directory user (development sign-in)').check();
    await ada.getByLabel('Your name').fill('Ada Organizer');
    await ada.getByLabel('Subject of a new meeting').fill('Takeover');
    await ada.getByRole('button', { name: 'Create meeting' }).click();
    await ada.locator('#created-meeting').waitFor();
    const link = await ada.inputValue('#meeting-link');
    const meetingId = /\/meetings\/join\/([0-9a-f-]{36})/.exec(link)[1];
    // The driver starts a palaver-client participant (cluster_probe, QUIC) on this link.
    out('meeting', { link });
    firstRequest.ada = Date.now();
    await joinAndWaitFor(ada, 'meeting');
    for (const [name, p] of [['Bob', bob], ['Carol', carol]]) {
      await p.goto(link);
      await p.getByLabel('Your name').fill(name);
      firstRequest[name.toLowerCase()] = Date.now();
      await joinAndWaitFor(p, 'lobby');
      await ada.locator('#lobby-list li', { hasText: `${name} (External)` }).waitFor();
    }
    // Everyone who will wait is in the lobby before anyone is admitted (no lobby list redrawn
    // under a click).
    const probe = process.env.PALAVER_PROBE_NAME ? `${process.env.PALAVER_PROBE_NAME} (External)` : null;
    if (probe) await ada.locator('#lobby-list li', { hasText: probe }).waitFor({ timeout: 20_000 });
    await admit(ada, 'Bob (External)');
    await bob.locator('#screen-meeting').waitFor({ state: 'visible', timeout: 15_000 });
    const admittedBob = Date.now();
    if (probe) {
      await admit(ada, probe);
      await rosterEntry(ada, probe).getByText('Attendee', { exact: true }).waitFor({ timeout: 10_000 });
    }
    for (const [who, p] of [['ada', ada], ['bob', bob]]) {
      await waitFor(async () => {
        const a = await inboundAudio(p);
        return a && a.packets > 0 && a.energy > 0;
      }, { timeoutMs: 20_000, what: `${who} hearing audio before the kill` });
    }
    // Over signaling (relayed to the home by whichever node holds Ada's socket): the REST
    // routes act only on a conversation hosted by the node they reach (docs/cluster.md).
    await client(ada, () => {
      window.palaverClient.signaling.send({ type: 'recording.start' });
      window.palaverClient.signaling.send({ type: 'transcription.start' });
    });
    for (const [who, p] of Object.entries(pages)) {
      await p.locator('#capture-banner:not([hidden])').waitFor({ state: 'attached', timeout: 5000 });
      const text = await p.locator('#capture-text').textContent();
      assert.match(text, /recorded/i, `${who}: ${text}`);
      assert.match(text, /transcri/i, `${who}: ${text}`);
    }
    const before = {};
    for (const [who, p] of Object.entries(pages)) {
      before[who] = await client(p, () => ({
        ...window.palaverClient.resume,
        joinedAt: window.__frames.find((f) => f.type === 'joined').t,
        comebacks: window.__frames.filter((f) => f.type === 'welcome').length - 1,
        rawId: window.palaverClient.identity.rawId,
        role: window.palaverClient.state.selfRole,
        state: window.palaverClient.state.selfState,
      }));
    }
    assert.equal(before.ada.role, 'organizer');
    assert.equal(before.bob.role, 'attendee');
    assert.equal(before.carol.state, 'lobby');
    await screenshot(ada, 'cluster-01-organizer-before-kill');

    // A reconnect still under way before the kill would be counted as the comeback after it.
    const comebacks = {};
    for (const [who, p] of Object.entries(pages)) {
      await waitFor(() => client(p, () => !window.palaverClient.reconnecting), { what: `${who} settled before the kill` });
      comebacks[who] = await client(p, () => window.palaverClient.resumed + window.palaverClient.rejoined);
    }
    out('ready', { meeting: meetingId, before, balancer: lb.base });
    const lines = readline.createInterface({ input: process.stdin });
    const killedMs = await new Promise((resolve) => lines.once('line', (l) => resolve(Number(l.split(' ')[1]))));

    // Every page comes back by itself (resume through the balancer, which now reaches a live node).
    const back = {};
    for (const [who, p] of Object.entries(pages)) {
      await waitFor(async () => (await client(p, () => window.palaverClient.resumed + window.palaverClient.rejoined)) > comebacks[who], {
        timeoutMs: AFTER_KILL_MS,
        what: `${who} reconnecting after the kill`,
      });
      back[who] = await client(p, (killed) => {
        const app = window.palaverClient;
        const frames = window.__frames.filter((f) => f.t >= killed);
        const seat = frames.find((f) => f.type === 'joined' || f.type === 'snapshot');
        const asked = frames.filter((f) => (f.type === '>resume' || f.type === '>join') && seat && f.t <= seat.t).pop();
        const notice = frames.find(
          (f) => (f.type === 'capture.changed' || f.type === 'joined' || f.type === 'snapshot') && f.capture &&
            f.capture.recording === 'active' && f.capture.transcription === 'active',
        );
        return {
          ...app.resume,
          frames: frames
            .filter((f) => !['ack', 'roster.delta', 'media.slots', 'chat.event', 'media.answer'].includes(f.type))
            .map((f) => `${f.type}${f.code ? `:${f.code}` : ''}${f.requestId ? `(${f.requestId})` : ''}+${f.t - killed}`),
          resumed: app.resumed,
          rejoined: app.rejoined,
          seatAt: seat && seat.t,
          askedAt: asked && asked.t,
          seatFrame: seat && seat.type,
          noticeAt: notice && notice.t,
          noticeFrame: notice && notice.type,
          role: app.state.selfRole,
          state: app.state.selfState,
        };
      }, killedMs);
    }
    // Audio again (a new peer connection after the resume: its inbound counters start at zero).
    const audio = {};
    for (const [who, p] of [['ada', ada], ['bob', bob]]) {
      await waitFor(async () => {
        const a = await inboundAudio(p);
        if (a && a.packets > 0 && a.energy > 0) audio[who] = Date.now() - killedMs;
        return audio[who] !== undefined;
      }, { timeoutMs: AFTER_KILL_MS, intervalMs: 50, what: `${who} hearing audio again` });
    }
    for (const [who, p] of Object.entries(pages)) {
      if (!back[who].noticeAt) {
        const frames = await client(p, () => window.__frames.map((f) => `${f.type}${f.code ? `:${f.code}` : ''}@${f.t}`));
        console.error(`${who} frames (killed at ${killedMs}): ${frames.join(' ')}`);
      }
      assert.ok(back[who].noticeAt, `${who}: the recording/transcription notice came again after the kill`);
    }
    assert.equal(back.ada.role, 'organizer', 'Ada is still the organizer');
    assert.equal(back.bob.role, 'attendee', 'Bob is still an attendee');
    assert.equal(back.ada.state, 'connected');
    assert.equal(back.bob.state, 'connected');
    assert.equal(back.carol.state, 'lobby', 'Carol still waits in the lobby');
    assert.ok(await carol.locator('#screen-lobby').isVisible(), "Carol's page shows the lobby");
    await rosterEntry(ada, 'Ada Organizer (you)').getByText('Organizer', { exact: true }).waitFor({ timeout: 5000 });
    await rosterEntry(ada, 'Bob (External)').getByText('Attendee', { exact: true }).waitFor({ timeout: 5000 });
    await rosterEntry(bob, 'Ada Organizer').getByText('Organizer', { exact: true }).waitFor({ timeout: 5000 });
    for (const p of Object.values(pages)) assert.ok(await p.locator('#capture-banner').isVisible(), 'banner still shown');
    await screenshot(ada, 'cluster-02-organizer-after-takeover');
    await screenshot(carol, 'cluster-03-waiter-after-takeover');

    // The organizer admits the waiter on the new home.
    await ada.locator('#lobby-list li', { hasText: 'Carol (External)' }).waitFor({ timeout: 5000 });
    await admit(ada, 'Carol (External)');
    await carol.locator('#screen-meeting').waitFor({ state: 'visible', timeout: 5000 });
    const admittedCarol = Date.now();
    await rosterEntry(ada, 'Carol (External)').getByText('Attendee', { exact: true }).waitFor({ timeout: 5000 });
    await screenshot(carol, 'cluster-04-waiter-admitted');

    // The driver stops its palaver-client participant first (alone in the meeting it would hear
    // nothing and take the silence for a lost home), then says `go`.
    out('leaving');
    await new Promise((resolve) => lines.once('line', resolve));
    const left = {};
    for (const [who, p] of Object.entries(pages)) {
      const sent = Date.now();
      await p.locator('#leave').click();
      await p.locator('#screen-ended').waitFor({ state: 'visible', timeout: 5000 });
      const leaveAt = await client(p, () => window.__frames.filter((f) => f.type === '>leave').pop().t);
      left[who] = { clicked: sent, sent: leaveAt, at: Date.now() };
    }
    out('done', { killedMs, firstRequest, admitted: { bob: admittedBob, carol: admittedCarol }, before, back, audio, left });
  } finally {
    await browser.close();
    lb.server.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`cluster_rejoin: ${err.stack || err}`);
    process.exit(1);
  },
);

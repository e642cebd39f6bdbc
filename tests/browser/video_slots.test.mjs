// Video slots with three people in one meeting: every page must show BOTH remote cameras,
// each in the tile of the person who sends it. Each page replaces its camera with a canvas
// of its own colour, so a tile is right only if the pixels in its <video> have the colour of
// the participant named by the tile's `data-participant` (and that participant is in the
// roster under the tile's caption). Decoded frames on each tile's slot (getStats per mid)
// must keep increasing. On a short phone-size window the off-screen tile's slot is paused
// (no new frames) and resumes when scrolled into view. Then one person shares a screen: the
// two others get a screen tile for that person with frames flowing; then one leaves.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, rosterEntry, screenshot, startServer, waitFor } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

/** Camera colours: each page sends a solid canvas of its colour (channel index 0 = red…). */
const PEOPLE = [
  { name: 'Ada Red', color: '#e00000', channel: 0 },
  { name: 'Bo Green', color: '#00c000', channel: 1 },
  { name: 'Cy Blue', color: '#0000e0', channel: 2 },
];

async function signInDirectory(page, name) {
  await page.goto(`${server.base}/`);
  await page.getByText(/Development mode/).waitFor();
  await page.getByLabel('Directory user (development sign-in)').check();
  await page.getByLabel('Your name').fill(name);
}

async function joinMeeting(page) {
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await page.locator('#screen-meeting').waitFor({ state: 'visible', timeout: 10_000 });
}

/** Replace the page's outgoing camera with a canvas of `color` (a moving mark keeps frames coming). */
async function sendColour(page, color) {
  await waitFor(() => page.evaluate(() => !!window.palaverClient.media?.cameraTransceiver), { what: 'the camera sender' });
  await page.evaluate((color) => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 240;
    const ctx = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      ctx.fillStyle = color;
      ctx.fillRect(0, 0, 320, 240);
      ctx.fillStyle = '#000';
      ctx.fillRect((n++ * 8) % 300, 0, 20, 20);
    }, 50);
    const track = canvas.captureStream(20).getVideoTracks()[0];
    window.testCameraTrack = track;
    return window.palaverClient.media.cameraTransceiver.sender.replaceTrack(track);
  }, color);
}

/** Every remote camera tile on `page`: participant, caption, slot mid and the centre pixel's RGB. */
function remoteTiles(page) {
  return page.evaluate(() => {
    const self = window.palaverClient.state.selfId;
    return [...document.querySelectorAll('#grid figure.tile[data-kind="camera"]')]
      .filter((tile) => tile.dataset.participant !== self)
      .map((tile) => {
        const video = tile.querySelector('video');
        let rgb = null;
        if (video.videoWidth > 0) {
          const canvas = document.createElement('canvas');
          canvas.width = video.videoWidth;
          canvas.height = video.videoHeight;
          const ctx = canvas.getContext('2d');
          ctx.drawImage(video, 0, 0);
          const d = ctx.getImageData(Math.floor(canvas.width / 2), Math.floor(canvas.height * 0.6), 1, 1).data;
          rgb = [d[0], d[1], d[2]];
        }
        return {
          participant: tile.dataset.participant,
          caption: tile.querySelector('figcaption').textContent,
          mid: video.dataset.mid,
          noVideo: tile.classList.contains('no-video'),
          rgb,
        };
      });
  });
}

/** What the page knows about its slots (printed when a wait fails). */
async function diagnose(page, label) {
  const state = await page.evaluate(async () => {
    const app = window.palaverClient;
    return {
      slots: [...app.slots.entries()],
      tracks: [...app.slotTracks.entries()].map(([mid, t]) => [mid, t.track.muted, t.track.readyState]),
      mids: app.media?.pc?.getTransceivers().map((t) => [t.mid, t.direction, t.currentDirection]),
      stats: app.media ? await app.media.stats() : null,
      status: document.querySelector('#media-status').textContent,
      errors: document.querySelector('#meeting-error').textContent,
    };
  });
  const tiles = await remoteTiles(page);
  console.log(`${label}: ${JSON.stringify({ ...state, tiles })}`);
  await screenshot(page, `20-slots-failed-${label.split(' ')[0].toLowerCase()}`);
}

const framesByMid = (page) => page.evaluate(async () => (await window.palaverClient.media.stats()).framesDecodedByMid);

function dominant(rgb) {
  return rgb.indexOf(Math.max(...rgb));
}

test('three people: each page shows both remote cameras, each in its sender’s tile', async () => {
  const pages = [];
  for (const person of PEOPLE) pages.push(await newUserPage(browser));
  const [first, ...others] = pages;

  // The first person creates the meeting; the two others (same tenant: no lobby) join by ID + passcode.
  await signInDirectory(first, PEOPLE[0].name);
  await first.getByLabel('Subject of a new meeting').fill('Slots test');
  await first.getByRole('button', { name: 'Create meeting' }).click();
  await first.locator('#created-meeting').waitFor();
  const link = await first.inputValue('#meeting-link');
  const meetingId = /\/meetings\/join\/([0-9a-f-]{36})/.exec(link)[1];
  const meeting = await server.signed('GET', `/meetings/${meetingId}`);
  assert.equal(meeting.status, 200);
  await joinMeeting(first);
  for (const [i, page] of others.entries()) {
    await signInDirectory(page, PEOPLE[i + 1].name);
    await page.getByLabel('Meeting ID').fill(meeting.body.meetingCode);
    await page.getByLabel('Passcode').fill(meeting.body.passcode);
    await joinMeeting(page);
  }
  for (const [i, page] of pages.entries()) await sendColour(page, PEOPLE[i].color);

  const offerBytes = await first.evaluate(() => window.palaverClient.media.pc.localDescription.sdp.length);
  console.log(`offer with ${await first.evaluate(() => window.palaverClient.media.pc.getTransceivers().length)} m-sections: ${offerBytes} bytes`);
  const ids = [];
  for (const page of pages) ids.push(await page.evaluate(() => window.palaverClient.state.selfId));
  const personOf = new Map(ids.map((id, i) => [id, PEOPLE[i]]));

  for (const [i, page] of pages.entries()) {
    const expected = ids.filter((_, j) => j !== i).sort();
    // Both remote cameras, each in its sender's tile (by colour), frames flowing.
    const tiles = await waitFor(
      async () => {
        const tiles = await remoteTiles(page);
        const shown = tiles.filter((t) => t.mid && !t.noVideo && t.rgb);
        if (shown.length !== 2) return null;
        const right = shown.every((t) => dominant(t.rgb) === personOf.get(t.participant)?.channel);
        return right ? shown : null;
      },
      { timeoutMs: 30_000, intervalMs: 250, what: `${PEOPLE[i].name} seeing both remote cameras in the right tiles` },
    ).catch(async (err) => {
      for (const [j, p] of pages.entries()) await diagnose(p, PEOPLE[j].name);
      throw err;
    });
    assert.deepEqual(tiles.map((t) => t.participant).sort(), expected, 'one tile per other participant');
    assert.notEqual(tiles[0].mid, tiles[1].mid, 'the two cameras come on two different slots');
    for (const t of tiles) {
      const person = personOf.get(t.participant);
      assert.ok(t.caption.startsWith(person.name), `tile caption "${t.caption}" names ${person.name}`);
      await rosterEntry(page, person.name).waitFor();
      const rosterId = await rosterEntry(page, person.name).getAttribute('data-participant-id');
      assert.equal(rosterId, t.participant, `the roster's ${person.name} is the tile's participant`);
    }
    const before = await framesByMid(page);
    await new Promise((r) => setTimeout(r, 1500));
    const later = await framesByMid(page);
    for (const t of tiles) {
      assert.ok(later[t.mid] > before[t.mid], `${PEOPLE[i].name}: frames on slot ${t.mid} went ${before[t.mid]} → ${later[t.mid]}`);
    }
    console.log(`${PEOPLE[i].name}: ${tiles.map((t) => `${personOf.get(t.participant).name} on mid ${t.mid} rgb ${t.rgb} frames ${before[t.mid]}→${later[t.mid]}`).join('; ')}`);
  }
  for (const [i, page] of pages.entries()) await screenshot(page, `20-slots-${PEOPLE[i].name.split(' ')[0].toLowerCase()}`);

  // Off-screen tiles are paused (media.subscribe) and resume when scrolled into view: on a
  // short phone-size window only the upper remote tile is visible.
  const viewer = pages[0];
  await viewer.setViewportSize({ width: 390, height: 2000 });
  const remoteRects = () =>
    viewer.evaluate(() => {
      window.scrollTo(0, 0);
      const self = window.palaverClient.state.selfId;
      return [...document.querySelectorAll('#grid figure.tile[data-kind="camera"]')]
        .filter((t) => t.dataset.participant !== self)
        .map((t) => ({ mid: t.querySelector('video').dataset.mid, top: t.getBoundingClientRect().top, bottom: t.getBoundingClientRect().bottom }))
        .sort((a, b) => a.top - b.top);
    });
  const [upper, lower] = await remoteRects();
  await viewer.setViewportSize({ width: 390, height: Math.floor((upper.bottom + lower.top) / 2) });
  await remoteRects();
  const sampleGap = async () => {
    const a = await framesByMid(viewer);
    await new Promise((r) => setTimeout(r, 1500));
    const b = await framesByMid(viewer);
    return { upper: b[upper.mid] - a[upper.mid], lower: b[lower.mid] - a[lower.mid] };
  };
  const paused = await waitFor(
    async () => {
      const gap = await sampleGap();
      return gap.lower === 0 && gap.upper > 0 ? gap : null;
    },
    { timeoutMs: 15_000, intervalMs: 10, what: 'the off-screen slot to pause while the visible one plays' },
  ).catch(async (err) => {
    await diagnose(viewer, 'pause');
    throw err;
  });
  console.log(`off screen: slot ${lower.mid} +${paused.lower} frames in 1.5 s, on screen: slot ${upper.mid} +${paused.upper}`);
  await screenshot(viewer, '20b-slots-phone-offscreen-paused');
  await viewer.evaluate((mid) => document.querySelector(`#grid video[data-mid="${mid}"]`).scrollIntoView(), lower.mid);
  await waitFor(async () => (await sampleGap()).lower > 0, { timeoutMs: 15_000, intervalMs: 10, what: 'the slot to resume on screen' });
  await viewer.setViewportSize({ width: 1280, height: 800 });

  // The first person shares a screen: the two others get a screen tile for it, with frames.
  await first.getByRole('button', { name: 'Share screen' }).click();
  await first.locator('#toggle-share[aria-pressed="true"]').waitFor({ timeout: 5000 });
  for (const [i, page] of others.entries()) {
    const screen = page.locator(`#grid figure.tile.screen[data-participant="${ids[0]}"]`);
    await screen.waitFor({ timeout: 10_000 });
    const mid = await screen.locator('video').getAttribute('data-mid');
    assert.ok(mid, 'the screen tile plays a slot');
    await waitFor(async () => (await framesByMid(page))[mid] > 0, {
      timeoutMs: 15_000,
      what: `${PEOPLE[i + 1].name} decoding the screen share`,
    });
    // The cameras stay in their tiles.
    assert.equal((await remoteTiles(page)).length, 2);
  }
  await screenshot(others[0], '21-slots-screen-share');
  await first.getByRole('button', { name: 'Stop sharing' }).click();
  for (const page of others) {
    await page.locator('#grid figure.tile.screen').waitFor({ state: 'detached', timeout: 5000 });
  }

  // When someone leaves, the others' tiles for them go and the remaining camera stays right.
  await pages[2].getByRole('button', { name: 'Leave' }).click();
  for (const [i, page] of pages.slice(0, 2).entries()) {
    await waitFor(
      async () => {
        const tiles = (await remoteTiles(page)).filter((t) => t.mid && !t.noVideo && t.rgb);
        return tiles.length === 1 && tiles[0].participant === ids[1 - i] && dominant(tiles[0].rgb) === PEOPLE[1 - i].channel;
      },
      { timeoutMs: 10_000, what: `${PEOPLE[i].name} seeing only the remaining camera` },
    );
  }
  for (const page of pages) await page.context().close();
});

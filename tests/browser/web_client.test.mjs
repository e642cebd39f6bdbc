// End-to-end tests of the reference web client against the real binary in headless
// Chromium: join by link and by meeting id + passcode, the lobby and admission, roles and
// the ` (External)` suffix in the roster, mute, the recording banner (lobby included)
// within 1 s of the REST call, phone layout; and, separately, audio/video via getStats().

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, rosterEntry, screenshot, startServer, waitFor } from './harness.mjs';

const BANNER_BOUND_MS = 1000;

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

/** Sign in as a directory user and create a meeting from the setup form; returns its join link. */
async function organizerCreatesMeeting(page, name, subject) {
  await page.goto(`${server.base}/`);
  await page.getByText(/Development mode/).waitFor();
  await page.getByLabel('Directory user (development sign-in)').check();
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Subject of a new meeting').fill(subject);
  await page.getByRole('button', { name: 'Create meeting' }).click();
  await page.locator('#created-meeting').waitFor();
  return page.inputValue('#meeting-link');
}

async function joinAndWaitFor(page, screen) {
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await page.locator(`#screen-${screen}`).waitFor({ state: 'visible', timeout: 10_000 });
}

async function guestOpensLink(page, link, name) {
  await page.goto(link);
  await page.getByLabel('Your name').fill(name);
  assert.equal(await page.inputValue('#meeting-link'), link, 'the join link opens the client with the link filled in');
}

function meetingIdOf(link) {
  return /\/meetings\/join\/([0-9a-f-]{36})/.exec(link)[1];
}

/** Wait until the banner's visibility is `shown` and return when the page changed it (ms epoch). */
async function bannerChangedAt(page, shown) {
  const selector = shown ? '#capture-banner:not([hidden])' : '#capture-banner[hidden]';
  await page.locator(selector).waitFor({ state: 'attached', timeout: 3000 });
  const attr = shown ? 'data-shown-at' : 'data-hidden-at';
  return Number(await page.locator('#capture-banner').getAttribute(attr));
}

test('lobby, admission, roster roles, mute and the recording banner within 1 s', async () => {
  const organizer = await newUserPage(browser);
  const guest = await newUserPage(browser);
  const presenter = await newUserPage(browser);

  // Organizer: device check, create a meeting, join directly.
  const link = await organizerCreatesMeeting(organizer, 'Ada Organizer', 'Browser test');
  await organizer.locator('#preview').evaluate((v) => new Promise((r) => (v.readyState >= 2 ? r() : (v.onloadeddata = r))));
  const camera = await organizer.locator('#camera-select option').count();
  assert.ok(camera >= 1, 'the device check lists at least one camera');
  await screenshot(organizer, '01-organizer-device-check');
  await joinAndWaitFor(organizer, 'meeting');
  await rosterEntry(organizer, 'Ada Organizer (you)').getByText('Organizer', { exact: true }).waitFor();
  await screenshot(organizer, '02-organizer-in-meeting');

  // Guest: opens the join link, waits in the lobby.
  await guestOpensLink(guest, link, 'Bob');
  await joinAndWaitFor(guest, 'lobby');
  const lobbyStatus = guest.locator('#lobby-status');
  assert.match(await lobbyStatus.textContent(), /waiting for someone to let you in/i);
  assert.equal(await lobbyStatus.getAttribute('aria-live'), 'polite');
  await screenshot(guest, '03-guest-in-lobby');

  // Organizer sees the lobby request.
  const request = organizer.locator('#lobby-list li', { hasText: 'Bob (External)' });
  await request.waitFor();
  await screenshot(organizer, '04-organizer-sees-lobby-request');

  // Recording starts by REST: banner on both pages (guest still in the lobby) within 1 s.
  const meetingId = meetingIdOf(link);
  const startedAt = Date.now();
  const start = await server.signed('POST', `/meetings/${meetingId}/recording:start`);
  assert.equal(start.status, 200, JSON.stringify(start.body));
  for (const [who, page] of [['organizer', organizer], ['guest in lobby', guest]]) {
    const shownAt = await bannerChangedAt(page, true);
    const delay = shownAt - startedAt;
    console.log(`recording banner on ${who}: ${delay} ms after the REST call`);
    assert.ok(delay >= 0 && delay < BANNER_BOUND_MS, `${who}: banner after ${delay} ms`);
    assert.equal(await page.locator('#capture-text').textContent(), 'This meeting is being recorded.');
    assert.equal(await page.locator('#capture-banner').getAttribute('role'), 'alert');
  }
  await screenshot(guest, '05-guest-lobby-recording-banner');
  await screenshot(organizer, '06-organizer-recording-banner');

  // Admit with the keyboard.
  await request.getByRole('button', { name: 'Admit Bob (External)' }).focus();
  await organizer.keyboard.press('Enter');
  await guest.locator('#screen-meeting').waitFor({ state: 'visible', timeout: 5000 });
  assert.ok(await guest.locator('#capture-banner').isVisible(), 'the banner stays on after admission');

  // Roster on both pages: roles and the external suffix.
  for (const page of [organizer, guest]) {
    await rosterEntry(page, 'Bob (External)').getByText('Attendee', { exact: true }).waitFor();
    await rosterEntry(page, 'Ada Organizer').getByText('Organizer', { exact: true }).waitFor();
  }
  await screenshot(guest, '07-guest-admitted-roster');

  // Mute shows in the other person's roster.
  await guest.getByRole('button', { name: 'Mute', exact: true }).click();
  await rosterEntry(organizer, 'Bob (External)').getByText('Muted', { exact: true }).waitFor({ timeout: 3000 });
  await guest.locator('#toggle-mute[aria-pressed="true"]').waitFor({ timeout: 3000 });
  await screenshot(organizer, '08-organizer-sees-guest-muted');

  // Hand raise and screen share show for the others.
  await guest.getByRole('button', { name: 'Raise hand' }).click();
  await rosterEntry(organizer, 'Bob (External)').getByText('Hand raised', { exact: true }).waitFor({ timeout: 3000 });
  await organizer.getByRole('button', { name: 'Share screen' }).click();
  await rosterEntry(guest, 'Ada Organizer').getByText('Sharing screen', { exact: true }).waitFor({ timeout: 3000 });
  await guest.locator('#grid figure.tile.sharing').waitFor({ timeout: 3000 });
  await organizer.locator('#toggle-share[aria-pressed="true"]').waitFor({ timeout: 3000 });
  assert.ok(!(await organizer.locator('#meeting-error').isVisible()), await organizer.locator('#meeting-error').textContent());
  await screenshot(guest, '08b-guest-sees-hand-and-share');
  await organizer.getByRole('button', { name: 'Stop sharing' }).click();
  await rosterEntry(guest, 'Ada Organizer').getByText('Sharing screen', { exact: true }).waitFor({ state: 'detached', timeout: 3000 });

  // A late joiner (directory user of the same tenant: presenter, no lobby) by meeting id + passcode
  // sees the banner at once.
  const meeting = await server.signed('GET', `/meetings/${meetingId}`);
  assert.equal(meeting.status, 200);
  await presenter.goto(`${server.base}/`);
  await presenter.getByLabel('Directory user (development sign-in)').check();
  await presenter.getByLabel('Your name').fill('Cy Presenter');
  await presenter.getByLabel('Meeting ID').fill(meeting.body.meetingCode);
  await presenter.getByLabel('Passcode').fill(meeting.body.passcode);
  await joinAndWaitFor(presenter, 'meeting');
  assert.ok(await presenter.locator('#capture-banner').isVisible(), 'a late joiner sees the banner');
  await rosterEntry(presenter, 'Cy Presenter (you)').getByText('Presenter', { exact: true }).waitFor();
  await rosterEntry(organizer, 'Cy Presenter').waitFor();

  // Recording stops by REST: the banner disappears everywhere within 1 s.
  const stoppedAt = Date.now();
  const stop = await server.signed('POST', `/meetings/${meetingId}/recording:stop`);
  assert.equal(stop.status, 200, JSON.stringify(stop.body));
  for (const [who, page] of [['organizer', organizer], ['guest', guest], ['late joiner', presenter]]) {
    const hiddenAt = await bannerChangedAt(page, false);
    const delay = hiddenAt - stoppedAt;
    console.log(`recording banner gone on ${who}: ${delay} ms after the REST call`);
    assert.ok(delay >= 0 && delay < BANNER_BOUND_MS, `${who}: banner gone after ${delay} ms`);
  }
  await screenshot(organizer, '09-recording-stopped');

  // Transcription uses the same notice.
  const tr = await server.signed('POST', `/meetings/${meetingId}/transcription:start`);
  assert.equal(tr.status, 200);
  await guest.locator('#capture-banner:not([hidden])').waitFor({ timeout: 3000 });
  assert.equal(await guest.locator('#capture-text').textContent(), 'This meeting is being transcribed.');

  // Phone-size window: no sideways scrolling, controls reachable.
  await guest.setViewportSize({ width: 390, height: 844 });
  const overflow = await guest.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
  assert.ok(await guest.getByRole('button', { name: 'Leave' }).isVisible());
  await screenshot(guest, '10-guest-phone-layout');

  // Leaving ends the session and says so.
  await guest.getByRole('button', { name: 'Leave' }).click();
  await guest.locator('#screen-ended').waitFor({ state: 'visible' });
  await rosterEntry(organizer, 'Bob (External)').waitFor({ state: 'detached', timeout: 3000 });

  for (const page of [organizer, guest, presenter]) await page.context().close();
});

test('bad input gets a clear error on the page (phone-size window)', async () => {
  const page = await newUserPage(browser, { width: 390, height: 844 });
  await page.goto(`${server.base}/`);
  await page.getByText(/Development mode/).waitFor();
  await page.getByLabel('Your name').fill('Eve');
  await page.getByLabel('Meeting ID').fill('123456789012');
  await page.getByLabel('Passcode').fill('nope');
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  const error = page.locator('#setup-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.textContent(), /^[A-Za-z]+: /, 'the error shows the server code and message');
  assert.ok(await page.locator('#screen-setup').isVisible(), 'the page stays on the join form');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the join form is ${overflow}px wider than a phone screen`);
  await screenshot(page, '11-join-error');
  await page.context().close();
});

test('a guest who is denied is told so', async () => {
  const organizer = await newUserPage(browser);
  const guest = await newUserPage(browser);
  const link = await organizerCreatesMeeting(organizer, 'Ada Organizer', 'Deny test');
  await joinAndWaitFor(organizer, 'meeting');
  await guestOpensLink(guest, link, 'Mallory');
  await joinAndWaitFor(guest, 'lobby');
  await organizer.getByRole('button', { name: 'Deny Mallory (External)' }).click();
  await guest.locator('#screen-ended').waitFor({ state: 'visible', timeout: 5000 });
  assert.match(await guest.locator('#ended-reason').textContent(), /not admitted/);
  await organizer.locator('#lobby-panel').waitFor({ state: 'hidden' });
  assert.equal(await rosterEntry(organizer, 'Mallory (External)').count(), 0);
  await screenshot(guest, '12-guest-denied');
  for (const page of [organizer, guest]) await page.context().close();
});

test('a dropped connection resumes within the grace period', async () => {
  const organizer = await newUserPage(browser);
  const guest = await newUserPage(browser);
  const link = await organizerCreatesMeeting(organizer, 'Ada Organizer', 'Resume test');
  await joinAndWaitFor(organizer, 'meeting');
  await guestOpensLink(guest, link, 'Bob');
  await joinAndWaitFor(guest, 'lobby');
  await organizer.getByRole('button', { name: 'Admit Bob (External)' }).click();
  await guest.locator('#screen-meeting').waitFor({ state: 'visible' });
  await guest.getByRole('button', { name: 'Raise hand' }).click();
  await rosterEntry(organizer, 'Bob (External)').getByText('Hand raised', { exact: true }).waitFor();

  // The guest's socket dies without `leave`.
  await guest.evaluate(() => window.palaverClient.signaling.ws.close());
  await rosterEntry(organizer, 'Bob (External)').getByText('Reconnecting…').waitFor({ state: 'detached', timeout: 10_000 });
  await guest.locator('#connection-status').waitFor({ state: 'hidden', timeout: 10_000 });
  assert.ok(await guest.locator('#screen-meeting').isVisible(), 'the guest is still in the meeting');
  await waitFor(() => guest.evaluate(() => window.palaverClient.resumed === 1), { what: 'the resume' });
  // Same participant, same state: the raised hand survived, and commands work on the new socket.
  await rosterEntry(guest, 'Bob (External) (you)').getByText('Hand raised', { exact: true }).waitFor();
  await guest.getByRole('button', { name: 'Mute', exact: true }).click();
  await rosterEntry(organizer, 'Bob (External)').getByText('Muted', { exact: true }).waitFor({ timeout: 3000 });
  assert.equal(await rosterEntry(organizer, 'Bob (External)').count(), 1);
  await screenshot(guest, '12b-guest-resumed');
  for (const page of [organizer, guest]) await page.context().close();
});

test('both users see and hear each other (getStats)', async (t) => {
  const organizer = await newUserPage(browser);
  const guest = await newUserPage(browser);
  const link = await organizerCreatesMeeting(organizer, 'Ada Organizer', 'Media test');
  await joinAndWaitFor(organizer, 'meeting');
  await guestOpensLink(guest, link, 'Bob');
  await joinAndWaitFor(guest, 'lobby');
  await organizer.getByRole('button', { name: 'Admit Bob (External)' }).click();
  await guest.locator('#screen-meeting').waitFor({ state: 'visible' });

  const status = guest.locator('#media-status');
  const unavailable = await waitFor(
    async () => {
      const text = (await status.isVisible()) ? await status.textContent() : '';
      if (/unavailable on this server/.test(text)) return 'unavailable';
      const s = await guest.evaluate(() => window.palaverClient.media && window.palaverClient.media.stats());
      return s && s.connectionState === 'connected' ? 'connected' : null;
    },
    { timeoutMs: 15_000, what: 'the media connection' },
  );
  if (unavailable === 'unavailable') {
    await screenshot(guest, '13-media-unavailable');
    if (process.env.PALAVER_ALLOW_NO_MEDIA !== '1') assert.fail('the server answered MediaUnavailable');
    t.skip('the server has no media plane (MediaUnavailable) and PALAVER_ALLOW_NO_MEDIA=1 is set');
    return;
  }
  for (const [who, page] of [['organizer', organizer], ['guest', guest]]) {
    const stats = await waitFor(
      async () => {
        const s = await page.evaluate(() => window.palaverClient.media.stats());
        return s.videoIn.framesDecoded > 0 && s.audioIn.packets > 0 && s.audioIn.energy > 0 ? s : null;
      },
      { timeoutMs: 20_000, what: `${who} receiving audio and video` },
    );
    console.log(`${who} inbound: ${JSON.stringify(stats)}`);
  }
  // The server's RTCP reaches Chromium: its RRs (LSR/DLSR echo) give the publisher a video
  // round-trip time (remote-inbound-rtp), its SRs describe the streams received
  // (remote-outbound-rtp).
  for (const [who, page] of [['organizer', organizer], ['guest', guest]]) {
    const rtcp = await waitFor(
      async () => {
        const seen = await page.evaluate(async () => {
          const out = { rttSeconds: null, senderReports: 0 };
          (await window.palaverClient.media.pc.getStats()).forEach((s) => {
            if (s.type === 'remote-inbound-rtp' && s.kind === 'video' && typeof s.roundTripTime === 'number') {
              out.rttSeconds = s.roundTripTime;
            }
            if (s.type === 'remote-outbound-rtp') out.senderReports += s.reportsSent || 0;
          });
          return out;
        });
        return seen.rttSeconds !== null && seen.senderReports > 0 ? seen : null;
      },
      { timeoutMs: 15_000, what: `${who} getting the server's receiver and sender reports` },
    );
    console.log(`${who} RTCP: ${JSON.stringify(rtcp)}`);
  }
  await screenshot(organizer, '14-media-organizer');
  await screenshot(guest, '15-media-guest');
  for (const page of [organizer, guest]) await page.context().close();
});

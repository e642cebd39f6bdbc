// The web client's meeting chat against the real binary in headless Chromium: a message
// typed on one page appears on the other within 1 s with the sender's name (` (External)`
// for the guest), typing indicator, read receipts, the unread count while the pane is
// closed, history for a late joiner on a phone-size window, and safe rendering: a message
// carrying `<img src=x onerror=…>` (as text and as html) shows as text, creates no element
// and never runs its handler.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newUserPage, screenshot, serverAndBrowserPerFile } from './harness.mjs';

const CHAT_BOUND_MS = 1000;
const INJECTION = '<img src=x onerror="window.__chatInjected = 1">';

const env = serverAndBrowserPerFile();

/** Record on `page` when a chat message containing `text` first appears (ms epoch, page clock = this machine's). */
async function watchFor(page, text) {
  await page.evaluate((wanted) => {
    window.__chatSeen = window.__chatSeen || {};
    const list = document.getElementById('chat-messages');
    const check = () => {
      for (const li of list.querySelectorAll('.chat-text')) {
        if (li.textContent.includes(wanted) && !window.__chatSeen[wanted]) window.__chatSeen[wanted] = Date.now();
      }
    };
    new MutationObserver(check).observe(list, { childList: true, subtree: true, characterData: true });
    check();
  }, text);
}

async function seenAt(page, text) {
  const handle = await page.waitForFunction((wanted) => window.__chatSeen && window.__chatSeen[wanted], text, {
    timeout: 3000,
  });
  return handle.jsonValue();
}

/** The chat message on `page` whose text contains `text`. */
const messageOn = (page, text) => page.locator('#chat-messages li.chat-message').filter({ hasText: text });

/** `text` typed on `from` must show on `to` within 1 s, under `senderName`. */
async function assertShownWithin(from, to, text, senderName) {
  await watchFor(to, text);
  const sentAt = await sendFrom(from, text);
  const delay = (await seenAt(to, text)) - sentAt;
  console.log(`chat message "${text}" shown on the other page after ${delay} ms`);
  assert.ok(delay >= 0 && delay < CHAT_BOUND_MS, `"${text}" shown after ${delay} ms`);
  assert.equal(await messageOn(to, text).locator('.chat-sender').textContent(), senderName);
}

async function sendFrom(page, text) {
  await page.locator('#chat-input').fill(text);
  const sentAt = Date.now();
  await page.locator('#chat-input').press('Enter');
  return sentAt;
}

test('meeting chat: live messages within 1 s with names, typing, receipts, unread count, history and no HTML injection', async () => {
  const organizer = await newUserPage(env.browser);
  const guest = await newUserPage(env.browser);

  // The organizer creates a meeting and joins; the guest joins by the link and is admitted.
  await organizer.goto(`${env.server.base}/`);
  await organizer.getByText(/Development mode/).waitFor();
  await organizer.getByLabel('Directory user (development sign-in)').check();
  await organizer.getByLabel('Your name').fill('Ada Chat');
  await organizer.getByLabel('Subject of a new meeting').fill('Chat test');
  await organizer.getByRole('button', { name: 'Create meeting' }).click();
  await organizer.locator('#created-meeting').waitFor();
  const link = await organizer.inputValue('#meeting-link');
  await organizer.getByRole('button', { name: 'Join', exact: true }).click();
  await organizer.locator('#chat-panel').waitFor({ state: 'visible', timeout: 10_000 });

  await guest.goto(link);
  await guest.getByLabel('Your name').fill('Bob');
  await guest.getByRole('button', { name: 'Join', exact: true }).click();
  await guest.locator('#screen-lobby').waitFor({ state: 'visible', timeout: 10_000 });
  assert.ok(await guest.locator('#chat-panel').isHidden(), 'no chat in the lobby');
  await organizer.getByRole('button', { name: 'Admit Bob (External)' }).click();
  await guest.locator('#chat-panel').waitFor({ state: 'visible', timeout: 10_000 });

  // Typing shows on the other page.
  await guest.locator('#chat-input').fill('Hel');
  await organizer.locator('#chat-typing', { hasText: 'Bob (External) is typing…' }).waitFor({ timeout: 3000 });

  // The guest's message reaches the organizer within 1 s, with the guest's name.
  const hello = 'Hello from Bob';
  await assertShownWithin(guest, organizer, hello, 'Bob (External)');
  assert.equal(await organizer.locator('#chat-typing').textContent(), '', 'a message clears its sender’s typing line');
  assert.equal(await messageOn(guest, hello).locator('.chat-sender').textContent(), 'You');

  // And back: the organizer's name on the guest's page.
  const reply = 'Welcome, Bob';
  await assertShownWithin(organizer, guest, reply, 'Ada Chat');

  // Read receipts: the open pane reads the message, its sender sees it.
  await messageOn(guest, hello).locator('.chat-status', { hasText: 'Seen by Ada Chat' }).waitFor({ timeout: 3000 });
  await messageOn(organizer, reply).locator('.chat-status', { hasText: 'Seen by Bob (External)' }).waitFor({ timeout: 3000 });
  await screenshot(guest, 'chat-01-guest');

  // HTML injection: as a text message from the page, and as an `html` message over REST.
  await sendFrom(organizer, `look ${INJECTION}`);
  await organizer.evaluate(async (content) => {
    const { token } = window.palaverClient.identity;
    const threadId = window.palaverClient.state.snapshot.threadId;
    const resp = await fetch(`/chat/threads/${encodeURIComponent(threadId)}/messages?api-version=2024-03-07`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ content: `<b>bold</b> ${content}`, type: 'html', senderDisplayName: 'Ada Chat' }),
    });
    if (resp.status !== 201) throw new Error(`html message: ${resp.status}`);
  }, INJECTION);
  const asText = messageOn(guest, 'look <img src=x');
  await asText.waitFor({ timeout: 3000 });
  assert.equal(await asText.locator('.chat-text').textContent(), `look ${INJECTION}`);
  const asHtml = messageOn(guest, 'bold');
  await asHtml.waitFor({ timeout: 3000 });
  assert.ok((await asHtml.locator('.chat-text').textContent()).startsWith('bold'), 'html is shown as its text');
  for (const page of [guest, organizer]) {
    assert.equal(await page.locator('#chat-messages img, #chat-messages b').count(), 0, 'no element from a message');
    await page.waitForTimeout(200);
    assert.equal(await page.evaluate(() => window.__chatInjected), undefined, 'the onerror handler never ran');
  }

  // Unread count while the pane is closed; opening it clears the count.
  await guest.getByRole('button', { name: /^Chat/ }).click();
  assert.ok(await guest.locator('#chat-body').isHidden());
  await sendFrom(organizer, 'first while closed');
  await sendFrom(organizer, 'second while closed');
  await guest.locator('#chat-unread:not([hidden])', { hasText: '2' }).waitFor({ timeout: 3000 });
  assert.equal(await guest.locator('#chat-toggle').getAttribute('aria-label'), 'Chat, 2 unread');
  await screenshot(guest, 'chat-02-unread');
  await guest.getByRole('button', { name: 'Chat, 2 unread' }).click();
  await guest.locator('#chat-unread').waitFor({ state: 'hidden' });

  // A late joiner (directory user, no lobby) on a phone: the history is there, nothing sideways.
  const late = await newUserPage(env.browser, { width: 390, height: 844 });
  await late.goto(link);
  await late.getByLabel('Directory user (development sign-in)').check();
  await late.getByLabel('Your name').fill('Cy Late');
  await late.getByRole('button', { name: 'Join', exact: true }).click();
  await late.locator('#chat-panel').waitFor({ state: 'visible', timeout: 10_000 });
  if (await late.locator('#chat-body').isHidden()) await late.getByRole('button', { name: /^Chat/ }).click();
  await messageOn(late, hello).waitFor({ timeout: 3000 });
  assert.equal(await messageOn(late, hello).locator('.chat-sender').textContent(), 'Bob (External)');
  assert.equal(await late.locator('#chat-unread').isHidden(), true, 'history is not unread');
  assert.equal(await late.locator('#chat-messages img').count(), 0);
  const overflow = await late.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
  await late.locator('#chat-input').fill('Hi from a phone');
  await late.locator('#chat-input').press('Enter');
  await messageOn(organizer, 'Hi from a phone').locator('.chat-sender', { hasText: 'Cy Late' }).waitFor({ timeout: 3000 });
  await screenshot(late, 'chat-03-phone');
});

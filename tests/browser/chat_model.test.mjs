// Unit tests (Node, no browser) of the chat pane's pure helpers in web/app/chat.js: the
// ` (External)` suffix and how message content becomes the text that is shown.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chatName, isExternal, messageText } from '../../web/app/chat.js';

test('external senders get the (External) suffix once, directory users none', () => {
  assert.equal(isExternal('8:acs:res_u1'), true);
  assert.equal(isExternal('8:orgid:0a000000-0000-4000-8000-000000000001'), false);
  assert.equal(chatName('Bob', '8:acs:res_u1'), 'Bob (External)');
  assert.equal(chatName('Bob (External)', '8:acs:res_u1'), 'Bob (External)');
  assert.equal(chatName('Ada', '8:orgid:0a000000-0000-4000-8000-000000000001'), 'Ada');
  assert.equal(chatName('  ', '8:orgid:x'), 'Someone');
});

test('text is shown as is; html goes through the text reducer; nothing is markup', () => {
  const reducer = (html) => `text-of(${html})`;
  assert.equal(messageText('text', '<img src=x onerror=alert(1)>', reducer), '<img src=x onerror=alert(1)>');
  assert.equal(messageText('html', '<b>hi</b>', reducer), 'text-of(<b>hi</b>)');
  assert.equal(messageText('text', null, reducer), '');
});

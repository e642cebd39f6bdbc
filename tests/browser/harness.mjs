// Test harness: starts the real palaver binary on 127.0.0.1 with a free port and a
// temporary data dir, launches Debian Chromium through playwright-core with fake camera and
// microphone, signs server-API REST calls (HMAC, like the SDKs), and saves screenshots.

import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const ARTIFACTS = process.env.PALAVER_ARTIFACTS || path.join(REPO, 'tests/artifacts/browser');

export function binaryPath() {
  if (process.env.PALAVER_BIN) return process.env.PALAVER_BIN;
  const target = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');
  return path.join(target, 'debug/palaver');
}

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** Start palaver; resolves once it prints `PALAVER_READY <base_url>`. */
export async function startServer() {
  const binary = binaryPath();
  if (!fs.existsSync(binary)) throw new Error(`palaver binary not found at ${binary} (build it first)`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'palaver-browser-'));
  const log = fs.openSync(path.join(dataDir, 'palaver.log'), 'a');
  const proc = spawn(binary, ['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--log-level', 'warn', '--dev-sign-in', 'run'], {
    stdio: ['ignore', 'pipe', log],
  });
  const info = {};
  const lines = readline.createInterface({ input: proc.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('palaver did not become ready within 30 s')), 30_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`palaver exited early (${code}); see ${dataDir}/palaver.log`));
    });
    lines.on('line', (line) => {
      const m = /^(PALAVER_[A-Z_]+) (.*)$/.exec(line);
      if (!m) return;
      info[m[1]] = m[2];
      if (m[1] === 'PALAVER_READY') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const base = info.PALAVER_READY.replace(/\/$/, '');
  const accessKey = /accesskey=([^;]+)/.exec(info.PALAVER_CONNECTION_STRING)[1];
  const ca = fs.readFileSync(info.PALAVER_CA_FILE);
  return {
    base,
    dataDir,
    /** An HMAC-signed server-API request; resolves `{status, body}`. */
    signed: (method, pathAndQuery, body = '') => signedRequest(base, accessKey, ca, method, pathAndQuery, body),
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function signedRequest(base, accessKey, ca, method, pathAndQuery, body) {
  const url = new URL(pathAndQuery, base);
  const host = url.host;
  const date = new Date().toUTCString();
  const hash = createHash('sha256').update(body).digest('base64');
  const toSign = `${method}\n${pathAndQuery}\n${date};${host};${hash}`;
  const signature = createHmac('sha256', Buffer.from(accessKey, 'base64')).update(toSign).digest('base64');
  const headers = {
    host,
    'x-ms-date': date,
    'x-ms-content-sha256': hash,
    authorization: `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=${signature}`,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, ca }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** A fresh browser profile (separate cookies/storage: a separate user). */
export async function newUserPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') console.error(`[console] ${msg.text()}`);
  });
  return page;
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The roster entry of `name` (exact text of its name) on `page`. */
export function rosterEntry(page, name) {
  return page.locator('#roster li.person').filter({ has: page.locator('.name', { hasText: name }) });
}

export async function waitFor(predicate, { timeoutMs = 10_000, intervalMs = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Start a server and a browser before a test file's tests and stop them after; the
 * returned object's `server` and `browser` are set once started. */
export function serverAndBrowserPerFile() {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer();
    env.browser = await launchBrowser();
  });
  after(async () => {
    if (env.browser) await env.browser.close();
    if (env.server) await env.server.stop();
  });
  return env;
}

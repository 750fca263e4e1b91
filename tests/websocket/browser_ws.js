#!/usr/bin/env node
// Headless Chromium against a headrace server over plain HTTP/1.1: loads a page, POSTs with
// fetch(), then runs a WebSocket echo (text, 70,000-byte binary, clean close) and prints one
// JSON line describing what the browser saw. The test reads that line and decides.
//   NODE_PATH=<node_modules with playwright-core> CHROMIUM=/usr/bin/chromium \
//     node browser_ws.js http://127.0.0.1:PORT/ ws://127.0.0.1:PORT/
const fs = require('fs');
const os = require('os');
const path = require('path');
const { launchPersistent } = require(path.join(__dirname, '..', 'browser.js'));

const WAIT_MS = 10000;

const launch = (profile) => launchPersistent(profile);

async function pageAndFetch(page, pageUrl) {
  const response = await page.goto(pageUrl);
  const fetched = await page.evaluate(async (url) => {
    const reply = await fetch(url, { method: 'POST', body: 'posted-from-chromium' });
    return { status: reply.status, body: await reply.text() };
  }, pageUrl);
  return { pageStatus: response.status(), fetchStatus: fetched.status, fetchBody: fetched.body };
}

// Runs inside the page: every wait is bounded, so a silent server shows up as a false field.
async function echoInPage({ url, waitMs }) {
  const socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  const within = (promise) => Promise.race([
    promise, new Promise((resolve) => setTimeout(() => resolve(null), waitMs))]);
  const opened = await within(new Promise((resolve) => {
    socket.onopen = () => resolve(true);
    socket.onerror = () => resolve(false);
  }));
  if (!opened) return { wsOpened: false };
  const nextMessage = () => within(new Promise((resolve) => {
    socket.onmessage = (event) => resolve(event.data);
  }));
  const text = 'grüße über websocket ✓ ' + 'y'.repeat(200);
  socket.send(text);
  const textEcho = await nextMessage();
  const payload = new Uint8Array(70000).map((_, index) => (index * 7) % 256);
  socket.send(payload);
  const binaryEcho = await nextMessage();
  const binaryOk = binaryEcho instanceof ArrayBuffer && binaryEcho.byteLength === payload.length &&
    new Uint8Array(binaryEcho).every((value, index) => value === payload[index]);
  const closed = within(new Promise((resolve) => {
    socket.onclose = (event) => resolve({ code: event.code, wasClean: event.wasClean });
  }));
  socket.close(1000, 'done');
  const closeEvent = await closed;
  return {
    wsOpened: true,
    wsExtensions: socket.extensions,
    wsTextOk: textEcho === text,
    wsBinaryOk: binaryOk,
    wsCloseCode: closeEvent && closeEvent.code,
    wsCloseClean: Boolean(closeEvent && closeEvent.wasClean),
  };
}

(async () => {
  const [pageUrl, socketUrl] = process.argv.slice(2);
  if (!pageUrl || !socketUrl) {
    console.error('usage: browser_ws.js PAGE_URL WEBSOCKET_URL');
    process.exit(2);
  }
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'headrace-ws-chromium-'));
  const report = {};
  let context = null;
  try {
    context = await launch(profile);
    const page = context.pages()[0] || await context.newPage();
    Object.assign(report, await pageAndFetch(page, pageUrl));
    Object.assign(report, await page.evaluate(echoInPage, { url: socketUrl, waitMs: WAIT_MS }));
  } catch (error) {
    report.error = String(error);
  } finally {
    if (context !== null) await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(report));
})();

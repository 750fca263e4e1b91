#!/usr/bin/env node
// Headless Chromium against a headrace TLS server: prints one JSON line with the protocol
// negotiated for the page and for a fetch(), and the result of a WebSocket echo.
//   NODE_PATH=<node_modules with playwright-core> CHROMIUM=/usr/bin/chromium \
//     node browser_h2.js https://localhost:PORT/
const fs = require('fs');
const os = require('os');
const path = require('path');
const { launchPersistent } = require(path.join(__dirname, '..', 'browser.js'));

(async () => {
  const base = process.argv[2];
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'headrace-chromium-'));
  const context = await launchPersistent(profile, {
    ignoreHTTPSErrors: true, args: ['--ignore-certificate-errors'],
  });
  const report = {};
  try {
    const page = context.pages()[0] || await context.newPage();
    const response = await page.goto(base);
    report.pageStatus = response.status();
    report.pageProtocol = await page.evaluate(
      () => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    Object.assign(report, await page.evaluate(async () => {
      const url = new URL('/data', location.href).href;
      const r = await fetch(url, { method: 'POST', body: 'ping-body' });
      const body = await r.text();
      const entry = performance.getEntriesByType('resource').filter((e) => e.name === url).pop();
      return { fetchStatus: r.status, fetchBody: body, fetchProtocol: entry && entry.nextHopProtocol };
    }));
    Object.assign(report, await page.evaluate(async () => {
      const ws = new WebSocket(new URL('/ws', location.href).href.replace('https', 'wss'));
      ws.binaryType = 'arraybuffer';
      const opened = await new Promise((resolve) => {
        ws.onopen = () => resolve(true);
        ws.onerror = () => resolve(false);
        setTimeout(() => resolve(false), 5000);
      });
      if (!opened) return { wsOpened: false };
      const next = () => new Promise((resolve) => {
        ws.onmessage = (event) => resolve(event.data);
        setTimeout(() => resolve(null), 5000);
      });
      const text = 'héllo over h2 ✓ ' + 'x'.repeat(300);
      ws.send(text);
      const textEcho = await next();
      const bytes = new Uint8Array(70000).map((_, i) => i % 251);
      ws.send(bytes);
      const binaryEcho = await next();
      const binaryOk = binaryEcho !== null && binaryEcho.byteLength === bytes.length &&
        new Uint8Array(binaryEcho).every((value, i) => value === bytes[i]);
      ws.close(1000);
      return { wsOpened: true, wsTextOk: textEcho === text, wsBinaryOk: binaryOk,
               wsExtensions: ws.extensions };
    }));
  } catch (error) {
    report.error = String(error);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(report));
})();

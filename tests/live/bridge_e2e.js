#!/usr/bin/env node
// The JavaScript client (headrace/static/headrace/js/websocketbridge.js) in headless Chromium.
//
//   NODE_PATH=<.test-tools/node_modules> CHROMIUM=/usr/bin/chromium node bridge_e2e.js BASE_URL PROFILE_DIR
//
// Talks to the pytest side over stdin/stdout lines: prints "STOP" and waits for "STOPPED" (the server is down),
// prints "START" and waits for "STARTED" (a new server process is up on the same port). The last stdout line is
// ONE JSON object with what the page observed; pytest asserts on it. Every wait is bounded.
const path = require('path');
const { launchPersistent, asker } = require(path.join(__dirname, '..', 'browser.js'));

const WAIT = { timeout: 20000 };
const ask = asker();

async function openBridge(page, base, mode) {
  await page.goto(`${base}/bridge/${mode}/`, WAIT);
  await page.waitForSelector(`body[data-ready="${mode}"]`, { ...WAIT, state: "attached" });
  await page.evaluate(() => {
    window.seen = { echo: [], cards: [], other: [], events: [], delays: [] };
    const bridge = new window.Bridge({ minDelay: 100, maxDelay: 1000 });
    window.bridge = bridge;
    for (const name of ['open', 'close', 'reconnect']) {
      bridge.addEventListener(name, () => window.seen.events.push(name));
    }
    bridge.addEventListener('reconnecting', (info) => window.seen.delays.push(info.delay));
    bridge.listen((message, stream) => window.seen.other.push({ message, stream }));
    bridge.demultiplex('echo', (payload, stream) => window.seen.echo.push({ payload, stream }));
    bridge.demultiplex('cards', (payload) => window.seen.cards.push(payload));
    bridge.connect('/mux/browser/');
  });
  await page.waitForFunction(() => window.seen.events.includes('open'), null, WAIT);
}

const count = (page, key) => page.evaluate((k) => window.seen[k].length, key);
const waitCount = (page, key, n) => page.waitForFunction(([k, m]) => window.seen[k].length >= m, [key, n], WAIT);

async function main() {
  const [base, profile] = process.argv.slice(2);
  const report = {};
  const context = await launchPersistent(profile);
  try {
    const page = await context.newPage();
    await openBridge(page, base, 'classic');
    report.urls = await page.evaluate(() => [
      window.Bridge.resolveUrl(undefined, location),
      window.Bridge.resolveUrl('/ws/x/', location),
      window.Bridge.resolveUrl('/ws/', { protocol: 'https:', host: 'example.com' }),
      window.Bridge.resolveUrl('ws://elsewhere:1/y', location),
    ]);
    await page.evaluate(() => window.bridge.stream('echo').send({ n: 1 }));
    await waitCount(page, 'echo', 1);
    await page.evaluate(() => window.bridge.stream('cards').send({
      action: 'create', data: { board: 'browser', title: 'from chromium' }, request_id: 'r1' }));
    await waitCount(page, 'cards', 2);

    await ask('STOP');
    await page.waitForFunction(() => window.seen.events.includes('close'), null, WAIT);
    await page.evaluate(() => {
      window.bridge.stream('echo').send({ queued: 1 });
      window.bridge.stream('echo').send({ queued: 2 });
    });
    report.queuedWhileDown = await page.evaluate(() => window.bridge.queue.length);
    await ask('START');
    await page.waitForFunction(() => window.seen.events.includes('reconnect'), null, WAIT);
    await waitCount(page, 'echo', 3);
    Object.assign(report, await page.evaluate(() => window.seen));
    report.queueAfter = await page.evaluate(() => window.bridge.queue.length);

    const modulePage = await context.newPage();
    await openBridge(modulePage, base, 'module');
    await modulePage.evaluate(() => window.bridge.stream('echo').send({ module: true }));
    await waitCount(modulePage, 'echo', 1);
    report.moduleEcho = await modulePage.evaluate(() => window.seen.echo[0]);
    report.echoCountClassic = await count(page, 'echo');
    report.refusals = await page.evaluate(() => {
      const unconnected = new window.Bridge({ maxQueue: 2 });
      const caught = (fn) => { try { fn(); return null; } catch (error) { return error.message; } };
      unconnected.send({ one: 1 });
      unconnected.send({ two: 2 });
      return {
        queueFull: caught(() => unconnected.send({ three: 3 })),
        unknownEvent: caught(() => unconnected.addEventListener('opened', () => {})),
        queued: unconnected.queue.length,
      };
    });
  } catch (error) {
    report.error = String(error && error.stack || error);
  } finally {
    await context.close();
  }
  console.log(JSON.stringify(report));
  ask.close();
}

main();

#!/usr/bin/env node
// End-to-end run of the chat example in headless Chromium (playwright-core, system chromium).
//
//   NODE_PATH=<.test-tools/node_modules> node chat_e2e.js BASE_URL PASSWORD alice bob carol FOREIGN_URL
//
// FOREIGN_URL is a page on an origin the server must not allow (e.g. http://localhost:<other
// port>/ when ALLOWED_HOSTS is only 127.0.0.1), served by the test.
// alice and bob log in and join room "e2e"; carol joins room "elsewhere"; an anonymous
// visitor joins "e2e". The script drives the pages and prints ONE JSON object with what
// each browser observed; the pytest side asserts on it. Every wait is bounded.
const { chromium } = require('playwright-core');

const WAIT = { timeout: 15000 };
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function login(browser, base, username, password, room) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/accounts/login/?next=/chat/${room}/`, WAIT);
  await page.fill('#id_username', username);
  await page.fill('#id_password', password);
  await Promise.all([page.waitForURL(`**/chat/${room}/`, WAIT), page.click('#login-submit')]);
  await page.waitForSelector('body[data-socket="open"]', WAIT);
  return page;
}

async function anonymous(browser, base, room) {
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${base}/chat/${room}/`, WAIT);
  await page.waitForSelector('body[data-socket="open"]', WAIT);
  return page;
}

async function post(page, text) {
  await page.fill('#chat-message-input', text);
  await page.click('#chat-message-submit');
}

const logLines = (page) => page.$$eval('#chat-log li', (items) => items.map((li) => li.textContent));

async function waitForLine(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#chat-log li')].some((li) => li.textContent === t),
    text, WAIT);
}

async function foreignOriginAttempt(page, foreignUrl, wsUrl) {
  // A page on another origin, in the logged-in user's browser, opens a socket to the chat: the server
  // must refuse it. The page comes from a real loopback server (a page Chromium considers
  // public would be stopped by its own local-network-access checks, proving nothing).
  await page.goto(foreignUrl, WAIT);
  return page.evaluate((url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    let opened = false;
    ws.onopen = () => { opened = true; ws.close(); };
    ws.onclose = (event) => resolve({ opened, code: event.code });
    setTimeout(() => resolve({ opened, code: 'timeout' }), 10000);
  }), wsUrl);
}

(async () => {
  const [base, password, alice, bob, carol, foreignUrl] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: FLAGS,
  });
  const report = {};
  try {
    const pa = await login(browser, base, alice, password, 'e2e');
    const pb = await login(browser, base, bob, password, 'e2e');
    const pc = await login(browser, base, carol, password, 'elsewhere');
    const anon = await anonymous(browser, base, 'e2e');
    report.anonymousHasForm = (await anon.$('#chat-message-input')) !== null;
    report.anonymousLoginHint = (await anon.$('#login-required')) !== null;

    await post(pa, 'hello from alice');
    await waitForLine(pb, `${alice}: hello from alice`);
    await post(pb, 'hi alice');
    await waitForLine(pa, `${bob}: hi alice`);
    await waitForLine(anon, `${bob}: hi alice`);

    // carol's own message arrives after alice's and bob's were delivered: her log shows
    // whether anything from room e2e leaked into room elsewhere.
    await post(pc, 'carol here');
    await waitForLine(pc, `${carol}: carol here`);
    report.carolLog = await logLines(pc);

    // The anonymous visitor has no form; a hand-made frame must be refused by the server.
    await anon.evaluate(() => window.chatSocket.send(JSON.stringify({ message: 'anon spam' })));
    await anon.waitForSelector('#chat-log li.error', WAIT);
    report.anonymousError = await anon.$eval('#chat-log li.error', (li) => li.textContent);
    await post(pa, 'after anon');
    await waitForLine(pb, `${alice}: after anon`);
    report.bobLog = await logLines(pb);

    await pb.reload(WAIT);
    await pb.waitForSelector('body[data-socket="open"]', WAIT);
    report.bobLogAfterReload = await logLines(pb);

    const wsUrl = base.replace(/^http/, 'ws') + '/ws/chat/e2e/';
    const evil = await (pa.context()).newPage();
    report.foreignOrigin = await foreignOriginAttempt(evil, foreignUrl, wsUrl);
    report.sameOriginStillWorks = await pa.evaluate(() => window.chatSocket.readyState === 1);
  } catch (error) {
    report.error = String(error && error.stack || error);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
  process.exit(report.error ? 1 : 0);
})();

#!/usr/bin/env node
// End-to-end run of the chat example in headless Chromium (playwright-core, system chromium).
//
//   NODE_PATH=<.test-tools/node_modules> node chat_e2e.js BASE_URL PASSWORD alice bob carol FOREIGN_URL
//
// FOREIGN_URL is a page on an origin the server must not allow (e.g. http://localhost:<other
// port>/ when ALLOWED_HOSTS is only 127.0.0.1), served by the test.
// alice and bob log in and join room "e2e"; carol joins room "elsewhere"; an anonymous
// visitor joins "e2e". bob's page then loses its socket while alice posts, and comes back: it
// must show exactly the messages it missed, once each. The online lists follow who is there.
// The script drives the pages and prints ONE JSON object with what each browser observed; the
// pytest side asserts on it. Every wait is bounded.
const path = require('path');
const { launch } = require(path.join(__dirname, '..', '..', 'browser.js'));

const WAIT = { timeout: 15000 };

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

const online = (page) => page.$eval('#online-list', (span) => span.textContent);

async function waitForOnline(page, text) {
  await page.waitForFunction(
    (t) => document.getElementById('online-list').textContent === t, text, WAIT);
  return online(page);
}

async function awayAndBack(alice, bob, aliceName) {
  // bob's socket goes away (the bridge is stopped, so it does not come back by itself) while
  // alice posts twice; then bob's page connects again with the position it last saw.
  await bob.evaluate(() => window.chatBridge.close());
  await bob.waitForSelector('body[data-socket="closed"]', WAIT);
  const result = { onlineWhileAway: await waitForOnline(alice, `${aliceName}, 1 anonymous`) };
  await post(alice, 'while bob is away 1');
  await post(alice, 'while bob is away 2');
  await waitForLine(alice, `${aliceName}: while bob is away 2`);
  result.positionsBefore = await bob.evaluate(() => JSON.stringify(window.chatBridge.positions));
  await bob.evaluate(() => {
    document.body.dataset.recovered = '';
    window.chatBridge.connect(window.chatBridge.url);
  });
  await bob.waitForSelector('body[data-recovered="true"]', WAIT);
  await waitForLine(bob, `${aliceName}: while bob is away 2`);
  result.socketUrl = await bob.evaluate(() => window.chatBridge.socket.url);
  return result;
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
  const browser = await launch();
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
    report.onlineForCarol = await waitForOnline(pc, carol);
    report.onlineForAlice = await waitForOnline(pa, `${alice}, ${bob}, 1 anonymous`);

    await anon.evaluate(() => window.chatBridge.send({ message: 'anon spam' }));
    await anon.waitForSelector('#chat-log li.error', WAIT);
    report.anonymousError = await anon.$eval('#chat-log li.error', (li) => li.textContent);
    await post(pa, 'after anon');
    await waitForLine(pb, `${alice}: after anon`);
    report.bobLog = await logLines(pb);

    report.away = await awayAndBack(pa, pb, alice);
    report.bobLogAfterReconnect = await logLines(pb);
    report.onlineAfterReturn = await waitForOnline(pa, `${alice}, ${bob}, 1 anonymous`);

    await pb.reload(WAIT);
    await pb.waitForSelector('body[data-socket="open"]', WAIT);
    report.bobLogAfterReload = await logLines(pb);

    const wsUrl = base.replace(/^http/, 'ws') + '/ws/chat/e2e/';
    const evil = await (pa.context()).newPage();
    report.foreignOrigin = await foreignOriginAttempt(evil, foreignUrl, wsUrl);
    report.sameOriginStillWorks = await pa.evaluate(() => window.chatBridge.socket.readyState === 1);
    await pb.close();
    report.onlineAfterBobLeft = await waitForOnline(pa, `${alice}, 1 anonymous`);
  } catch (error) {
    report.error = String(error && error.stack || error);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
  process.exit(report.error ? 1 : 0);
})();

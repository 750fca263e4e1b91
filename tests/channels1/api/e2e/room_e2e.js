#!/usr/bin/env node
// The Channels-1 example's room page in headless Chromium (playwright-core, system chromium).
//
//   NODE_PATH=<.test-tools/node_modules> node room_e2e.js BASE_URL USER PASSWORD SCREENSHOT
//
// USER logs in through the login form and opens room "e2e"; an anonymous visitor opens the same
// room. Both post; each page must show both lines live (WebSocket through the interface server,
// the workers' consumers, the chat-messages channel and the room group). A reload of the user's
// page must show both lines again from the saved history. Prints ONE JSON object.
const path = require('path');
const { launch } = require(path.join(__dirname, '..', '..', '..', 'browser.js'));

const WAIT = { timeout: 15000 };

const lines = (page, kind) => page.$$eval(`#log li.${kind}`, (items) => items.map((li) => li.textContent));

async function waitForLine(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll('#log li.live')].some((li) => li.textContent === t),
    text, WAIT);
}

async function connected(page) {
  await page.waitForFunction(() => document.getElementById('status').textContent === 'connected',
    null, WAIT);
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

async function main() {
  const [base, user, password, screenshot] = process.argv.slice(2);
  const browser = await launch();
  const report = {};
  try {
    const member = await (await browser.newContext()).newPage();
    await member.goto(`${base}/login/?next=/room/e2e/`, WAIT);
    await member.fill('#username', user);
    await member.fill('#password', password);
    await Promise.all([member.waitForURL('**/room/e2e/', WAIT), member.click('#submit')]);
    await connected(member);
    report.who = await member.textContent('#who');

    const visitor = await (await browser.newContext()).newPage();
    await visitor.goto(`${base}/room/e2e/`, WAIT);
    await connected(visitor);

    await say(member, 'hello from the member');
    await waitForLine(visitor, `${user}: hello from the member`);
    await say(visitor, 'hi back');
    await waitForLine(member, 'anonymous: hi back');
    report.memberLive = await lines(member, 'live');
    report.visitorLive = await lines(visitor, 'live');

    await member.reload(WAIT);
    await connected(member);
    report.memberSaved = await lines(member, 'saved');
    await member.screenshot({ path: screenshot, fullPage: true });
  } catch (error) {
    report.error = String(error && error.stack || error);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main();

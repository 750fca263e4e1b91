#!/usr/bin/env node
// The examples/todo page in two headless Chromium browsers watching one task list.
//
//   NODE_PATH=<.test-tools/node_modules> CHROMIUM=/usr/bin/chromium node todo_e2e.js BASE_URL PROFILE_DIR
//
// Prints "SHELL" and waits for "DONE" on stdin while pytest creates a task from another process (manage.py
// shell). The last stdout line is ONE JSON object with what each browser shows. Every wait is bounded.
const path = require('path');
const { launchPersistent, asker } = require(path.join(__dirname, '..', 'browser.js'));

const WAIT = { timeout: 20000 };
const ask = asker();

const titleSelector = (title) => `xpath=//li[span[@class="title" and text()="${title}"]]`;
const tasks = (page) => page.$$eval('#tasks li', (items) => items.map((li) => ({
  title: li.querySelector('.title').textContent, done: li.querySelector('.toggle').checked })));

async function open(context, base) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', String(e)));
  await page.goto(`${base}/`, WAIT);
  await page.waitForSelector('body[data-socket="open"]', { ...WAIT, state: 'attached' });
  return page;
}

async function main() {
  const [base, profile] = process.argv.slice(2);
  const report = {};
  // Two browser processes, each with its own profile: nothing is shared but the server.
  const launch = (name) => launchPersistent(`${profile}/${name}`);
  const contexts = [await launch('alice'), await launch('bob')];
  try {
    const alice = await open(contexts[0], base);
    const bob = await open(contexts[1], base);
    await alice.fill('#new-title', 'buy milk');
    await alice.click('#add');
    await bob.waitForSelector(titleSelector('buy milk'), WAIT);
    await bob.check(`${titleSelector('buy milk')}//input[@class="toggle"]`);
    await alice.waitForSelector(`${titleSelector('buy milk')}[contains(@class, "done")]`, WAIT);
    report.afterToggle = { alice: await tasks(alice), bob: await tasks(bob) };

    await ask('SHELL');
    await alice.waitForSelector(titleSelector('from the shell'), WAIT);
    await bob.waitForSelector(titleSelector('from the shell'), WAIT);

    await alice.click(`${titleSelector('buy milk')}//button[@class="remove"]`);
    await bob.waitForSelector(titleSelector('buy milk'), { ...WAIT, state: 'detached' });
    await alice.waitForSelector(titleSelector('buy milk'), { ...WAIT, state: 'detached' });
    report.final = { alice: await tasks(alice), bob: await tasks(bob) };
    report.errors = await alice.textContent('#errors');
    const late = await open(contexts[1], base);  // a page opened now shows the stored list
    report.late = await tasks(late);
  } catch (error) {
    report.error = String(error && error.stack || error);
  } finally {
    await Promise.all(contexts.map((context) => context.close()));
  }
  console.log(JSON.stringify(report));
  ask.close();
}

main();

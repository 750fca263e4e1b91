// What every headless-Chromium script of the tests shares (run with NODE_PATH set by
// tests/browser.py's browser_env()): the system Chromium launched by playwright-core with one
// set of flags, and the line protocol a script uses to ask its pytest side to act.
const readline = require('readline');
const { chromium } = require('playwright-core');

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function options(extra) {
  const more = extra || {};
  return {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    ...more,
    args: FLAGS.concat(more.args || []),
  };
}

// A browser (contexts made with browser.newContext()).
const launch = (extra) => chromium.launch(options(extra));

// A browser context with its own profile directory.
const launchPersistent = (profile, extra) => chromium.launchPersistentContext(profile, options(extra));

// ask('WORD') prints WORD on stdout and resolves with the next line the test writes on stdin.
function asker() {
  const lines = readline.createInterface({ input: process.stdin });
  const pending = [];
  lines.on('line', (line) => { const next = pending.shift(); if (next) next(line.trim()); });
  const ask = (word) => new Promise((resolve) => { pending.push(resolve); console.log(word); });
  ask.close = () => lines.close();
  return ask;
}

module.exports = { FLAGS, launch, launchPersistent, asker };

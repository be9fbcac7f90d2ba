// Drives headless Chromium (Debian's, through playwright-core) for dta's browser tests: one
// JSON command per line on stdin, one JSON answer per line on stdout. It opens only the URLs
// it is given (the tests give loopback ones) and Chromium is started with its background
// networking off, so it reaches nothing else.
//
// Commands: {"op": "open", "url"}, {"op": "wait", "selector", "timeout_ms"} (answers the
// milliseconds it took), {"op": "count", "selector"}, {"op": "texts", "selector"},
// {"op": "click", "selector"}, {"op": "screenshot", "path"}, {"op": "frames"} (the longest main-thread tasks since the
// page opened), {"op": "errors"} (errors the page threw or logged), {"op": "close"}.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const executablePath = process.env.DTA_CHROMIUM ?? '/usr/bin/chromium';
let browser = null;
let page = null;
const errors = [];

function answer(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function open(url) {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') {
      errors.push(`console: ${message.text()}`);
    }
  });
  // Long main-thread tasks (50 ms or more), to see whether redraws stutter.
  await page.addInitScript(() => {
    window.dtaLongTasks = [];
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        window.dtaLongTasks.push(entry.duration);
      }
    }).observe({ type: 'longtask', buffered: true });
  });
  await page.goto(url, { waitUntil: 'load' });
  return {};
}

async function run(command) {
  switch (command.op) {
    case 'open':
      return open(command.url);
    case 'wait': {
      const started = performance.now();
      await page.waitForSelector(command.selector, { state: 'attached', timeout: command.timeout_ms ?? 30000 });
      return { ms: performance.now() - started };
    }
    case 'click':
      await page.click(command.selector, { timeout: command.timeout_ms ?? 30000 });
      return {};
    case 'count':
      return { count: await page.locator(command.selector).count() };
    case 'texts':
      return { texts: await page.locator(command.selector).allTextContents() };
    case 'screenshot':
      await page.screenshot({ path: command.path, fullPage: true });
      return {};
    case 'frames': {
      const tasks = await page.evaluate(() => window.dtaLongTasks);
      return { long_tasks: tasks.length, longest_ms: tasks.length ? Math.max(...tasks) : 0 };
    }
    case 'errors':
      return { errors };
    case 'close':
      await browser?.close();
      return {};
    default:
      throw new Error(`unknown op ${command.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) {
    continue;
  }
  let command = null;
  try {
    command = JSON.parse(line);
    answer({ ok: true, ...(await run(command)) });
  } catch (error) {
    answer({ ok: false, error: String(error?.message ?? error) });
  }
  if (command?.op === 'close') {
    break;
  }
}
await browser?.close();

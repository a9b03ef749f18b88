// The lanes web UI in headless Chromium (Debian's `chromium`, driven by playwright-core),
// against a real `lanes serve` over a real git repository this script creates and pushes to.
//
// Run by crates/lanes-cli/tests/forge/ui.rs (`the_ui_in_a_real_browser`), which passes:
//   LANES_BIN    the lanes binary        CHROMIUM     the browser
//   SCREENSHOTS  where to write docs/screenshots/*.png
// Prints `log line delay: …` measurements for BENCHMARKS.md; asserts no timing.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const LANES = process.env.LANES_BIN;
const SHOTS = process.env.SCREENSHOTS;
const PATIENCE = 90_000;

// Every lane but `test` waits only when its marker file is in the commit, so the first run on
// main is quick and each scenario starts the lanes it is about.
const CATALOG = `version = 1
[group.mac]
limit = 1

[lane.test]
class = "required"
paths = ["src/**"]
[[lane.test.step]]
name = "compile"
run = "echo compiling; printf '\\\\033[1;32mcoloured\\\\033[0m and <b>escaped</b>\\\\n'"
[[lane.test.step]]
name = "stamps"
run = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo \\"stamp $(date +%s%3N)\\"; sleep 0.25; done"

[lane.fails]
class = "advisory"
paths = ["fail/**"]
inputs = ["fail/**"]
step = [{ name = "prepare", run = "echo ready" }, { name = "assert", run = "echo checking; echo 'error: the answer was 41'; echo 'last words'; exit 3" }]

[lane.slow]
class = "advisory"
paths = ["slow/**"]
step = [{ name = "sleep", run = "echo started; if test -e slow/go; then seq 1 300; while true; do echo tick; sleep 0.2; done; fi" }]

[lane.hold]
class = "advisory"
paths = ["group/**"]
concurrency = "mac"
scope = "simulator"
cache-mounts = ["devices"]
step = [{ name = "hold", run = "if test -e group/go; then sleep 600; fi" }]

[lane.wait]
class = "advisory"
paths = ["group/**"]
concurrency = "mac"
scope = "simulator"
cache-mounts = ["devices"]
step = [{ name = "wait", run = "if test -e group/go; then sleep 600; fi" }]
`;

let root, work, origin, server, base, token, browser, context;
const gitEnv = {
  ...process.env,
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.invalid',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.invalid',
};

function git(dir, ...args) {
  return execFileSync('git', ['-c', 'init.defaultBranch=main', ...args], { cwd: dir, env: gitEnv, encoding: 'utf8' }).trim();
}

function write(path, text) {
  const full = join(work, path);
  mkdirSync(join(full, '..'), { recursive: true });
  writeFileSync(full, text);
}

/// Commits everything and pushes `branch`, telling the forge as the post-receive hook would.
async function push(branch, message) {
  git(work, 'add', '-A');
  git(work, 'commit', '-q', '--allow-empty', '-m', message);
  git(work, 'push', '-q', '-f', 'origin', `HEAD:refs/heads/${branch}`);
  const r = await fetch(`${base}/api/v1/repos/origin/refs-changed`, { method: 'POST' });
  assert.equal(r.status, 202);
  return git(work, 'rev-parse', 'HEAD');
}

async function api(path, method = 'GET') {
  const r = await fetch(base + path, { method, headers: { Authorization: `Bearer ${token}` } });
  return r.json();
}

async function until(what, check) {
  const deadline = Date.now() + PATIENCE;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'lanes-browser-'));
  // The forge runs steps as an unprivileged user (when root): it must get through to the lane
  // directories under the cache here (mkdtemp makes 0700), wherever TMPDIR points.
  chmodSync(root, 0o755);
  origin = join(root, 'origin.git');
  git(root, 'init', '-q', '--bare', 'origin.git');
  git(root, 'clone', '-q', 'origin.git', 'work');
  work = join(root, 'work');
  git(work, 'checkout', '-q', '-b', 'main');
  write('lanes.toml', CATALOG);
  write('src/lib.txt', 'one\n');
  await pushFirst();
  server = spawn(LANES, ['serve', '--repo', origin, '--data-dir', join(root, 'data'), '--listen', '127.0.0.1:0',
    '--poll-interval', '1s', '--agent-capacity', '4'], {
    env: { ...gitEnv, LANES_CACHE_DIR: join(root, 'cache'), NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lanes serve did not start:\n${stderr}`)), PATIENCE);
    server.stderr.on('data', (chunk) => {
      stderr += chunk;
      const t = /LANES_TOKEN=(\S+)/.exec(stderr);
      const a = /listening on (http:\/\/[^;\s]+)/.exec(stderr);
      if (t) token = t[1];
      if (a && token) { base = a[1]; clearTimeout(timer); resolve(); }
    });
    server.on('exit', (code) => reject(new Error(`lanes serve exited ${code}:\n${stderr}`)));
  });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/`);
  await shot(page, 'sign-in');
  await page.fill('#token', token);
  await page.click('form.sign-in button[type=submit]');
  await page.waitForURL(`${base}/`);
  await until('the first run on main to pass', async () => (await api('/api/v1/repos/origin/branches/main')).status === 'passed');
  await page.close();
});

async function pushFirst() {
  git(work, 'add', '-A');
  git(work, 'commit', '-q', '-m', 'initial');
  git(work, 'push', '-q', 'origin', 'HEAD:refs/heads/main');
}

after(async () => {
  if (browser) await browser.close();
  if (server && server.exitCode === null && server.signalCode === null) {
    // Its agent may still be writing the cache: remove the directory once the server is gone.
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
  if (root) rmSync(root, { recursive: true, force: true });
});

test('a push shows up without a reload, its log streams and the lane turns green', async () => {
  const page = await context.newPage();
  await page.goto(`${base}/origin/branches/main`);
  await page.evaluate(() => { window.notReloaded = true; });
  const before = (await api('/api/v1/repos/origin/runs?limit=1'))[0].number;
  write('src/lib.txt', 'two\n');
  await push('main', 'change src');
  const number = before + 1;
  // The new run appears in the history and the CI card by itself.
  await page.waitForSelector(`#run-${number}`, { timeout: PATIENCE });
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'the page was not reloaded');
  await page.waitForSelector(`.card a[href="/origin/runs/${number}"]`, { timeout: PATIENCE });
  await shot(page, 'branch');

  // The lane's log: follow it live and time each stamp line from `date` to the page.
  const lane = await context.newPage();
  await lane.goto(`${base}/origin/runs/${number}/lanes/test`);
  await lane.evaluate(() => {
    window.delays = [];
    new MutationObserver((records) => {
      const now = Date.now();
      for (const r of records) {
        for (const node of r.addedNodes) {
          if (!(node instanceof HTMLElement)) continue;
          const lines = node.matches('.line') ? [node] : Array.from(node.querySelectorAll('.line'));
          for (const line of lines) {
            const m = /stamp (\d{13})/.exec(line.textContent);
            if (m) window.delays.push(now - Number(m[1]));
          }
        }
      }
    }).observe(document.getElementById('log'), { childList: true, subtree: true });
  });
  await lane.waitForFunction(() => document.title.startsWith('passed'), null, { timeout: PATIENCE });
  await lane.waitForSelector('#live .chip.s-passed', { timeout: PATIENCE });
  const text = await lane.textContent('#log');
  assert.match(text, /stamp \d{13}/);
  assert.match(text, /coloured and <b>escaped<\/b>/, 'markup in a log is text');
  assert.ok(await lane.$('#log span.b.fg2'), 'ANSI bold green is a styled span');
  const favicon = await lane.getAttribute('#favicon', 'href');
  assert.equal(favicon, '/-/favicon/passed.svg');
  const delays = await lane.evaluate(() => window.delays);
  assert.ok(delays.length > 0, 'some stamp lines arrived live');
  const sorted = [...delays].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  console.log(`log line delay: ${sorted.length} lines, min ${sorted[0]} ms, median ${median} ms, max ${sorted[sorted.length - 1]} ms`);
  await shot(lane, 'lane-log');
  await lane.goto(`${base}/origin/runs/${number}`);
  await shot(lane, 'run');
  await lane.setViewportSize({ width: 375, height: 800 });
  await shot(lane, 'run-phone');
  const wide = await lane.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 380, `the run page fits a 375 px screen (${wide} px)`);
  await page.close();
  await lane.close();
});

test('a failing lane shows the failed step and its last lines', async () => {
  write('fail/trigger.txt', 'x\n');
  const head = await push('failing', 'make fails run');
  const run = await until('the failing run', async () => {
    const s = await api('/api/v1/repos/origin/branches/failing');
    const job = s.run && s.run.head === head && s.run.jobs.find((j) => j.lane === 'fails');
    return job && job.status === 'failed' ? s.run : null;
  });
  const page = await context.newPage();
  await page.goto(`${base}/origin/runs/${run.number}/lanes/fails`);
  const failed = page.locator('details.step.st-failed');
  assert.equal(await failed.count(), 1);
  assert.equal(await failed.evaluate((d) => d.open), true, 'the failed step is open');
  assert.match(await failed.locator('summary').textContent(), /step 2\/2 assert.*failed with exit code 3/);
  assert.equal(await page.locator('details.step.st-passed').evaluate((d) => d.open), false, 'a passed step folds');
  const jump = page.locator('a.jump');
  assert.match(await jump.textContent(), /first error in step 2\/2 assert/);
  await jump.click();
  const target = await page.evaluate(() => document.querySelector(':target').textContent);
  assert.match(target, /error: the answer was 41/);
  assert.ok(await page.locator('text=last words').isVisible(), 'the last lines show');
  await shot(page, 'lane-failed');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, 'lane-failed-dark');
  await page.close();
});

test('cancel from the page stops the job', async () => {
  write('slow/go', 'x\n');
  const head = await push('slow', 'a slow lane');
  const run = await until('the slow lane to run', async () => {
    const s = await api('/api/v1/repos/origin/branches/slow');
    const job = s.run && s.run.head === head && s.run.jobs.find((j) => j.lane === 'slow');
    return job && job.status === 'running' ? s.run : null;
  });
  rmSync(join(work, 'slow/go'));
  const page = await context.newPage();
  await page.setViewportSize({ width: 1100, height: 600 });
  await page.goto(`${base}/origin/runs/${run.number}/lanes/slow`);
  // The tail follows the end of the log ...
  const bottom = () => page.evaluate(() => window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48);
  // (Once the log is longer than the window: scrolling up a page that fits is no scroll at all.)
  await until('the log to outgrow the window', () => page.evaluate(() => document.documentElement.scrollHeight > window.innerHeight + 200));
  await until('the page to follow the log', bottom);
  // ... until the reader scrolls up: then it stays put and offers to follow again.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForSelector('#follow:not([hidden])');
  const lines = await page.locator('#log .line').count();
  await until('more ticks', async () => (await page.locator('#log .line').count()) > lines + 3);
  assert.equal(await page.evaluate(() => window.scrollY), 0, 'scrolled up, the page stays where the reader is');
  await page.click('#follow-button');
  await until('the page to follow again', bottom);
  await page.click('button:has-text("Cancel slow")');
  await page.waitForURL(/did=cancel/);
  await page.waitForSelector('li.lane.s-cancelled', { timeout: PATIENCE });
  const job = run.jobs.find((j) => j.lane === 'slow');
  const after = await api(`/api/v1/jobs/${job.id}`);
  assert.equal(after.status, 'cancelled');
  assert.equal(after.reason.kind, 'cancelled-by-user');
  await page.close();
});

test('a lane blocked by a group shows the run that holds it', async () => {
  write('group/go', 'x\n');
  const head = await push('grouped', 'two lanes in one group');
  const run = await until('one lane to wait for the group', async () => {
    const s = await api('/api/v1/repos/origin/branches/grouped');
    return s.run && s.run.head === head && s.run.jobs.some((j) => j.reason && j.reason.kind === 'blocked-by-group') ? s.run : null;
  });
  rmSync(join(work, 'group/go'));
  const page = await context.newPage();
  await page.goto(`${base}/origin/runs/${run.number}`);
  const wait = page.locator('.wait');
  await wait.first().waitFor();
  const text = await wait.first().textContent();
  assert.match(text, /blocked by group mac, held by run #\d+ lane (hold|wait)/);
  const link = wait.first().locator('a');
  assert.match(await link.getAttribute('href'), /^\/origin\/runs\/\d+\/lanes\/(hold|wait)$/);
  await shot(page, 'run-blocked');
  await page.goto(`${base}/groups`);
  await page.waitForSelector('text=full');
  await shot(page, 'groups');
  // The agent reports the scope the running lane holds; the page shows it (live: the report
  // may come after the page loaded).
  await page.goto(`${base}/agents`);
  const scope = page.locator('ul.scopes li', { hasText: 'simulator' });
  await scope.locator('a').first().waitFor();
  assert.match(await scope.textContent(), /simulator mounts: devices in use by origin #\d+ (hold|wait)/);
  assert.match(await scope.locator('a').first().getAttribute('href'), /^\/origin\/runs\/\d+\/lanes\/(hold|wait)\?job=\d+$/);
  assert.match(await page.textContent('table.agents'), /in \d+ results and \d+ blobs/);
  await shot(page, 'agents');
  await page.goto(`${base}/cache`);
  assert.match(await page.textContent('table.missers'), /first run in this cache ×\d+/);
  await shot(page, 'cache');
  await page.goto(`${base}/`);
  for (const branch of ['main', 'failing', 'slow', 'grouped']) {
    await page.waitForSelector(`a[href="/origin/branches/${branch}"]`);
  }
  assert.match(await page.textContent('.queue'), /mac 1\/1 \(1 waiting\)/, 'the busy group at a glance');
  await shot(page, 'home');
  // The cache page is live too: the cancelled lane's step is counted without a reload.
  await page.goto(`${base}/cache`);
  const misses = page.locator('dl.facts div', { hasText: 'Misses' }).locator('dd');
  const before = Number(await misses.textContent());
  await api(`/api/v1/repos/origin/runs/${run.number}/cancel`, 'POST');
  await until('the cache page to count the cancelled lane', async () => Number(await misses.textContent()) > before);
  await page.close();
});

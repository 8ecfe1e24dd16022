// The status page end to end, in a real browser (Debian's chromium through
// playwright-core). For each fault: a running facteur is broken on purpose,
// the page must show an incident naming the component within 2 minutes
// (objective windows shortened), the webhook must receive the open and the
// resolve (signature checked here, independently of facteur's code), and
// the page must return to operational once the fault is removed.
//
// Faults: destination down (the downstream stops listening), storage
// failing (the fault switch: every commit fails), IMAP logins failing on
// one node of two (PostgreSQL shared, regions eu and us): the page reads
// "degraded in eu" (or "major outage in eu") while us stays operational.
//
// Every node carries a steady load meanwhile: a message to a local user and
// an IMAP login each second (and, in the destination case, a message to
// the destination), as users would.
//
// Environment: FACTEUR_BIN, FACTEUR_SCREENSHOTS (folder), FACTEUR_PG_URL and
// FACTEUR_PG_SCHEMA (for the two-node case), CHROMIUM (default
// /usr/bin/chromium). FACTEUR_WATCH_DEFAULTS=1 keeps facteur's default
// objectives, hold and quiet times and probe interval (bench/detect.sh);
// otherwise they are shortened so the test takes a minute.
// Exit status 0 when every scenario passed.

import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.FACTEUR_BIN;
const SHOTS = process.env.FACTEUR_SCREENSHOTS || path.join(os.tmpdir(), 'facteur-status-shots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SECRET = 'status-page-test-secret-' + crypto.randomBytes(8).toString('hex');
const BAR_SECS = 120;
const DEFAULTS = process.env.FACTEUR_WATCH_DEFAULTS === '1';
// With the defaults, a removed fault's failures stay in the 10-minute
// window, then the 10-minute quiet runs.
const RESOLVE_SECS = DEFAULTS ? 1800 : 120;
const WATCH = DEFAULTS
  ? ''
  : `[probe]
interval_secs = 2
timeout_secs = 5
[watch]
evaluate_secs = 1
hold_secs = 5
quiet_secs = 10
[watch.objectives]
acceptance = { target = 0.99, window_secs = 20 }
delivery = { target = 0.99, window_secs = 20 }
destination = { target = 0.9, window_secs = 20 }
mailbox_access = { target = 0.995, window_secs = 20 }
storage = { target = 0.999, window_secs = 20 }`;
fs.mkdirSync(SHOTS, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log(new Date().toISOString().slice(11, 19), ...a);

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitFor(what, secs, fn) {
  const until = Date.now() + secs * 1000;
  let last;
  while (Date.now() < until) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(500);
  }
  throw new Error(`timed out after ${secs} s waiting for ${what} (last: ${last})`);
}

async function getJson(url, headers = {}) {
  const r = await fetch(url, { headers });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

/// A webhook receiver that checks every signature.
function webhook() {
  const events = [];
  const bad = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const sig = req.headers['x-facteur-signature'] || '';
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
      const want = m && crypto.createHmac('sha256', SECRET).update(`${m[1]}.`).update(body).digest('hex');
      if (!m || want !== m[2]) bad.push(sig);
      else events.push({ ...JSON.parse(body.toString()), receivedAt: Date.now() });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ port: server.address().port, events, bad, close: () => server.close() }));
  });
}

/// A downstream SMTP server that takes every message; it can stop
/// listening (connections refused) and listen again on the same port.
async function sink() {
  const got = [];
  const port = await freePort();
  let server = null;
  const handler = (sock) => {
    let buf = '';
    let inData = false;
    let message = '';
    sock.write('220 sink ESMTP\r\n');
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            got.push(message);
            message = '';
            sock.write('250 2.0.0 queued\r\n');
          } else message += line + '\n';
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') sock.write('250-sink\r\n250 8BITMIME\r\n');
        else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('250 ok\r\n');
      }
    });
    sock.on('error', () => {});
  };
  const sockets = new Set();
  const up = () =>
    new Promise((resolve, reject) => {
      server = net.createServer((s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        handler(s);
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
  const down = () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  await up();
  return { port, got, up, down };
}

/// Send one message over SMTP (a client written for the test).
function smtpSend(port, from, to, subject) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const script = [
      'EHLO client.test',
      `MAIL FROM:<${from}>`,
      `RCPT TO:<${to}>`,
      'DATA',
      `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nMessage-ID: <${crypto.randomUUID()}@client.test>\r\n\r\nHello.\r\n.`,
      'QUIT',
    ];
    let buf = '';
    let step = 0;
    sock.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (line[3] === '-') continue;
        if (!/^[23]/.test(line)) {
          sock.destroy();
          return reject(new Error(`SMTP: ${line} (after ${script[step - 1] || 'connect'})`));
        }
        if (step < script.length) sock.write(script[step++] + '\r\n');
        else {
          sock.end();
          resolve();
        }
      }
    });
    sock.on('error', reject);
  });
}

/// Log in over IMAPS and out again; resolves true when LOGIN said OK.
function imapLogin(port, user, pass) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    let buf = '';
    let sent = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('IMAP timed out'));
    }, 10_000);
    sock.on('data', (d) => {
      buf += d.toString();
      if (!sent && buf.includes('* OK')) {
        sent = true;
        sock.write(`a LOGIN "${user}" "${pass}"\r\n`);
      }
      const m = /^a (OK|NO|BAD)/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        sock.end('b LOGOUT\r\n');
        resolve(m[1] === 'OK');
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/// A domain and a user on `node` (its storage), for the load.
function addUser(node) {
  const run = (args, input) => execFileSync(BIN, [...node.args, ...args], { input, stdio: ['pipe', 'ignore', 'inherit'] });
  run(['domain', 'add', 'status.test']);
  run(['user', 'add', 'load@status.test', '--password-stdin'], 'load-password-123\n');
}

/// Each second until stopped: a message to the local user, an IMAP login,
/// and a message to `remote` if given. Failures are the point, not errors.
function load(node, remote) {
  let stop = false;
  const counts = { sent: 0, remote: 0, refused: 0, logins: 0, failedLogins: 0 };
  (async () => {
    for (let n = 0; !stop; n++) {
      const tick = Date.now();
      const jobs = [
        smtpSend(node.p.smtp, 'sender@client.test', 'load@status.test', `load ${n}`).then(() => counts.sent++, () => counts.refused++),
        imapLogin(node.p.imaps, 'load@status.test', 'load-password-123').then(
          (ok) => (ok ? counts.logins++ : counts.failedLogins++),
          () => counts.failedLogins++,
        ),
      ];
      if (remote) jobs.push(smtpSend(node.p.smtp, 'sender@client.test', `r${n}@${remote}`, `remote ${n}`).then(() => counts.remote++, () => counts.refused++));
      await Promise.all(jobs);
      await sleep(Math.max(0, 1000 - (Date.now() - tick)));
    }
  })();
  return { counts, stop: () => (stop = true) };
}

/// One `facteur serve` with the watch's windows shortened (unless DEFAULTS).
async function startNode({ name, region, hooks, extra = '', storage = '', init = false }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `facteur-status-${name}-`));
  const p = {};
  for (const k of ['smtp', 'http', 'imaps', 'status']) p[k] = await freePort();
  const toml = `[server]
hostname = "${name}.status.test"
[listen]
smtp = ["127.0.0.1:${p.smtp}"]
submission = []
submissions = []
http = ["127.0.0.1:${p.http}"]
imap = []
imaps = ["127.0.0.1:${p.imaps}"]
pop3 = []
pop3s = []
status = ["127.0.0.1:${p.status}"]
[admin]
token = "admin-token"
[smtp]
trusted_networks = ["127.0.0.0/8"]
greet_pause_ms = 0
[node]
name = "${name}"
region = "${region}"
${WATCH}
[alerts]
webhook_url = "http://127.0.0.1:${hooks.port}/facteur"
webhook_secret = "${SECRET}"
${storage}
${extra}
`;
  fs.writeFileSync(path.join(dir, 'facteur.toml'), toml);
  const args = ['--data', path.join(dir, 'data'), '--config', path.join(dir, 'facteur.toml')];
  // A new PostgreSQL schema is made once, by the first node (`facteur init`).
  if (init) execFileSync(BIN, [...args, 'init'], { stdio: 'inherit' });
  const out = fs.openSync(path.join(SHOTS, `${name}.log`), 'w');
  const proc = spawn(BIN, [...args, 'serve'], {
    env: { ...process.env, FACTEUR_ALLOW_FAULTS: '1', RUST_LOG: 'info' },
    stdio: ['ignore', out, out],
  });
  const node = {
    name,
    p,
    proc,
    args,
    base: `http://127.0.0.1:${p.status}`,
    admin: `http://127.0.0.1:${p.http}/admin`,
    async fault(which, on) {
      const r = await fetch(`${this.admin}/fault`, {
        method: 'POST',
        headers: { Authorization: 'Bearer admin-token', 'Content-Type': 'application/json' },
        body: JSON.stringify({ fault: which, on }),
      });
      if (!r.ok) throw new Error(`fault ${which}: ${r.status} ${await r.text()}`);
    },
    status() {
      return getJson(`${this.base}/status.json`);
    },
    stop() {
      proc.kill('SIGTERM');
    },
  };
  await waitFor(`${name} ready`, 90, async () => (await fetch(`http://127.0.0.1:${p.http}/readyz`)).ok);
  return node;
}

/// The page in the browser, JavaScript off, on a desktop and a phone: every
/// text in `expect` is there; screenshots kept.
async function look(browser, node, shot, expect) {
  for (const [kind, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
    const ctx = await browser.newContext({ javaScriptEnabled: false, viewport });
    const page = await ctx.newPage();
    await page.goto(`${node.base}/status`);
    const text = await page.locator('main').innerText();
    for (const e of expect) {
      if (!(e instanceof RegExp ? e.test(text) : text.includes(e))) {
        await page.screenshot({ path: path.join(SHOTS, `${shot}-${kind}-FAILED.png`), fullPage: true });
        throw new Error(`${shot}: the page does not show ${e}:\n${text.slice(0, 1500)}`);
      }
    }
    // Accessible basics: one h1, a language, no horizontal scroll on a phone.
    const h1 = await page.locator('h1').count();
    const lang = await page.getAttribute('html', 'lang');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1).catch(() => false);
    if (h1 !== 1 || lang !== 'en' || overflow) throw new Error(`${shot} ${kind}: h1=${h1} lang=${lang} overflow=${overflow}`);
    await page.screenshot({ path: path.join(SHOTS, `${shot}-${kind}.png`), fullPage: true });
    await ctx.close();
  }
}

function hookSaw(hooks, event, component) {
  return hooks.events.find((e) => e.event === event && e.component.startsWith(component));
}

/// Inject, see it open, remove, see it resolve; timings returned.
async function scenario({ browser, name, hooks, node, pageNode, component, publicName, inject, remove, expectOpen }) {
  const t0 = Date.now();
  await inject();
  log(`${name}: fault injected`);
  const open = await waitFor(`${name}: an incident on the status page`, BAR_SECS, async () => {
    const s = await pageNode.status();
    return s.incidents.find((i) => i.state === 'open' && i.component === publicName);
  });
  const openSecs = (Date.now() - t0) / 1000;
  log(`${name}: open after ${openSecs} s: ${open.title}`);
  await look(browser, pageNode, `${name}-incident`, [open.title, ...expectOpen]);
  const alert = await waitFor(`${name}: the webhook's open`, 30, async () => hookSaw(hooks, 'incident.opened', component));
  const alertSecs = (alert.receivedAt - t0) / 1000;
  const t1 = Date.now();
  await remove();
  log(`${name}: fault removed`);
  await waitFor(`${name}: resolved`, RESOLVE_SECS, async () => {
    const s = await pageNode.status();
    return !s.incidents.some((i) => i.state === 'open') && s.status === 'operational';
  });
  const resolveSecs = (Date.now() - t1) / 1000;
  await waitFor(`${name}: the webhook's resolve`, 30, async () => hookSaw(hooks, 'incident.resolved', component));
  await look(browser, pageNode, `${name}-resolved`, ['All systems operational', 'Past incidents', open.title]);
  log(`${name}: resolved ${resolveSecs} s after the fault was removed`);
  if (openSecs > BAR_SECS) throw new Error(`${name}: opened after ${openSecs} s`);
  return { name, openSecs, alertSecs, resolveSecs };
}

async function storageCase(browser) {
  const hooks = await webhook();
  const node = await startNode({ name: 'storage', region: 'eu', hooks });
  addUser(node);
  const l = load(node);
  try {
    return await scenario({
      browser, name: 'storage', hooks, node, pageNode: node,
      component: 'storage', publicName: 'Storage',
      inject: () => node.fault('storage', true),
      remove: () => node.fault('storage', false),
      expectOpen: [/Storage.*(degraded|major outage) in eu/],
    });
  } finally {
    l.stop();
    node.stop();
    hooks.close();
    if (hooks.bad.length) throw new Error(`storage: bad webhook signatures: ${hooks.bad}`);
  }
}

async function destinationCase(browser) {
  const hooks = await webhook();
  const down = await sink();
  const extra = `[delivery]
enabled = true
dns_servers = ["127.0.0.1:9"]
first_retry_secs = 1
max_retry_secs = 2
unreachable_probe_secs = 2
[[route]]
domain = "down.test"
via = "127.0.0.1:${down.port}"
tls = "none"`;
  const node = await startNode({ name: 'destination', region: 'eu', hooks, extra });
  addUser(node);
  const sent = 12;
  let l = load(node);
  try {
    return await scenario({
      browser, name: 'destination', hooks, node, pageNode: node,
      component: 'destination:down.test', publicName: 'Sending mail',
      inject: async () => {
        await down.down();
        for (let n = 0; n < sent; n++) await smtpSend(node.p.smtp, 'sender@client.test', `user${n}@down.test`, `m${n}`);
        l.stop();
        l = load(node, 'down.test');
      },
      remove: () => down.up(),
      expectOpen: ['Mail to down.test is delayed', /refusing connections/],
    });
  } finally {
    l.stop();
    await sleep(1500);
    // Nothing acknowledged is lost: every message reaches the sink once it is back.
    const accepted = sent + l.counts.remote;
    await waitFor('every message delivered after the outage', 120, async () => down.got.length >= accepted).catch((e) => {
      throw new Error(`destination: ${down.got.length} of ${accepted} accepted messages delivered: ${e}`);
    });
    node.stop();
    hooks.close();
    await down.down();
    if (hooks.bad.length) throw new Error(`destination: bad webhook signatures: ${hooks.bad}`);
  }
}

async function regionCase(browser) {
  const hooks = await webhook();
  const storage = `[storage]
backend = "postgres"
url = "${process.env.FACTEUR_PG_URL}"
schema = "${process.env.FACTEUR_PG_SCHEMA}"
pool_size = 4`;
  const eu = await startNode({ name: 'imap-eu', region: 'eu', hooks, storage, init: true, extra: '[delivery]\nenabled = false' });
  const us = await startNode({ name: 'imap-us', region: 'us', hooks, storage, extra: '[delivery]\nenabled = false' });
  addUser(eu);
  const loads = [load(eu), load(us)];
  try {
    await waitFor('both regions on the page', 30, async () => (await us.status()).regions.length === 2);
    return await scenario({
      browser, name: 'imap-one-region', hooks, node: eu, pageNode: us,
      component: 'mailbox-access', publicName: 'Mailbox access (IMAP, POP3)',
      inject: () => eu.fault('mailbox-login', true),
      remove: () => eu.fault('mailbox-login', false),
      expectOpen: [/Mailbox access \(IMAP, POP3\): (degraded|major outage) in eu; operational elsewhere\./],
    });
  } finally {
    loads.forEach((l) => l.stop());
    eu.stop();
    us.stop();
    hooks.close();
    if (hooks.bad.length) throw new Error(`region: bad webhook signatures: ${hooks.bad}`);
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
let failed = false;
const results = await Promise.allSettled([storageCase(browser), destinationCase(browser), regionCase(browser)]);
await browser.close();
for (const r of results) {
  if (r.status === 'fulfilled') {
    const { name, openSecs, alertSecs, resolveSecs } = r.value;
    console.log(`RESULT ${name}: incident on the page after ${openSecs} s, webhook open after ${alertSecs} s, resolved ${resolveSecs} s after the fault was removed`);
  } else {
    failed = true;
    console.log(`FAILED: ${r.reason?.stack || r.reason}`);
  }
}
console.log(`screenshots and node logs in ${SHOTS}`);
process.exit(failed ? 1 : 0);

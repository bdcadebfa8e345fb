#!/usr/bin/env node
// ci/console/web-console.mjs URL SCREENSHOT: Berth's web console, tested as a person uses it.
//
// URL is noVNC's page as `kubectl port-forward pod/<vm>-0 6080` serves it, e.g.
// http://localhost:6080/vnc.html. Debian's Chromium (/usr/bin/chromium, headless), driven by
// playwright-core, opens URL?autoconnect=1, waits (bounded) for noVNC's "Connected" state, waits
// until the VM's screen on noVNC's canvas is not blank, then types on it as a person would (a click
// on the screen, then keys) and waits until the guest has drawn the typed characters; it saves a
// screenshot of the page to SCREENSHOT (PNG) and erases what it typed. Before that, without a
// browser, it checks the console's Origin guard: a WebSocket upgrade from another origin is
// refused (403), the page's own origin is accepted (101).
//
// The canvas is "not blank" when it has at least 2 colours and at least MIN_INK pixels that differ
// from its most common colour (the background): a black frame and noVNC's empty canvas fail. That
// alone is not enough: QEMU draws "Guest has not initialized the display (yet)." on a VM that
// shows nothing, which passes it. So the typed text must add TYPED_INK pixels or more to the
// screen: only a running guest echoing the keys does that (the text console's blinking cursor
// changes about 20 pixels), and the screen must first keep still (a booting guest's scrolling text
// is no echo) and come back to its ink after as many Backspaces. The test guest's VGA text console
// (a login prompt on tty1, 720x400) has about 1000-1150 such pixels before typing, 1450-1600 after.
//
// Env: CHROMIUM (default /usr/bin/chromium), CONNECT_TIMEOUT_MS (30000), SCREEN_TIMEOUT_MS (60000),
// TYPE (the text typed at the login prompt, default berth-web-console; never followed by Enter).
// Prints one line per step; exit 0 when every check passed, 1 otherwise.
import http from 'node:http';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: web-console.mjs URL SCREENSHOT   (URL: http://localhost:6080/vnc.html)');
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CONNECT_TIMEOUT_MS = Number(process.env.CONNECT_TIMEOUT_MS || 30000);
const SCREEN_TIMEOUT_MS = Number(process.env.SCREEN_TIMEOUT_MS || 60000);
const MIN_INK = 200;
const TYPE = process.env.TYPE || 'berth-web-console';
const TYPED_INK = 8 * TYPE.length; // a character of the 9x16 VGA font has 10-40 lit pixels
const CURSOR = 40; // what the blinking cursor of a text console changes, and some margin

const log = (msg) => console.log(`web-console: ${msg}`);
const fail = (msg) => {
  console.error(`web-console: FAIL: ${msg}`);
  process.exit(1);
};

// upgrade ORIGIN → the HTTP status websockify answers a WebSocket upgrade with (101 or an error).
function upgrade(origin) {
  const page = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: page.hostname,
      port: page.port || 80,
      path: '/websockify',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': 'binary',
        Origin: origin,
      },
      timeout: 10000,
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

const own = new URL(url).origin;
const foreign = 'http://attacker.example';
const ownStatus = await upgrade(own).catch((e) => fail(`WebSocket upgrade from ${own}: ${e.message}`));
const foreignStatus = await upgrade(foreign).catch((e) => fail(`WebSocket upgrade from ${foreign}: ${e.message}`));
if (ownStatus !== 101) fail(`WebSocket upgrade from the page's own origin ${own}: HTTP ${ownStatus}, want 101`);
if (foreignStatus === 101) fail(`WebSocket upgrade from ${foreign} was accepted: the Origin guard is off`);
log(`Origin guard: ${own} → ${ownStatus}, ${foreign} → ${foreignStatus}`);

const page_url = new URL(url);
if (!page_url.searchParams.has('autoconnect')) page_url.searchParams.set('autoconnect', '1');

const t0 = Date.now();
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // the flags that work on these machines (no network but the cluster: no background fetches)
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let code = 0;
try {
  const page = await browser.newPage({ viewport: { width: 1024, height: 600 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(page_url.href, { timeout: CONNECT_TIMEOUT_MS });
  log(`opened ${page_url.href} (${Date.now() - t0} ms after launch)`);

  // noVNC puts the class noVNC_connected on <html> once the RFB handshake is done and shows
  // "Connected (unencrypted) to <desktop name>" in its status bar.
  try {
    await page.waitForFunction(() => document.documentElement.classList.contains('noVNC_connected'), null,
      { timeout: CONNECT_TIMEOUT_MS, polling: 100 });
  } catch {
    const status = await page.locator('#noVNC_status').textContent().catch(() => '');
    throw new Error(`not connected after ${CONNECT_TIMEOUT_MS} ms; status "${status}"; page errors: ${pageErrors.join('; ') || 'none'}`);
  }
  const status = (await page.locator('#noVNC_status').textContent()) || '';
  if (!status.includes('Connected')) throw new Error(`connected, but the status says "${status}"`);
  log(`"${status.trim()}" ${Date.now() - t0} ms after launch`);

  // the VM's screen on the canvas: poll until it has content (the first framebuffer update)
  const inkOf = () => page.evaluate(() => {
    const canvas = document.querySelector('#noVNC_container canvas');
    if (!canvas || !canvas.width || !canvas.height) return { width: 0, height: 0, colours: 0, ink: 0 };
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const c = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(c, (counts.get(c) || 0) + 1);
    }
    const top = Math.max(...counts.values());
    return { width: canvas.width, height: canvas.height, colours: counts.size, ink: data.length / 4 - top };
  });
  let screen = await inkOf();
  const deadline = Date.now() + SCREEN_TIMEOUT_MS;
  while ((screen.colours < 2 || screen.ink < MIN_INK) && Date.now() < deadline) {
    await page.waitForTimeout(500);
    screen = await inkOf();
  }
  log(`canvas ${screen.width}x${screen.height}: ${screen.colours} colours, ${screen.ink} pixels unlike the background`);
  if (screen.colours < 2 || screen.ink < MIN_INK) {
    await page.screenshot({ path: screenshot });
    throw new Error(`the VM's screen is blank after ${SCREEN_TIMEOUT_MS} ms (want 2 colours or more and ${MIN_INK} pixels or more unlike the background; screenshot ${screenshot})`);
  }

  // A still screen first (a guest still booting scrolls text): ink within CURSOR pixels over 2 s
  // (the text console's cursor blinks); its most ink is the reference.
  const stillBy = Date.now() + SCREEN_TIMEOUT_MS;
  const samples = [];
  for (;;) {
    samples.push((await inkOf()).ink);
    const last = samples.slice(-5);
    if (last.length === 5 && Math.max(...last) - Math.min(...last) <= CURSOR) break;
    if (Date.now() > stillBy) throw new Error(`the VM's screen did not keep still for 2 s within ${SCREEN_TIMEOUT_MS} ms (ink ${last.join(', ')})`);
    await page.waitForTimeout(500);
  }
  const before = Math.max(...samples.slice(-5));

  // type on it as a person would: click on the screen, keys; the guest must draw them...
  await page.locator('#noVNC_container canvas').click({ position: { x: 5, y: 5 } });
  await page.keyboard.type(TYPE, { delay: 40 });
  const typedBy = Date.now() + SCREEN_TIMEOUT_MS;
  screen = await inkOf();
  while (screen.ink < before + TYPED_INK && Date.now() < typedBy) {
    await page.waitForTimeout(250);
    screen = await inkOf();
  }
  log(`typed "${TYPE}": ${before} → ${screen.ink} pixels unlike the background (want +${TYPED_INK} or more)`);
  await page.waitForTimeout(700); // noVNC's control bar slides (0.5 s) after the click: a still picture
  await page.screenshot({ path: screenshot });
  log(`screenshot ${screenshot}`);
  const typed = screen.ink;
  // ...and take them back on Backspace: the screen returns to what it was (so the change was ours)
  for (let i = 0; i < TYPE.length; i++) await page.keyboard.press('Backspace', { delay: 20 });
  if (typed < before + TYPED_INK) {
    throw new Error(`the typed "${TYPE}" did not appear on the VM's screen within ${SCREEN_TIMEOUT_MS} ms: keys do not reach a running guest`);
  }
  const erasedBy = Date.now() + SCREEN_TIMEOUT_MS;
  screen = await inkOf();
  while (Math.abs(screen.ink - before) > CURSOR && Date.now() < erasedBy) {
    await page.waitForTimeout(250);
    screen = await inkOf();
  }
  log(`erased: ${screen.ink} pixels unlike the background (want ${before} ± ${CURSOR})`);
  if (Math.abs(screen.ink - before) > CURSOR) {
    throw new Error(`after ${TYPE.length} Backspaces the screen has ${screen.ink} pixels of ink, not the ${before} it had before typing: the change was not (only) the typed text`);
  }
  log(`PASS in ${Date.now() - t0} ms`);
} catch (e) {
  console.error(`web-console: FAIL: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);

// The dashboard in a real browser (run by tests/dashboard.rs, which starts mosquitto, the store
// and the gateway and publishes a few readings first): Debian's chromium, headless, driven by
// playwright-core. Checks that
//   - the overview's figures are exactly those /api/kpi answered, among them the three graded
//     steps (response, arrival 到场及时率, repair 修复及时率) of the month;
//   - an alarm raised while the page is open (an elevator entrapment, published here with
//     mosquitto_pub) is on the alarms page within 2 s;
//   - its escalation (the test's chain escalates an entrapment at once) shows as 已升级 1 次 on
//     its row, as the API has it;
//   - acknowledging it from the page (name + token in the dialog; a wrong token first gets
//     the 401 message and a second chance) acknowledges it in the API, and so does "on site";
//   - the English switch changes the labels and is remembered;
//   - every page renders without a script error;
// and writes a screenshot of each page to $ESTATE_SCREENSHOTS.
//
// Environment: ESTATE_URL (http://127.0.0.1:port), ESTATE_TOKEN, ESTATE_SCREENSHOTS,
// ESTATE_MQTT_PORT, ESTATE_SITE, ESTATE_ELEVATOR (device id), ESTATE_CHROMIUM (default
// /usr/bin/chromium). Exit 0 when every check passed; otherwise a message and exit 1.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) fail(`${k} is not set (tests/dashboard.rs sets it)`);
  return v;
};
class Failure extends Error {}
function fail(msg) {
  throw new Failure(msg);
}
process.on('uncaughtException', (e) => {
  console.error(`FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
  process.exit(1);
});
const step = (msg) => console.log(`dashboard.mjs: ${msg}`);

const URL_ = env('ESTATE_URL');
const TOKEN = env('ESTATE_TOKEN');
const SHOTS = env('ESTATE_SCREENSHOTS');
const MQTT_PORT = env('ESTATE_MQTT_PORT');
const SITE = env('ESTATE_SITE');
const ELEVATOR = env('ESTATE_ELEVATOR');
const CHROMIUM = env('ESTATE_CHROMIUM', '/usr/bin/chromium');
const OPERATOR = '张伟';

if (!existsSync(CHROMIUM)) fail(`no chromium at ${CHROMIUM}; run scripts/install-test-deps`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`cannot load playwright-core (${e.message}); run scripts/install-test-deps (npm ci in tests/browser)`);
}
mkdirSync(SHOTS, { recursive: true });

async function getJson(path) {
  const r = await fetch(URL_ + path);
  if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, ms, f) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await f();
    if (last) return last;
    await sleep(100);
  }
  fail(`${what} within ${ms} ms`);
}
// The overview's formats (app.js): rates as percentages with two decimals, counts as integers.
const format = (v, fmt) => {
  if (v == null) return '—';
  return fmt === 'pct' ? (v * 100).toFixed(2) + '%' : String(v);
};
const at = (obj, path) => path.reduce((o, p) => (o == null ? undefined : o[p]), obj);

const profile = mkdtempSync(join(tmpdir(), 'estate-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1920, height: 1080 },
  locale: 'zh-CN',
});
const errors = [];
let exitCode = 0;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.setDefaultTimeout(15000);
  const shot = async (name) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    step(`screenshot ${name}.png`);
  };

  // ---- overview: the rendered figures are those of the /api/kpi answer the page received.
  const kpiAnswer = () => page.waitForResponse((r) => r.url().endsWith('/api/kpi') && r.status() === 200, { timeout: 15000 });
  let answer = kpiAnswer();
  await page.goto(URL_ + '/#/overview');
  if ((await page.textContent('#nav-alarms')).indexOf('告警') < 0) fail('the page is not in Chinese by default');
  let compared = null;
  for (let i = 0; i < 6 && !compared; i++) {
    const k = await (await answer).json();
    answer = kpiAnswer();
    const h = await page.waitForFunction((ts) => {
      const o = document.querySelector('#overview');
      if (!o || o.dataset.kpiTs !== String(ts)) return null;
      return [...o.querySelectorAll('[data-kpi]')].map((e) => ({ path: JSON.parse(e.dataset.kpi), fmt: e.dataset.fmt, text: e.textContent }));
    }, k.ts, { timeout: 1500 }).catch(() => null);
    if (!h) continue; // the page had already moved on to a newer answer
    const items = await h.jsonValue();
    if (!items) continue;
    for (const it of items) {
      const want = format(at(k, it.path), it.fmt);
      if (it.text !== want) fail(`overview shows ${JSON.stringify(it.text)} for ${it.path.join('.')}, /api/kpi says ${JSON.stringify(want)} (${JSON.stringify(at(k, it.path))})`);
    }
    const paths = items.map((it) => it.path.join('.'));
    // The three graded steps (DESIGN §4): response, arrival (到场及时率), repair (修复及时率).
    const must = ['intactness.instant', 'intactness.rate_month', 'intactness.intact', 'intactness.total'];
    for (const s of ['response', 'arrival', 'repair']) must.push(`${s}.month.timely_rate`, `${s}.month.count`);
    if (k.heating.in_season) must.push('heating.compliance_month', 'heating.coverage_month');
    for (const c of Object.keys(k.intactness.by_category)) must.push(`intactness.by_category.${c}.instant`, `intactness.by_category.${c}.rate_month`);
    for (const m of must) if (!paths.includes(m)) fail(`the overview does not show ${m}; it shows ${paths.join(', ')}`);
    compared = { k, n: items.length };
  }
  if (!compared) fail('the overview never showed the figures of an /api/kpi answer it received');
  const direct = await getJson('/api/kpi');
  if (direct.intactness.total !== compared.k.intactness.total) fail(`device totals differ: page ${compared.k.intactness.total}, API ${direct.intactness.total}`);
  step(`overview: ${compared.n} figures equal /api/kpi (ts ${compared.k.ts})`);
  for (const [id, label] of [['#tile-arrival', '到场及时率'], ['#tile-repair', '修复及时率']]) {
    const text = await page.textContent(`${id} .label`);
    if (!text.includes(label)) fail(`${id} is labelled ${JSON.stringify(text)}, not ${label}`);
  }
  await page.waitForSelector('#conn[data-state="ok"]');
  await shot('overview');

  // ---- alarms: an entrapment raised now is listed within 2 s.
  await page.click('#nav-alarms');
  await page.waitForSelector('#alarms');
  await page.waitForSelector('#conn[data-state="ok"]');
  const row = `#active-alarms tr.alarm[data-device="${ELEVATOR}"]`;
  if (await page.$(row)) fail(`an alarm of ${ELEVATOR} is listed before it was raised`);
  const topic = `estate/${SITE}/elevator/${ELEVATOR}/telemetry`;
  const t0 = Date.now();
  const pub = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', MQTT_PORT, '-q', '1', '-t', topic,
    '-m', JSON.stringify({ mode: 'normal', fault_code: 0, entrapment: true })], { encoding: 'utf8' });
  if (pub.status !== 0) fail(`mosquitto_pub failed (run scripts/install-test-deps): ${pub.error ?? ''} ${pub.stderr}`);
  await page.waitForSelector(row, { timeout: 2000 }).catch(() => fail(`the entrapment alarm of ${ELEVATOR} was not on the alarms page within 2 s of being published`));
  const latency = Date.now() - t0;
  if (latency > 2000) fail(`the alarm took ${latency} ms to appear (limit 2000 ms)`);
  const id = await page.getAttribute(row, 'data-alarm-id');
  step(`alarm ${id} appeared ${latency} ms after the entrapment was published`);
  // Its counters run: the age grows, the countdown shows time left.
  const age1 = await page.textContent(`${row} [data-age]`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith('剩余'), `${row} [data-deadline]`, { timeout: 3000 })
    .catch(() => fail('the acknowledgment countdown does not show the time left'));
  await page.waitForFunction(([sel, before]) => document.querySelector(sel)?.textContent !== before, [`${row} [data-age]`, age1], { timeout: 3000 })
    .catch(async () => fail(`the age counter does not run (${age1}): ${await page.innerHTML(row)}; gateway time ${await page.textContent('#clock')}`));
  // Escalated at once (the test's chain: after = "0s"): 已升级 1 次 on the row, as in the API.
  const escalated = `${row} .escalated[data-escalations="1"]`;
  await page.waitForSelector(escalated, { timeout: 3000 })
    .catch(async () => fail(`the alarm's escalation is not shown on its row: ${await page.innerHTML(row)}`));
  if ((await page.textContent(escalated)).trim() !== '已升级 1 次') fail(`the escalation reads ${JSON.stringify(await page.textContent(escalated))}, not 已升级 1 次`);
  const esc1 = (await getJson(`/api/alarms/${encodeURIComponent(id)}`)).escalations;
  if (esc1?.length !== 1 || esc1[0].step !== 1) fail(`the API shows escalations ${JSON.stringify(esc1)}, not step 1`);
  await shot('alarms-raised');

  // ---- acknowledge from the page: wrong token first (401, asked again), then the right one.
  await page.click(`${row} button[data-act="ack"]`);
  await page.waitForSelector('#step-dialog[open]');
  if (await page.isHidden('#step-token-row')) fail('the dialog does not ask for the API token although none is stored');
  await page.fill('#step-by', OPERATOR);
  await page.fill('#step-token', 'not-the-token');
  await page.click('#step-ok');
  await page.waitForSelector('#step-error:not([hidden])');
  const err = await page.textContent('#step-error');
  if (!/401|令牌/.test(err)) fail(`a wrong token shows ${JSON.stringify(err)}, not the 401 message`);
  if (await page.isHidden('#step-token-row')) fail('after a 401 the dialog does not ask for the token again');
  await page.fill('#step-token', TOKEN);
  await page.click('#step-ok');
  await page.waitForSelector('#step-dialog:not([open])', { state: 'attached' });
  const path = `/api/alarms/${encodeURIComponent(id)}`;
  const acked = await until(`alarm ${id} acknowledged by ${OPERATOR} in the API`, 5000, async () => {
    const a = await getJson(path);
    return a.acknowledged?.by === OPERATOR ? a : null;
  });
  await page.waitForSelector(`${row} [data-acked-by="${OPERATOR}"]`);
  step(`acknowledged from the page: response ${acked.response_s} s`);

  // ---- on site: the token is remembered for the session, the name for good.
  await page.click(`${row} button[data-act="on_site"]`);
  await page.waitForSelector('#step-dialog[open]');
  if (await page.isVisible('#step-token-row')) fail('the dialog asks for the token again although it is stored for the session');
  if ((await page.inputValue('#step-by')) !== OPERATOR) fail('the operator name is not remembered');
  await page.click('#step-ok');
  await page.waitForSelector('#step-dialog:not([open])', { state: 'attached' });
  await until(`alarm ${id} on site in the API`, 5000, async () => (await getJson(path)).on_site?.by === OPERATOR);
  await shot('alarms');

  // ---- devices and one device.
  await page.click('#nav-devices');
  await page.waitForSelector(`a.dev[data-device="${ELEVATOR}"]`);
  await shot('devices');
  await page.click(`a.dev[data-device="${ELEVATOR}"]`);
  await page.waitForSelector('#device #values');
  await page.waitForSelector('#device #device-alarms');
  // This month's figures of the device (GET /api/devices/{id}/figures).
  await page.waitForSelector('#device #device-figures');
  const figs = await page.textContent('#device-figures');
  if (!figs.includes('完好率') || !figs.includes('告警数')) fail(`the device page's figures table is incomplete: ${figs}`);
  const hist = await page.textContent('#device-alarms');
  if (!hist.includes(id)) fail(`the device page's alarm history does not list ${id}`);
  const vals = await page.textContent('#values');
  if (!vals.includes('困人')) fail(`the device page does not label the values from the profile: ${vals}`);
  await shot('device');

  // ---- heating.
  await page.click('#nav-heating');
  await page.waitForSelector('#heating #temp-hist');
  await page.waitForSelector('#heating #loops');
  await shot('heating');

  // ---- assessment: the month's and the quarter's scorecards from /api/report.
  await page.click('#nav-assessment');
  await page.waitForSelector('#score-month [data-total]');
  await page.waitForSelector('#score-quarter [data-total]');
  const kpis = await page.$$eval('#score-month tr[data-kpi-name]', (r) => r.length);
  const report = await getJson('/api/report?period=month');
  if (kpis !== report.score.kpis.length) fail(`the month's scorecard shows ${kpis} KPIs, /api/report has ${report.score.kpis.length}`);
  await shot('assessment');

  // ---- English, remembered across a reload.
  await page.click('#nav-overview');
  await page.waitForSelector('#overview');
  await page.click('#lang');
  await page.waitForFunction(() => document.querySelector('#nav-alarms').textContent.includes('Alarms'));
  await page.reload();
  await page.waitForSelector('#overview');
  const nav = await page.textContent('#nav-alarms');
  if (!nav.includes('Alarms')) fail(`English is not remembered after a reload: ${nav}`);
  await page.waitForSelector('#conn[data-state="ok"]');
  for (const [id, label] of [['#tile-arrival', 'Arrival'], ['#tile-repair', 'Repair']]) {
    const text = await page.textContent(`${id} .label`);
    if (!text.includes(label)) fail(`in English ${id} is labelled ${JSON.stringify(text)}, not ${label}`);
  }
  await shot('overview-en');
  await page.click('#lang');
  await page.waitForFunction(() => document.querySelector('#nav-alarms').textContent.includes('告警'));

  // ---- a laptop screen.
  await page.setViewportSize({ width: 1366, height: 768 });
  await page.click('#nav-alarms');
  await page.waitForSelector('#alarms');
  await shot('alarms-laptop');

  if (errors.length) fail(errors.join('\n'));
  step('all checks passed');
} catch (e) {
  console.error(`FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
  if (errors.length) console.error(errors.join('\n'));
  exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);

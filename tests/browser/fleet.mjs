// The hub's fleet dashboard in a real browser (run by tests/fleet_dashboard.rs, which starts
// mosquitto, three gateways, the hub, and publishes the scorecards first): Debian's chromium,
// headless, driven by playwright-core. Checks that
//   - the estates table lists every fresh estate with the intactness /api/estates has, and
//     the configured estate that never reported marked 数据过期;
//   - sorting by a column and the district filter work, and an estate with a configured
//     dashboard URL links to it;
//   - an alarm raised at one estate (an elevator entrapment, published here with
//     mosquitto_pub) is on the hub's alarm list within 2 s, newest first;
//   - the league tab of the period shows the red list (红榜), the black list (黑榜) and the
//     ranks that `hub league --format json` printed, and the period type selector works;
//   - no script error;
// and writes fleet-*.png screenshots to $ESTATE_SCREENSHOTS.
//
// Environment: HUB_URL, ESTATE_MQTT_PORT, ESTATE_SCREENSHOTS, ALARM_SITE, FRESH_SITES
// (comma-separated), STALE_SITE, LEAGUE_PERIOD, LEAGUE_EXPECTED ({red, black, ranks}),
// ESTATE_CHROMIUM (default /usr/bin/chromium). Exit 0 when every check passed.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

class Failure extends Error {}
function fail(msg) {
  throw new Failure(msg);
}
const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) fail(`${k} is not set (tests/fleet_dashboard.rs sets it)`);
  return v;
};
const step = (msg) => console.log(`fleet.mjs: ${msg}`);

const HUB = env('HUB_URL');
const MQTT_PORT = env('ESTATE_MQTT_PORT');
const SHOTS = env('ESTATE_SCREENSHOTS');
const ALARM_SITE = env('ALARM_SITE');
const FRESH = env('FRESH_SITES').split(',');
const STALE = env('STALE_SITE');
const PERIOD = env('LEAGUE_PERIOD');
const EXPECTED = JSON.parse(env('LEAGUE_EXPECTED'));
const CHROMIUM = env('ESTATE_CHROMIUM', '/usr/bin/chromium');

if (!existsSync(CHROMIUM)) fail(`no chromium at ${CHROMIUM}; run scripts/install-test-deps`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`cannot load playwright-core (${e.message}); run scripts/install-test-deps (npm ci in tests/browser)`);
}
mkdirSync(SHOTS, { recursive: true });
async function getJson(path) {
  const r = await fetch(HUB + path);
  if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}
const pct = (v) => (v == null ? '—' : (v * 100).toFixed(2) + '%');

const profile = mkdtempSync(join(tmpdir(), 'estate-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
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
  const sites = () => page.$$eval('#estate-table tr.estate', (rs) => rs.map((r) => r.dataset.site));

  // ---- the estates table.
  await page.goto(HUB + '/#/estates');
  if (!(await page.textContent('#nav-estates')).includes('项目总览')) fail('the page is not in Chinese by default');
  await page.waitForSelector('#conn[data-state="ok"]');
  for (const s of [...FRESH, STALE]) await page.waitForSelector(`#estate-table tr.estate[data-site="${s}"]`);
  const api = await getJson('/api/estates');
  for (const s of FRESH) {
    const row = `#estate-table tr.estate[data-site="${s}"]`;
    if ((await page.getAttribute(row, 'data-stale')) !== 'false') fail(`${s} is shown stale`);
    const want = pct(api.estates.find((e) => e.site === s).intactness);
    const got = (await page.textContent(`${row} [data-col="intactness"]`)).trim();
    if (got !== want) fail(`${s} shows intactness ${got}, /api/estates says ${want}`);
  }
  const staleRow = `#estate-table tr.estate[data-site="${STALE}"]`;
  if ((await page.getAttribute(staleRow, 'data-stale')) !== 'true' || !(await page.textContent(staleRow)).includes('数据过期')) {
    fail(`${STALE}, which never reported, is not marked 数据过期: ${await page.textContent(staleRow)}`);
  }
  const link = await page.getAttribute('#estate-table tr.estate[data-site="东苑"] a.estate-link', 'href');
  if (link !== 'http://10.0.0.1:8080/') fail(`东苑 links to ${link}, not its dashboard_url`);
  const west = '#estate-table tr.estate[data-site="西苑"] [data-col="alarms"]';
  if (!(await page.textContent(west)).includes('紧急')) fail(`西苑's critical alarm is not counted: ${await page.textContent(west)}`);
  step(`estates table: ${(await sites()).join(', ')}`);

  // Sorting: by active alarms (most first) 西苑 leads; by estate name, twice, reverses.
  await page.click('th.sort[data-key="site"]');
  await page.waitForSelector('th.sort[data-key="site"][data-dir="desc"]');
  const desc = await sites();
  await page.click('th.sort[data-key="site"]');
  await page.waitForSelector('th.sort[data-key="site"][data-dir="asc"]');
  const asc = await sites();
  if (JSON.stringify(asc) !== JSON.stringify([...desc].reverse())) fail(`sorting by estate twice does not reverse: ${desc} / ${asc}`);
  const names = await page.$$eval('#estate-table tr.estate td[data-col="site"]', (tds) => tds.map((td) => td.firstChild.textContent));
  const sorted = await page.evaluate((n) => [...n].sort((a, b) => a.localeCompare(b, 'zh-CN')), names);
  if (JSON.stringify(names) !== JSON.stringify(sorted)) fail(`ascending by estate shows ${names}, sorted is ${sorted}`);
  await page.click('th.sort[data-key="alarms"]');
  await page.waitForSelector('th.sort[data-key="alarms"][data-dir="desc"]');
  if ((await sites())[0] !== '西苑') fail(`sorted by active alarms, ${(await sites())[0]} comes first, not 西苑`);
  // Filter: 海淀区 has 西苑 and 北苑.
  await page.selectOption('#f-district', '海淀区');
  await page.waitForFunction(() => document.querySelectorAll('#estate-table tr.estate').length === 2);
  const haidian = (await sites()).sort();
  if (JSON.stringify(haidian) !== JSON.stringify(['北苑', '西苑'].sort())) fail(`the 海淀区 filter shows ${haidian}`);
  await page.selectOption('#f-company', '乙物业');
  await page.waitForFunction(() => document.querySelectorAll('#estate-table tr.estate').length === 1);
  if ((await sites())[0] !== '西苑') fail(`海淀区 + 乙物业 shows ${await sites()}`);
  await page.selectOption('#f-district', '');
  await page.selectOption('#f-company', '');
  await page.waitForFunction((n) => document.querySelectorAll('#estate-table tr.estate').length === n, FRESH.length + 1);
  await shot('fleet-estates');

  // ---- the central alarm list: an entrapment at ALARM_SITE within 2 s.
  await page.click('#nav-alarms');
  await page.waitForSelector('#alarms');
  const row = `#alarm-list tr.alarm[data-site="${ALARM_SITE}"]`;
  if (await page.$(row)) fail(`an alarm of ${ALARM_SITE} is listed before it was raised`);
  const t0 = Date.now();
  const pub = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', MQTT_PORT, '-q', '1',
    '-t', `estate/${ALARM_SITE}/elevator/E-1-1/telemetry`,
    '-m', JSON.stringify({ mode: 'normal', fault_code: 0, entrapment: true })], { encoding: 'utf8' });
  if (pub.status !== 0) fail(`mosquitto_pub failed (run scripts/install-test-deps): ${pub.error ?? ''} ${pub.stderr}`);
  await page.waitForSelector(row, { timeout: 2000 }).catch(() => fail(`the alarm of ${ALARM_SITE} was not on the hub's page within 2 s of being published`));
  const latency = Date.now() - t0;
  if (latency > 2000) fail(`the alarm took ${latency} ms to appear (limit 2000 ms)`);
  const first = await page.getAttribute('#alarm-list tr.alarm', 'data-site');
  if (first !== ALARM_SITE) fail(`the newest alarm (${ALARM_SITE}) is not first; ${first} is`);
  if (!(await page.textContent('#alarm-list tr.alarm[data-site="西苑"]'))) fail('西苑\'s alarm is missing from the central list');
  step(`alarm at ${ALARM_SITE} on the hub's page ${latency} ms after publishing`);
  await shot('fleet-alarms');

  // ---- the league of the period: red and black lists and ranks as `hub league` prints them.
  await page.goto(HUB + '/#/league/' + PERIOD);
  await page.waitForSelector(`#league[data-period="${PERIOD}"]`);
  const red = await page.$$eval('#red-list li', (l) => l.map((x) => x.dataset.site));
  const black = await page.$$eval('#black-list li', (l) => l.map((x) => x.dataset.site));
  if (JSON.stringify(red) !== JSON.stringify(EXPECTED.red)) fail(`红榜 shows ${red}, hub league says ${EXPECTED.red}`);
  if (JSON.stringify(black) !== JSON.stringify(EXPECTED.black)) fail(`黑榜 shows ${black}, hub league says ${EXPECTED.black}`);
  if (!(await page.textContent('#red-list h2')).includes('红榜') || !(await page.textContent('#black-list h2')).includes('黑榜')) fail('the lists are not titled 红榜 / 黑榜');
  const rows = await page.$$eval('#league-table tr.league-row', (l) => l.map((r) => ({
    site: r.dataset.site, rank: r.dataset.rank, list: r.dataset.list, total: r.querySelector('[data-col="total"]').textContent.trim(),
  })));
  const want = EXPECTED.ranks.map((r) => ({ site: r.site, rank: r.rank == null ? '' : String(r.rank), list: r.list ?? '', total: r.total == null ? '—' : r.total.toFixed(2) }));
  if (JSON.stringify(rows) !== JSON.stringify(want)) fail(`the league table shows ${JSON.stringify(rows)}, hub league says ${JSON.stringify(want)}`);
  for (const s of EXPECTED.red) if (!(await page.getAttribute(`#league-table tr[data-site="${s}"]`, 'class')).includes('list-red')) fail(`${s} is not highlighted red`);
  for (const s of EXPECTED.black) if (!(await page.getAttribute(`#league-table tr[data-site="${s}"]`, 'class')).includes('list-black')) fail(`${s} is not highlighted black`);
  step(`league ${PERIOD}: 红榜 ${red}, 黑榜 ${black}, ${rows.length} rows as hub league says`);
  await shot('fleet-league');
  await page.selectOption('#league-kind', 'quarter');
  await page.waitForSelector('#league[data-period*="Q"]');
  const q = await page.getAttribute('#league', 'data-period');
  if (!/^\d{4}Q[1-4]$/.test(q) || !(await page.evaluate(() => location.hash)).endsWith(q)) fail(`choosing 季度 shows period ${q}`);

  // ---- English.
  await page.click('#lang');
  await page.waitForFunction(() => document.querySelector('#nav-league').textContent.includes('League'));
  await page.click('#lang');

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

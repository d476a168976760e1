// Loads a running node's dashboard in headless Chromium and checks that every
// view shows the values the integration test read from the gold tables and
// the live aggregates. Run by tests/tests/integration/dashboard.rs:
//
//   node tests/browser/dashboard.mjs NODE_URL EXPECTED_JSON SCREENSHOT_DIR [empty]
//
// Exits non-zero with a list of differences; saves one screenshot per view.
// With `empty` (before any gold run) it checks that each gold view explains
// that there is no data yet instead of failing.
import { readFileSync, mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [url, expectedPath, screenshots, mode] = process.argv.slice(2);
const expected = mode === "empty" ? {} : JSON.parse(readFileSync(expectedPath, "utf8"));
mkdirSync(screenshots, { recursive: true });
const problems = [];

// How a user reads each kind of value, written here apart from the
// dashboard's formatting: counts with thousands separators, shares as
// percentages with one decimal, measures with a fixed number of decimals.
const read = {
  text: (v) => String(v),
  count: (v) => withSeparators(String(v)),
  percent: (v) => `${(100 * v).toFixed(1)} %`,
  decimals: (digits) => (v) => withSeparators(v.toFixed(digits)),
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const outside = [];
  page.on("request", (request) => {
    const host = new URL(request.url()).hostname;
    if (host !== "127.0.0.1") outside.push(request.url());
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error}`));
  await page.goto(`${url}/dashboard`);

  const open = async (view) => {
    await page.click(`#tabs button[data-view="${view}"]`);
    await page.waitForFunction((v) => document.body.dataset.loaded === v, view, { timeout: 30000 });
    const state = await page.$eval(`.state[data-for="${view}"]`, (el) => el.classList.contains("error") ? el.textContent : "");
    if (state) problems.push(`${view}: error shown: ${state}`);
  };
  // Each cell's raw value under its column's key, and the text a user reads
  // under "text:" + key.
  const rows = (testId) => page.$$eval(`table[data-testid="${testId}"] tbody tr`, (trs) =>
    trs.map((tr) => Object.fromEntries([...tr.cells].flatMap((td) =>
      [[td.dataset.key, td.dataset.value], [`text:${td.dataset.key}`, td.textContent]]))));
  const shot = (view) => page.screenshot({ path: `${screenshots}/${view}.png`, fullPage: true });

  // Compares shown rows with expected ones, matched by `key` columns; each
  // of `columns` must be shown (the others of an expected row only when shown),
  // and the text of each column named in `readAs` must read as that rule
  // writes the expected value.
  const compare = (what, shown, wanted, keys, columns, readAs = {}) => {
    // Every view compared has rows in the test's lake: nothing expected
    // means a table came out empty, and nothing would be checked.
    if (wanted.length === 0) problems.push(`${what}: no rows expected`);
    if (shown.length !== wanted.length) {
      problems.push(`${what}: ${shown.length} rows shown, ${wanted.length} expected`);
    }
    for (const want of wanted) {
      const id = keys.map((k) => String(want[k])).join("/");
      const row = shown.find((r) => keys.every((k) => r[k] === String(want[k])));
      if (!row) { problems.push(`${what}: no row ${id}`); continue; }
      for (const column of columns) {
        if (!(column in row)) problems.push(`${what} ${id}: column ${column} not shown`);
      }
      for (const [column, value] of Object.entries(want)) {
        if (!(column in row)) continue;
        if (!same(row[column], value)) problems.push(`${what} ${id}.${column}: shown ${row[column]}, expected ${value}`);
      }
      for (const [column, rule] of Object.entries(readAs)) {
        if (want[column] === undefined) { problems.push(`${what} ${id}: no expected ${column} to read`); continue; }
        const text = row[`text:${column}`];
        const wantText = rule(want[column]);
        if (text !== wantText) problems.push(`${what} ${id}.${column}: reads "${text}", expected "${wantText}"`);
      }
    }
  };

  if (mode === "empty") {
    for (const view of ["retention", "dropoff", "regions", "top"]) {
      await open(view);
      const state = await page.$eval(`.state[data-for="${view}"]`, (el) => el.textContent);
      if (!state.includes("No gold data yet")) problems.push(`${view}: no empty state shown: ${state}`);
      await shot(`${view}-empty`);
    }
    await finish();
  }

  await open("retention");
  const retention = await page.$eval('table[data-testid="retention-table"]', (t) => t.dataset.videoId);
  if (retention !== expected.retention.video_id) {
    problems.push(`retention: shows ${retention}, expected the top video ${expected.retention.video_id}`);
  }
  compare("retention", await rows("retention-table"), expected.retention.rows, ["bucket_pct"],
    ["bucket_pct", "sessions", "viewers_reached", "retention"],
    { sessions: read.count, viewers_reached: read.count, retention: read.percent });
  compare("daily", await rows("daily-table"), expected.daily, ["day"],
    ["day", "sessions", "unique_viewers", "watch_hours", "avg_pct_watched", "completion_rate"],
    { day: read.text, sessions: read.count, unique_viewers: read.count, watch_hours: read.decimals(1),
      avg_pct_watched: read.decimals(1), completion_rate: read.percent });
  await shot("retention");

  // A chart's tooltip reads its values as the table does, not as raw doubles.
  await page.hover("#chart-daily");
  await page.waitForFunction(() => document.getElementById("chart-daily").innerText.includes("avg % watched"),
    null, { timeout: 10000 });
  const tooltip = await page.$eval("#chart-daily", (el) => el.innerText);
  const hovered = expected.daily.find((d) => tooltip.includes(d.day));
  if (!hovered) {
    problems.push(`daily chart tooltip names no day: ${tooltip}`);
  } else {
    for (const want of [read.count(hovered.sessions), read.decimals(1)(hovered.avg_pct_watched)]) {
      if (!tooltip.includes(want)) problems.push(`daily chart tooltip lacks "${want}": ${tooltip}`);
    }
  }
  if (/\d\.\d{4,}/.test(tooltip)) problems.push(`daily chart tooltip shows a raw double: ${tooltip}`);

  // A view whose tables are partly built says which one is missing, rather
  // than leaving its chart blank.
  await page.route("**/dashboard/api/gold/daily_engagement", (route) => route.fulfill({ json: { exists: false, rows: [] } }));
  await open("retention");
  const partial = await page.$eval('.state[data-for="retention"]', (el) => el.textContent);
  if (!partial.includes("daily_engagement has not been built yet")) {
    problems.push(`retention without daily_engagement: the state reads "${partial}"`);
  }
  await page.unroute("**/dashboard/api/gold/daily_engagement");
  // A curve with no rows for the picked video says so, beside the view's note.
  await page.route("**/dashboard/api/gold/viewer_retention*", (route) => route.fulfill({ json: { exists: true, rows: [] } }));
  await open("retention");
  const noCurve = await page.$eval('.state[data-for="retention"]', (el) => el.textContent);
  if (!noCurve.includes("viewer_retention holds no rows for")) {
    problems.push(`retention with an empty curve: the state reads "${noCurve}"`);
  }
  await page.unroute("**/dashboard/api/gold/viewer_retention*");

  await open("dropoff");
  compare("dropoff", await rows("dropoff-table"), expected.dropoff, ["genre", "bucket_pct"],
    ["genre", "bucket_pct", "sessions", "share"],
    { genre: read.text, bucket_pct: read.text, sessions: read.count, share: read.percent });
  await shot("dropoff");

  await open("regions");
  const day = await page.$eval('table[data-testid="regions-table"]', (t) => t.dataset.day);
  if (day !== expected.regions.day) problems.push(`regions: shows day ${day}, expected ${expected.regions.day}`);
  compare("regions", await rows("regions-table"), expected.regions.rows, ["region"],
    ["region", "sessions", "unique_viewers", "watch_hours"],
    { region: read.text, sessions: read.count, unique_viewers: read.count, watch_hours: read.decimals(2) });
  await page.waitForFunction(() => document.getElementById("chart-map").dataset.rendered === "1", null, { timeout: 30000 });
  await shot("regions");

  await open("top");
  compare("top videos", await rows("top-videos-table"), expected.top_videos, ["rank"],
    ["rank", "title", "creator", "genre", "sessions", "unique_viewers", "watch_hours", "completion_rate"],
    { title: read.text, creator: read.text, genre: read.text, sessions: read.count,
      unique_viewers: read.count, watch_hours: read.decimals(2), completion_rate: read.percent });
  compare("top creators", await rows("top-creators-table"), expected.top_creators, ["rank"],
    ["rank", "creator", "videos", "sessions", "watch_hours"],
    { creator: read.text, videos: read.count, sessions: read.count, watch_hours: read.decimals(2) });
  await shot("top");

  await open("live");
  const accepted = await page.$eval('[data-testid="accepted-total"]', (el) => el.dataset.value);
  if (!same(accepted, expected.accepted_total)) {
    problems.push(`live: accepted total ${accepted}, bronze holds ${expected.accepted_total}`);
  }
  compare("live top videos", await rows("live-top-table"), expected.live_top, ["video_id"], ["video_id", "events"],
    { events: read.count });
  // Nothing arrives any more: once the rates span enough samples, both read 0.
  await page.waitForFunction(() => ["rate-in", "rate-accepted"]
    .every((id) => document.getElementById(id).dataset.value === "0"), null, { timeout: 30000 })
    .catch(() => problems.push("live: the rates never read 0 on an idle node"));
  // The rate over a window of samples, restarting when a counter falls or is
  // unknown, or after a gap far longer than the window.
  const rates = await page.evaluate(() => {
    const samples = [];
    return [[0, 100], [2000, 300], [5000, 600], [12000, 1300], [14000, 1500], [16000, 50], [18000, null],
      [20000, 0], [80000, 600], [84000, 1000], [86000, 1200]]
      .map(([at, value]) => counterRate(samples, at, value)).concat([samples.length]);
  });
  if (JSON.stringify(rates) !== JSON.stringify([null, null, 100, 100, 100, null, null, null, null, null, 100, 3])) {
    problems.push(`live: counterRate answered ${JSON.stringify(rates)}`);
  }
  // A snapshot loaded (a new `load`) moves the counter up by far more than
  // was accepted: the samples start again rather than read a huge rate.
  const loaded = await page.evaluate(() => {
    const samples = [];
    return [[0, 100, 0], [2000, 300, 0], [5000, 600, 0], [7000, 900000, 4], [12000, 900500, 4]]
      .map(([at, value, load]) => counterRate(samples, at, value, load));
  });
  if (JSON.stringify(loaded) !== JSON.stringify([null, null, 100, null, 100])) {
    problems.push(`live: counterRate across a snapshot load answered ${JSON.stringify(loaded)}`);
  }
  await shot("live");

  await open("cluster");
  const leader = await page.$eval('[data-testid="leader"]', (el) => el.dataset.value);
  if (!same(leader, expected.leader)) problems.push(`cluster: leader ${leader}, expected ${expected.leader}`);
  compare("members", await rows("members-table"), expected.members, ["id"],
    ["id", "addr", "alive", "reaches_brokers", "can_ingest"]);
  compare("partitions", await rows("partitions-table"), expected.partitions, ["partition"],
    ["partition", "owner", "epoch", "committed_offset", "resumed"],
    { committed_offset: read.count });
  const jobs = await rows("jobs-table");
  for (const id of expected.job_run_ids) {
    if (!jobs.some((j) => j.id === String(id) && j.status === "succeeded")) {
      problems.push(`jobs: run ${id} not shown as succeeded`);
    }
  }
  await shot("cluster");
  await finish();

  async function finish() {
    if (outside.length) problems.push(`requests outside 127.0.0.1: ${outside.join(", ")}`);
    await browser.close();
    if (problems.length) {
      console.error(problems.join("\n"));
      process.exit(1);
    }
    console.log(`dashboard: every view as expected; screenshots in ${screenshots}`);
    process.exit(0);
  }
} finally {
  await browser.close();
}

function withSeparators(number) {
  const [whole, fraction] = number.split(".");
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction === undefined ? grouped : `${grouped}.${fraction}`;
}

function same(shown, wanted) {
  if (typeof wanted === "number") {
    const value = Number(shown);
    return shown !== "" && Math.abs(value - wanted) <= 1e-9 * Math.max(1, Math.abs(value), Math.abs(wanted));
  }
  return shown === String(wanted ?? "");
}

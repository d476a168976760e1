// StreamReel dashboard: six views over the gold tables (/dashboard/api/gold),
// the live aggregates (/live, /dashboard/api/live) and the admin API (/admin).
// Every figure shown is a value of those answers; tables carry the raw value
// of each cell in `data-value`.
"use strict";

// Where each region is drawn on the map ([longitude, latitude]).
const REGION_PLACES = {
  "us-east": [-77.0, 38.9], "us-west": [-121.5, 45.5], "eu-west": [-6.3, 53.3],
  "eu-central": [8.7, 50.1], "ap-south": [72.9, 19.1], "ap-northeast": [139.7, 35.7],
  "sa-east": [-46.6, -23.5], "af-south": [18.4, -33.9], "me-central": [55.3, 25.3],
  "ap-southeast": [103.8, 1.35], "ca-central": [-73.6, 45.5],
};
// A region's place, or undefined: regions are viewers' data, and one named
// like an inherited property ("constructor") must not find Object's.
const placeOf = (region) => (Object.hasOwn(REGION_PLACES, region) ? REGION_PLACES[region] : undefined);
const LIVE_EVERY_MS = 2000;
// The live rates are taken over the samples of the last RATE_WINDOW_MS, and
// shown once they span RATE_MIN_SPAN_MS: the records received come from
// watermarks up to a second old and the accepted counter moves once per
// checkpoint, so a rate over one 2 s tick could be off by half.
const RATE_WINDOW_MS = 10000;
const RATE_MIN_SPAN_MS = 5000;
const EMPTY_GOLD = "No gold data yet. Gold is built by the cluster's gold job (every 2 minutes by " +
  "default) or by `streamreel models run`; this view fills in after the first run.";
const EMPTY_TABLES = "The gold tables of this view exist but hold no rows: the last gold run " +
  "found no sessions for them.";

const charts = {};
let liveTimer = null;
// Samples of the live counters, as [milliseconds, value], oldest first.
let liveSamples = { received: [], accepted: [] };
// Bumped at each change of view, so that a view's pending refresh never
// schedules another once the user has moved on.
let shown = 0;

// ---- helpers -------------------------------------------------------------

function token() { return sessionStorage.getItem("streamreel-admin-token") || ""; }

async function getJson(path, timeoutMs = 10000) {
  const headers = {};
  if (path.startsWith("/admin/") && token()) headers.Authorization = "Bearer " + token();
  // A node that stops answering without refusing would hold the refresh
  // for minutes; a timeout shows the error on the next tick instead.
  const answer = await fetch(path, { headers, signal: AbortSignal.timeout(timeoutMs) });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(`${path}: ${body.error || answer.status}`);
  return body;
}

function gold(model, videoId) {
  const query = videoId ? "?video_id=" + encodeURIComponent(videoId) : "";
  // Longer than the node waits for a free read slot (30 s) plus the read:
  // a busy node then answers "busy, try again" instead of the page timing out.
  return getJson(`/dashboard/api/gold/${model}${query}`, 60000);
}

// Gold tables switch to a newer `view_sessions` version one at a time, so
// tables a view combines are read again, a few times, until they come from
// the same one. Tables that still differ (a gold run publishing slowly, or
// `models run --models` of only some) are shown with a note.
async function goldTogether(...models) {
  for (let attempt = 1; ; attempt++) {
    const answers = await Promise.all(models.map((model) => gold(model)));
    const versions = new Set(answers.filter((a) => a.exists && a.sessions_version != null).map((a) => a.sessions_version));
    if (versions.size <= 1 || attempt === 3) {
      const apart = versions.size <= 1 ? "" :
        `These tables were built from different view_sessions versions (${[...versions].sort((a, b) => a - b).join(", ")}); ` +
        "the next gold run brings them together.";
      answers.note = [partialNote(models, answers), apart].filter(Boolean).join(" ");
      return answers;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// Names the tables of a view that have nothing to draw while others do, so an
// empty chart beside full ones is explained (`models run --select` of only
// some, or a gold run that found no sessions for one).
function partialNote(models, answers) {
  if (answers.every((a) => !a.rows.length)) return "";
  const lacking = models
    .map((model, i) => [model, answers[i]])
    .filter(([, a]) => !a.rows.length)
    .map(([model, a]) => `${model} ${a.exists ? "holds no rows" : "has not been built yet"}`);
  return lacking.length ? `Not shown: ${lacking.join("; ")}.` : "";
}

// Why a view has nothing to draw: its tables were never built, or are empty.
function emptyGold(...answers) {
  return answers.some((a) => a.exists) ? EMPTY_TABLES : EMPTY_GOLD;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function setState(view, message, isError) {
  const el = document.querySelector(`.state[data-for="${view}"]`);
  el.textContent = message || "";
  el.classList.toggle("error", !!isError);
}

function chart(id) {
  if (!charts[id]) charts[id] = echarts.init(document.getElementById(id));
  return charts[id];
}

const fmt = {
  int: (v) => v == null ? "–" : Number(v).toLocaleString("en-US"),
  dec: (digits) => (v) => v == null ? "–" : Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }),
  pct: (v) => v == null ? "–" : (100 * v).toFixed(1) + " %",
  text: (v) => v == null ? "–" : String(v),
  time: (us) => us == null ? "–" : new Date(us / 1000).toISOString().replace("T", " ").slice(0, 19),
};

// Adds a counter's sample taken at `at` (ms) and answers its rate per second
// over the window, or null when it spans too little time yet. An unknown
// value, one below the last (the member restarted), or one of another `load`
// (the member loaded a snapshot, which can move the counter up by far more
// than was accepted) says nothing about the rate: the samples start again.
function counterRate(samples, at, value, load = null) {
  if (value == null) {
    samples.length = 0;
    return null;
  }
  if (samples.length && (value < samples[samples.length - 1][1] || load !== samples.load)) samples.length = 0;
  samples.load = load;
  samples.push([at, value]);
  while (samples.length > 2 && at - samples[1][0] >= RATE_WINDOW_MS) samples.shift();
  // After a long gap (a hidden tab's timers slow down) the two samples left
  // would span far more than the window: start again from the newest.
  if (at - samples[0][0] > RATE_WINDOW_MS + 2 * LIVE_EVERY_MS) samples.splice(0, samples.length - 1);
  const [firstAt, first] = samples[0];
  const span = at - firstAt;
  return span >= RATE_MIN_SPAN_MS ? (1000 * (value - first)) / span : null;
}

// Shows `value` as `format` writes it, keeping the raw value in `data-value`
// (for tests and for copying).
function showValue(el, value, format = fmt.text) {
  el.textContent = format(value);
  el.dataset.value = value == null ? "" : String(value);
}

// columns: [{ key, label, num, format }]; each cell keeps its raw value.
function fillTable(table, columns, rows) {
  table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const column of columns) {
    const th = document.createElement("th");
    th.textContent = column.label;
    th.dataset.key = column.key;
    if (column.num) th.className = "num";
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const column of columns) {
      const td = tr.insertCell();
      const value = row[column.key];
      td.dataset.key = column.key;
      showValue(td, value, column.format);
      if (column.num) td.className = "num";
    }
  }
  if (table.classList.contains("sortable")) makeSortable(table, columns, rows);
}

function makeSortable(table, columns, rows) {
  table.querySelectorAll("th").forEach((th, i) => {
    th.onclick = () => {
      const key = columns[i].key;
      const descending = table.dataset.sortKey === key && table.dataset.sortDir !== "desc";
      const sorted = [...rows].sort((a, b) => (a[key] > b[key] ? 1 : a[key] < b[key] ? -1 : 0) * (descending ? -1 : 1));
      fillTable(table, columns, sorted);
      table.dataset.sortKey = key;
      table.dataset.sortDir = descending ? "desc" : "asc";
    };
  });
}

function table(testId) { return document.querySelector(`table[data-testid="${testId}"]`); }

// ---- views ---------------------------------------------------------------

const views = {
  async retention() {
    const answers = await goldTogether("top_videos", "daily_engagement");
    const [top, daily] = answers;
    if (!top.rows.length && !daily.rows.length) return setState("retention", emptyGold(top, daily));
    retentionViewNote = answers.note;
    setState("retention", answers.note);
    const videos = [...top.rows].sort((a, b) => a.rank - b.rank);
    const list = document.getElementById("video-list");
    list.innerHTML = "";
    for (const v of videos) {
      const option = document.createElement("option");
      option.value = v.video_id;
      option.label = `#${v.rank} ${v.title} (${v.creator})`;
      list.appendChild(option);
    }
    const search = document.getElementById("video-search");
    search.onchange = () => {
      const text = search.value.trim().toLowerCase();
      const found = videos.find((v) => v.video_id.toLowerCase() === text) ||
        videos.find((v) => v.title.toLowerCase().includes(text) || v.video_id.toLowerCase().includes(text));
      if (found) showRetention(found).catch((error) => setState("retention", String(error.message || error), true));
    };
    if (videos.length) await showRetention(videos[0]);

    const days = [...daily.rows].sort((a, b) => (a.day < b.day ? -1 : 1));
    chart("chart-daily").setOption({
      tooltip: { trigger: "axis" },
      legend: { data: ["sessions", "avg % watched"] },
      xAxis: { type: "category", data: days.map((d) => d.day) },
      yAxis: [{ type: "value", name: "sessions" }, { type: "value", name: "%", max: 100 }],
      series: [
        { name: "sessions", type: "bar", data: days.map((d) => d.sessions), tooltip: { valueFormatter: fmt.int } },
        {
          name: "avg % watched", type: "line", yAxisIndex: 1, data: days.map((d) => d.avg_pct_watched),
          tooltip: { valueFormatter: fmt.dec(1) },
        },
      ],
    }, true);
    fillTable(table("daily-table"), [
      { key: "day", label: "day" },
      { key: "sessions", label: "sessions", num: true, format: fmt.int },
      { key: "unique_viewers", label: "viewers", num: true, format: fmt.int },
      { key: "watch_hours", label: "watch hours", num: true, format: fmt.dec(1) },
      { key: "avg_pct_watched", label: "avg % watched", num: true, format: fmt.dec(1) },
      { key: "completion_rate", label: "completion", num: true, format: fmt.pct },
    ], days);
  },

  async dropoff() {
    const answer = await gold("dropoff_by_genre");
    if (!answer.rows.length) return setState("dropoff", emptyGold(answer));
    setState("dropoff", "");
    const rows = [...answer.rows].sort((a, b) => (a.genre < b.genre ? -1 : a.genre > b.genre ? 1 : a.bucket_pct - b.bucket_pct));
    const genres = [...new Set(rows.map((r) => r.genre))];
    const buckets = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90];
    chart("chart-dropoff").setOption({
      // Genres come from the metadata file: escaped, as this tooltip is HTML.
      tooltip: { formatter: (p) => `${escapeHtml(genres[p.value[1]])}, exit at ${buckets[p.value[0]]}–${buckets[p.value[0]] + 10} %: ${(100 * p.value[2]).toFixed(1)} % of sessions` },
      xAxis: { type: "category", data: buckets.map((b) => `${b}–${b + 10} %`), name: "exit position" },
      yAxis: { type: "category", data: genres },
      visualMap: { min: 0, max: Math.max(...rows.map((r) => r.share)), calculable: true, orient: "horizontal", left: "center", bottom: 0 },
      grid: { bottom: 80, left: 110 },
      series: [{
        type: "heatmap",
        data: rows.map((r) => [buckets.indexOf(r.bucket_pct), genres.indexOf(r.genre), r.share]),
        label: { show: true, formatter: (p) => (100 * p.value[2]).toFixed(0) },
      }],
    }, true);
    fillTable(table("dropoff-table"), [
      { key: "genre", label: "genre" },
      { key: "bucket_pct", label: "exit bucket %", num: true },
      { key: "sessions", label: "sessions", num: true, format: fmt.int },
      { key: "share", label: "share", num: true, format: fmt.pct },
    ], rows);
  },

  async regions() {
    const answer = await gold("regional_viewership");
    if (!answer.rows.length) return setState("regions", emptyGold(answer));
    const days = [...new Set(answer.rows.map((r) => r.day))].sort();
    const select = document.getElementById("region-day");
    const chosen = days.includes(select.value) ? select.value : days[days.length - 1];
    select.innerHTML = days.map((d) => `<option${d === chosen ? " selected" : ""}>${d}</option>`).join("");
    select.onchange = () => showRegions(answer.rows, select.value);
    const unplaced = [...new Set(answer.rows.map((r) => r.region))].filter((r) => !placeOf(r));
    setState("regions", unplaced.length ? `Not on the map (no known place): ${unplaced.join(", ")}; they are in the table.` : "");
    await worldMap();
    showRegions(answer.rows, chosen);
  },

  async top() {
    const answers = await goldTogether("top_videos", "top_creators");
    const [videos, creators] = answers;
    if (!videos.rows.length && !creators.rows.length) return setState("top", emptyGold(videos, creators));
    setState("top", answers.note);
    const v = [...videos.rows].sort((a, b) => a.rank - b.rank).slice(0, 20);
    const c = [...creators.rows].sort((a, b) => a.rank - b.rank).slice(0, 20);
    const bars = (rows, label) => ({
      tooltip: { trigger: "axis" },
      grid: { left: 160 },
      xAxis: { type: "value", name: "watch hours" },
      yAxis: { type: "category", inverse: true, data: rows.slice(0, 10).map(label) },
      series: [{ type: "bar", data: rows.slice(0, 10).map((r) => r.watch_hours), tooltip: { valueFormatter: fmt.dec(2) } }],
    });
    chart("chart-top-videos").setOption(bars(v, (r) => r.title), true);
    chart("chart-top-creators").setOption(bars(c, (r) => r.creator), true);
    fillTable(table("top-videos-table"), [
      { key: "rank", label: "#", num: true },
      { key: "title", label: "title" },
      { key: "creator", label: "creator" },
      { key: "genre", label: "genre" },
      { key: "sessions", label: "sessions", num: true, format: fmt.int },
      { key: "unique_viewers", label: "viewers", num: true, format: fmt.int },
      { key: "watch_hours", label: "watch hours", num: true, format: fmt.dec(2) },
      { key: "completion_rate", label: "completion", num: true, format: fmt.pct },
    ], v);
    fillTable(table("top-creators-table"), [
      { key: "rank", label: "#", num: true },
      { key: "creator", label: "creator" },
      { key: "videos", label: "videos", num: true, format: fmt.int },
      { key: "sessions", label: "sessions", num: true, format: fmt.int },
      { key: "watch_hours", label: "watch hours", num: true, format: fmt.dec(2) },
    ], c);
  },

  async live() {
    const [status, live, top] = await Promise.all([
      getJson("/admin/status"), getJson("/dashboard/api/live"), getJson("/live/top-videos?minutes=10&limit=10"),
    ]);
    setState("live", live.minutes.length ? "" : "No accepted events yet: start the simulator or point producers at the input topic.");
    const now = performance.now();
    // Without every partition's high watermark (the broker did not answer)
    // the records received are unknown: no rate rather than a wrong one.
    const received = status.partitions.every((p) => p.high_watermark != null)
      ? status.partitions.reduce((sum, p) => sum + p.high_watermark, 0)
      : null;
    const perSecond = (rate) => fmt.int(rate == null ? rate : Math.round(rate));
    showValue(document.getElementById("rate-in"), counterRate(liveSamples.received, now, received), perSecond);
    showValue(document.getElementById("rate-accepted"), counterRate(liveSamples.accepted, now, live.accepted_counter, live.accepted_counter_load), perSecond);
    showValue(document.getElementById("accepted-total"), live.accepted_total, fmt.int);
    chart("chart-live-minutes").setOption({
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: live.minutes.map((m) => m.minute.slice(11, 16)) },
      yAxis: { type: "value" },
      series: [{ type: "line", areaStyle: {}, data: live.minutes.map((m) => m.events), tooltip: { valueFormatter: fmt.int } }],
    });
    chart("chart-lag").setOption({
      tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: status.partitions.map((p) => "p" + p.partition) },
      yAxis: { type: "value", name: "records" },
      series: [{ type: "bar", data: status.partitions.map((p) => p.lag), tooltip: { valueFormatter: fmt.int } }],
    });
    fillTable(table("live-top-table"), [
      { key: "video_id", label: "video" },
      { key: "events", label: "events", num: true, format: fmt.int },
    ], top.videos);
  },

  async cluster() {
    const [status, jobs] = await Promise.all([getJson("/admin/status"), getJson("/admin/jobs")]);
    if (status.removed) {
      setState("cluster", "This node was removed from the cluster and runs no partition: stop it, and open another member's dashboard.", true);
    } else {
      setState("cluster", status.leader == null ? "No leader yet: the members are electing one." : "");
    }
    for (const key of ["leader", "term", "node"]) {
      showValue(document.querySelector(`[data-testid="${key}"]`), status[key]);
    }
    fillTable(table("members-table"), [
      { key: "id", label: "id", num: true },
      { key: "addr", label: "address" },
      { key: "alive", label: "alive", format: (a) => (a ? "yes" : "NO") },
      { key: "reaches_brokers", label: "reaches broker", format: (r) => (r == null ? "–" : r ? "yes" : "NO") },
      { key: "can_ingest", label: "can take partitions", format: (c) => (c ? "yes" : "NO") },
      { key: "role", label: "role" },
    ], status.nodes.map((n) => ({ ...n, role: n.id === status.leader ? "leader" : "follower" })));
    fillTable(table("partitions-table"), [
      { key: "partition", label: "partition", num: true },
      { key: "owner", label: "owner", num: true },
      { key: "epoch", label: "epoch", num: true },
      { key: "committed_offset", label: "committed offset", num: true, format: fmt.int },
      { key: "lag", label: "lag", num: true, format: fmt.int },
      { key: "checkpoint_age_ms", label: "checkpoint age ms", num: true, format: fmt.int },
      // A moved partition's owner has resumed it once a checkpoint of its epoch is in.
      { key: "resumed", label: "resumed by owner", format: (r) => (r == null ? "–" : r ? "yes" : "not yet") },
      { key: "last_error", label: "last error (this node)" },
    ], status.partitions.map((p) => ({
      ...p,
      // Owned without any checkpoint yet: not resumed.
      resumed: p.owner == null ? null : p.checkpoint_epoch === p.epoch,
      // This node knows only the errors of the partitions it runs.
      last_error: p.owner === status.node
        ? (status.ingest.find((i) => i.partition === p.partition) || {}).last_error
        : null,
    })));
    fillTable(table("jobs-table"), [
      { key: "id", label: "run", num: true },
      { key: "job", label: "job" },
      { key: "status", label: "status" },
      { key: "trigger", label: "trigger" },
      { key: "started_at_us", label: "started (UTC)", format: fmt.time },
      { key: "seconds", label: "seconds", num: true, format: fmt.dec(1) },
      { key: "detail", label: "detail" },
    ], [...jobs.runs].sort((a, b) => b.id - a.id).slice(0, 10).map((r) => ({
      ...r,
      seconds: r.ended_at_us == null ? null : (r.ended_at_us - r.started_at_us) / 1e6,
      detail: r.error || r.detail,
    })));
  },
};

// Which pick the retention view shows: an answer for an earlier pick that
// arrives after a later one is dropped.
let retentionPick = 0;
// The view's own note (tables missing or of different versions), kept beside
// what the pick adds.
let retentionViewNote = "";

async function showRetention(video) {
  const pick = ++retentionPick;
  document.getElementById("video-search").value = video.video_id;
  document.getElementById("video-picked").textContent = `${video.title} · ${video.creator} · ${video.genre}`;
  const answer = await gold("viewer_retention", video.video_id);
  if (pick !== retentionPick) return;
  const own = !answer.exists ? "viewer_retention has not been built yet: " + EMPTY_GOLD
    : !answer.rows.length ? `viewer_retention holds no rows for ${video.video_id} yet: a gold run of all models builds its curve.`
    : "";
  setState("retention", [retentionViewNote, own].filter(Boolean).join(" "));
  const rows = [...answer.rows].sort((a, b) => a.bucket_pct - b.bucket_pct);
  chart("chart-retention").setOption({
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", name: "% of video", data: rows.map((r) => r.bucket_pct) },
    yAxis: { type: "value", name: "share of sessions", max: 1 },
    series: [{ type: "line", areaStyle: {}, data: rows.map((r) => r.retention), tooltip: { valueFormatter: fmt.pct } }],
  }, true);
  const t = table("retention-table");
  t.dataset.videoId = video.video_id;
  fillTable(t, [
    { key: "bucket_pct", label: "reached %", num: true },
    { key: "sessions", label: "sessions", num: true, format: fmt.int },
    { key: "viewers_reached", label: "reached", num: true, format: fmt.int },
    { key: "retention", label: "retention", num: true, format: fmt.pct },
  ], rows);
}

let worldLoaded = null;
function worldMap() {
  if (!worldLoaded) {
    worldLoaded = fetch("/dashboard/assets/vendor/world-atlas/countries-110m.json")
      .then((r) => r.json())
      .then((topology) => echarts.registerMap("world", topojson.feature(topology, topology.objects.countries)))
      // A failed download is tried again on the next refresh, not kept.
      .catch((e) => { worldLoaded = null; throw e; });
  }
  return worldLoaded;
}

function showRegions(all, day) {
  const rows = all.filter((r) => r.day === day).sort((a, b) => b.sessions - a.sessions);
  const maxSessions = Math.max(1, ...rows.map((r) => r.sessions));
  // Marks the map drawn (its animation ended), for screenshots.
  const map = chart("chart-map");
  map.getDom().dataset.rendered = "";
  map.off("finished");
  map.on("finished", () => { map.getDom().dataset.rendered = "1"; });
  map.setOption({
    tooltip: { formatter: (p) => `${p.name}: ${fmt.int(p.value?.[2])} sessions, ${fmt.dec(1)(p.value?.[3])} watch hours` },
    geo: { map: "world", roam: true, itemStyle: { areaColor: "#dde3ec", borderColor: "#fff" } },
    series: [{
      type: "scatter",
      coordinateSystem: "geo",
      symbolSize: (v) => 10 + 40 * Math.sqrt((v?.[2] || 0) / maxSessions),
      label: { show: true, position: "right", formatter: (p) => `${p.name}: ${fmt.int(p.value?.[2])}` },
      data: rows.filter((r) => placeOf(r.region)).map((r) => ({
        name: r.region, value: [...placeOf(r.region), r.sessions, r.watch_hours],
      })),
    }],
  }, true);
  const t = table("regions-table");
  t.dataset.day = day;
  fillTable(t, [
    { key: "region", label: "region" },
    { key: "sessions", label: "sessions", num: true, format: fmt.int },
    { key: "unique_viewers", label: "viewers", num: true, format: fmt.int },
    { key: "watch_hours", label: "watch hours", num: true, format: fmt.dec(2) },
  ], rows);
}

// ---- navigation ----------------------------------------------------------

// A chart in a hidden view has no size; it is resized when its view shows.
function resizeVisibleCharts() {
  for (const c of Object.values(charts)) {
    if (c.getDom().offsetParent !== null) c.resize();
  }
}

async function show(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === "view-" + name));
  clearTimeout(liveTimer);
  liveSamples = { received: [], accepted: [] };
  const mine = ++shown;
  const run = async () => {
    try {
      await views[name]();
    } catch (error) {
      setState(name, String(error.message || error), true);
    }
    if (mine !== shown) return;
    document.body.dataset.loaded = name;
    resizeVisibleCharts();
  };
  document.body.dataset.loaded = "";
  await run();
  if (name !== "live" && name !== "cluster") return;
  // The next refresh is scheduled once this one ended (a slow answer never
  // overlaps the next), and only while this view is still the one shown.
  const refresh = async () => {
    if (mine !== shown) return;
    await run();
    if (mine === shown) liveTimer = setTimeout(refresh, LIVE_EVERY_MS);
  };
  if (mine === shown) liveTimer = setTimeout(refresh, LIVE_EVERY_MS);
}

document.querySelectorAll("#tabs button").forEach((b) => { b.onclick = () => show(b.dataset.view); });
const tokenInput = document.getElementById("token");
tokenInput.value = token();
tokenInput.onchange = () => sessionStorage.setItem("streamreel-admin-token", tokenInput.value.trim());
window.addEventListener("resize", resizeVisibleCharts);
show(Object.hasOwn(views, location.hash.slice(1)) ? location.hash.slice(1) : "retention");

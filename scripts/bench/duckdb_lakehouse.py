"""The lakehouse benchmark's baseline: the contract's silver and gold in DuckDB.

Usage:
  duckdb_lakehouse.py build MANIFEST METADATA_CSV OUT_DIR
      Builds enriched events, sessions and the six gold tables from the bronze
      Parquet files listed in MANIFEST (JSON: {"bronze": [file, ...]}), writing
      each as Parquet under OUT_DIR, as StreamReel writes its silver and gold.
  duckdb_lakehouse.py compare MANIFEST OUT_DIR
      Compares StreamReel's gold (MANIFEST: {"gold": {model: [file, ...]}})
      with DuckDB's, row by row on each table's key; prints one line per table
      and exits 1 on any difference.

The SQL is written from the contract on its own (it shares nothing with
StreamReel's models): sessions use window functions, retention a cross join.
"""

import json
import sys

import duckdb

SESSIONS = """
CREATE TABLE view_sessions AS
WITH ev AS (
  -- Events of two partitions tied on time and offset: by what they say, as StreamReel does;
  -- events tied on all of that (one event enriched twice): by their attributes, so the
  -- session's attributes do not depend on the order the rows are read in.
  SELECT *, ROW_NUMBER() OVER (
    PARTITION BY session_id
    ORDER BY event_time, kafka_offset,
      CASE event_type WHEN 'play' THEN 0 WHEN 'pause' THEN 1 WHEN 'seek' THEN 2 ELSE 3 END,
      position_s, seek_to_s NULLS FIRST,
      user_key NULLS FIRST, video_id NULLS FIRST, genre NULLS FIRST, creator NULLS FIRST,
      region NULLS FIRST, device NULLS FIRST, duration_s NULLS FIRST
  ) AS rn
  FROM enriched
  WHERE event_type IN ('play', 'pause', 'seek', 'stop')
),
w AS (
  SELECT *,
    LAG(event_type) OVER s AS prev_type,
    LAG(position_s) OVER s AS prev_pos,
    LAG(seek_to_s) OVER s AS prev_seek,
    LAST_VALUE(CASE WHEN event_type <> 'seek' THEN event_type END IGNORE NULLS)
      OVER (s ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS mode_before,
    MIN(CASE WHEN event_type = 'stop' THEN rn END) OVER (PARTITION BY session_id) AS stop_rn,
    FIRST_VALUE(CASE WHEN duration_s > 0 THEN duration_s END) OVER s AS d
  FROM ev
  WINDOW s AS (PARTITION BY session_id ORDER BY rn)
),
seg AS (
  SELECT *,
    rn <= COALESCE(stop_rn, rn) AS considered,
    COALESCE(mode_before = 'play', false) AS playing_before,
    CASE prev_type WHEN 'play' THEN prev_pos WHEN 'seek' THEN COALESCE(prev_seek, prev_pos) END AS from_s,
    CASE WHEN d IS NULL THEN position_s ELSE LEAST(position_s, d) END AS capped
  FROM w
),
s AS (
  SELECT
    session_id,
    ARG_MIN(user_key, rn) AS user_key,
    ARG_MIN(video_id, rn) AS video_id,
    ARG_MIN(genre, rn) AS genre,
    ARG_MIN(creator, rn) AS creator,
    ARG_MIN(region, rn) AS region,
    ARG_MIN(device, rn) AS device,
    MIN(event_time) AS started_at,
    COUNT(*) AS event_count,
    SUM(CASE WHEN considered AND playing_before THEN GREATEST(capped - GREATEST(from_s, 0), 0) ELSE 0 END) AS watch_s,
    GREATEST(COALESCE(MAX(CASE WHEN considered AND playing_before THEN capped END), 0), 0) AS max_position_s,
    ARG_MAX(capped, rn) FILTER (WHERE considered) AS exit_position_s,
    ARG_MIN(d, rn) AS duration_s
  FROM seg
  GROUP BY session_id
)
SELECT *,
  CAST(started_at AS DATE) AS day,
  100 * max_position_s / duration_s AS pct_watched,
  max_position_s >= 0.95 * duration_s AS completed
FROM s
"""

GOLD = {
    "viewer_retention": """
SELECT s.video_id, CAST(b.value AS INT) AS bucket_pct, COUNT(*) AS sessions,
  COUNT(*) FILTER (WHERE s.pct_watched >= b.value) AS viewers_reached,
  COUNT(*) FILTER (WHERE s.pct_watched >= b.value) / COUNT(*) AS retention
FROM view_sessions s CROSS JOIN range(0, 101, 5) b(value)
WHERE s.duration_s IS NOT NULL
GROUP BY s.video_id, b.value
""",
    "dropoff_by_genre": """
SELECT genre, bucket_pct, COUNT(*) AS sessions,
  COUNT(*) / SUM(COUNT(*)) OVER (PARTITION BY genre) AS share
FROM (
  SELECT genre, CAST(LEAST(CASE
      WHEN 10 * e >= (b + 1) * d THEN b + 1
      WHEN 10 * e < b * d THEN b - 1
      ELSE b END, 9) * 10 AS INT) AS bucket_pct
  FROM (
    SELECT genre, exit_position_s AS e, duration_s AS d,
      CAST(FLOOR(10 * exit_position_s / duration_s) AS INT) AS b
    FROM view_sessions WHERE duration_s IS NOT NULL
  )
)
GROUP BY genre, bucket_pct
""",
    "regional_viewership": """
SELECT day, region, COUNT(*) AS sessions, COUNT(DISTINCT user_key) AS unique_viewers,
  SUM(watch_s) / 3600 AS watch_hours
FROM view_sessions WHERE duration_s IS NOT NULL
GROUP BY day, region
""",
    "top_videos": """
SELECT p.video_id, m.title, m.creator, m.genre, p.sessions, p.unique_viewers, p.watch_hours,
  p.completion_rate, ROW_NUMBER() OVER (ORDER BY p.watch_hours DESC, p.video_id) AS rank
FROM (
  SELECT video_id, COUNT(*) AS sessions, COUNT(DISTINCT user_key) AS unique_viewers,
    SUM(watch_s) / 3600 AS watch_hours, AVG(CASE WHEN completed THEN 1 ELSE 0 END) AS completion_rate
  FROM view_sessions WHERE duration_s IS NOT NULL GROUP BY video_id
) p JOIN meta m ON m.video_id = p.video_id
""",
    "top_creators": """
SELECT creator, videos, sessions, watch_hours,
  ROW_NUMBER() OVER (ORDER BY watch_hours DESC, creator) AS rank
FROM (
  SELECT creator, COUNT(DISTINCT video_id) AS videos, COUNT(*) AS sessions,
    SUM(watch_s) / 3600 AS watch_hours
  FROM view_sessions WHERE duration_s IS NOT NULL GROUP BY creator
)
""",
    "daily_engagement": """
SELECT day, COUNT(*) AS sessions, COUNT(DISTINCT user_key) AS unique_viewers,
  SUM(watch_s) / 3600 AS watch_hours, AVG(pct_watched) AS avg_pct_watched,
  AVG(CASE WHEN completed THEN 1 ELSE 0 END) AS completion_rate
FROM view_sessions WHERE duration_s IS NOT NULL GROUP BY day
""",
}

KEYS = {
    "viewer_retention": ["video_id", "bucket_pct"],
    "dropoff_by_genre": ["genre", "bucket_pct"],
    "regional_viewership": ["day", "region"],
    "top_videos": ["video_id"],
    "top_creators": ["creator"],
    "daily_engagement": ["day"],
}


def connect():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def build(manifest, metadata, out_dir):
    con = connect()
    files = json.load(open(manifest))["bronze"]
    con.execute(
        "CREATE TABLE meta AS SELECT video_id, title, genre, creator, duration_s "
        "FROM read_csv(?, header = true, types = {'video_id': 'VARCHAR', 'title': 'VARCHAR', "
        "'genre': 'VARCHAR', 'creator': 'VARCHAR', 'duration_s': 'DOUBLE'})",
        [metadata],
    )
    con.execute(
        "CREATE TABLE enriched AS SELECT b.*, m.title, m.genre, m.creator, m.duration_s, "
        "CAST(b.event_time AS DATE) AS event_date "
        "FROM read_parquet(?) b LEFT JOIN meta m ON b.video_id = m.video_id",
        [files],
    )
    con.execute(f"COPY enriched TO '{out_dir}/enriched_events.parquet' (FORMAT parquet)")
    con.execute(SESSIONS)
    con.execute(f"COPY view_sessions TO '{out_dir}/view_sessions.parquet' (FORMAT parquet)")
    for name, sql in GOLD.items():
        con.execute(f"COPY ({sql}) TO '{out_dir}/{name}.parquet' (FORMAT parquet)")
    events = con.execute("SELECT COUNT(*) FROM enriched").fetchone()[0]
    sessions = con.execute("SELECT COUNT(*) FROM view_sessions").fetchone()[0]
    print(json.dumps({"events": events, "sessions": sessions}))


def compare(manifest, out_dir):
    con = connect()
    gold = json.load(open(manifest))["gold"]
    differences = 0
    for name, keys in KEYS.items():
        ours = f"read_parquet('{out_dir}/{name}.parquet')"
        theirs = f"read_parquet({gold[name]!r})"
        columns = [
            c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {ours}").fetchall() if c[0] not in keys
        ]
        types = dict(
            (c[0], c[1]) for c in con.execute(f"DESCRIBE SELECT * FROM {ours}").fetchall()
        )
        same = []
        for c in columns:
            if types[c] in ("DOUBLE", "FLOAT") or types[c].startswith("DECIMAL"):
                # A NULL on one side only must count as different: a bare
                # comparison would be NULL, and NOT NULL filters nothing.
                same.append(
                    f"COALESCE(abs(a.{c} - b.{c}) <= 1e-9 * greatest(1, abs(a.{c}), abs(b.{c})), FALSE) "
                    f"OR (a.{c} IS NULL AND b.{c} IS NULL)"
                )
            else:
                same.append(f"CAST(a.{c} AS VARCHAR) IS NOT DISTINCT FROM CAST(b.{c} AS VARCHAR)")
        on = " AND ".join(
            f"CAST(a.{k} AS VARCHAR) IS NOT DISTINCT FROM CAST(b.{k} AS VARCHAR)" for k in keys
        )
        # The join pairs a duplicated row with the other side's one row, so
        # each side's rows and distinct keys are counted as well.
        key_list = ", ".join(keys)
        counts = [
            con.execute(f"SELECT COUNT(*), COUNT(DISTINCT row({key_list})) FROM {side}").fetchone()
            for side in (ours, theirs)
        ]
        (our_rows, our_keys), (their_rows, their_keys) = counts
        duplicated = (our_rows - our_keys) + (their_rows - their_keys)
        # A marker column tells a row on one side only from a NULL key.
        matched = "a._present AND b._present"
        missing, different = con.execute(
            f"SELECT COUNT(*) FILTER (WHERE NOT ({matched}) OR ({matched}) IS NULL), "
            f"COUNT(*) FILTER (WHERE ({matched}) "
            f"AND NOT ({' AND '.join('(' + s + ')' for s in same)})) "
            f"FROM (SELECT *, TRUE AS _present FROM {ours}) a "
            f"FULL OUTER JOIN (SELECT *, TRUE AS _present FROM {theirs}) b ON {on}"
        ).fetchone()
        empty = 1 if our_rows == 0 or their_rows == 0 else 0
        status = "equal" if missing + different + duplicated + empty == 0 else "DIFFERENT"
        print(
            f"   gold {name:<20} {our_rows:>7} rows against {their_rows}: {status} "
            f"({missing} keys on one side only, {different} rows differ, "
            f"{duplicated} duplicated keys{', a side is empty' if empty else ''})"
        )
        differences += missing + different + duplicated + empty
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")

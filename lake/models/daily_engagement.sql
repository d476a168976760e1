-- Engagement per day (UTC date of the session start).
-- A per-day model (see gold::per_day): a day's rows must depend on that day's
-- sessions only, as runs rebuild just the days whose sessions changed.
SELECT
  day,
  COUNT(*) AS sessions,
  COUNT(DISTINCT user_key) AS unique_viewers,
  SUM(watch_s) / 3600.0 AS watch_hours,
  AVG(pct_watched) AS avg_pct_watched,
  AVG(CASE WHEN completed THEN 1.0 ELSE 0.0 END) AS completion_rate
FROM view_sessions
WHERE duration_s IS NOT NULL
GROUP BY day

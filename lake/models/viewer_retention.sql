-- Retention curve per video: of the sessions of a video, the share that reached
-- each 5% step of its duration. Sessions of unknown videos are left out.
SELECT
  s.video_id,
  CAST(b.value AS INT) AS bucket_pct,
  COUNT(*) AS sessions,
  SUM(CASE WHEN s.pct_watched >= b.value THEN 1 ELSE 0 END) AS viewers_reached,
  CAST(SUM(CASE WHEN s.pct_watched >= b.value THEN 1 ELSE 0 END) AS DOUBLE) / COUNT(*) AS retention
FROM view_sessions s
CROSS JOIN generate_series(0, 100, 5) b
WHERE s.duration_s IS NOT NULL
GROUP BY s.video_id, b.value

-- Creators ranked by watch time (ties by creator).
WITH per_creator AS (
  SELECT
    creator,
    COUNT(DISTINCT video_id) AS videos,
    COUNT(*) AS sessions,
    SUM(watch_s) / 3600.0 AS watch_hours
  FROM view_sessions
  WHERE duration_s IS NOT NULL
  GROUP BY creator
)
SELECT
  creator,
  videos,
  sessions,
  watch_hours,
  CAST(ROW_NUMBER() OVER (ORDER BY watch_hours DESC, creator) AS INT) AS rank
FROM per_creator

-- Videos ranked by watch time (ties by video_id).
WITH per_video AS (
  SELECT
    video_id,
    COUNT(*) AS sessions,
    COUNT(DISTINCT user_key) AS unique_viewers,
    SUM(watch_s) / 3600.0 AS watch_hours,
    AVG(CASE WHEN completed THEN 1.0 ELSE 0.0 END) AS completion_rate
  FROM view_sessions
  WHERE duration_s IS NOT NULL
  GROUP BY video_id
)
SELECT
  p.video_id,
  m.title,
  m.creator,
  m.genre,
  p.sessions,
  p.unique_viewers,
  p.watch_hours,
  p.completion_rate,
  CAST(ROW_NUMBER() OVER (ORDER BY p.watch_hours DESC, p.video_id) AS INT) AS rank
FROM per_video p
JOIN video_metadata m ON m.video_id = p.video_id

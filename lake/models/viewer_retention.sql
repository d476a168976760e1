-- Retention curve per video: of the sessions of a video, the share that reached
-- each 5% step of its duration. Sessions of unknown videos are left out, and
-- so is a video the metadata file no longer lists (as in top_videos).
-- Each session counts once, in the highest step it reached (the FLOOR is
-- corrected where rounding put it one step too high); a step's viewers are
-- then the sessions of that step and every step above it, so the work grows
-- with sessions, not with sessions times 21 steps.
WITH reached AS (
  SELECT
    video_id,
    CASE
      WHEN pct_watched < CAST(FLOOR(pct_watched / 5) AS INT) * 5
        THEN CAST(FLOOR(pct_watched / 5) AS INT) * 5 - 5
      ELSE LEAST(CAST(FLOOR(pct_watched / 5) AS INT) * 5, 100)
    END AS top_step
  FROM view_sessions
  WHERE duration_s IS NOT NULL
),
per_step AS (
  SELECT video_id, top_step, COUNT(*) AS n
  FROM reached
  GROUP BY video_id, top_step
),
per_video AS (
  SELECT video_id, SUM(n) AS sessions
  FROM per_step
  GROUP BY video_id
)
SELECT
  v.video_id,
  CAST(b.value AS INT) AS bucket_pct,
  v.sessions,
  COALESCE(SUM(p.n), 0) AS viewers_reached,
  CAST(COALESCE(SUM(p.n), 0) AS DOUBLE) / v.sessions AS retention
FROM per_video v
JOIN video_metadata m ON m.video_id = v.video_id
CROSS JOIN generate_series(0, 100, 5) b
LEFT JOIN per_step p ON p.video_id = v.video_id AND p.top_step >= b.value
GROUP BY v.video_id, b.value, v.sessions

-- Where viewers leave, per genre: sessions by the 10% bucket of the exit
-- position (an exit at 100% counts in the 90 bucket), and the bucket's share of
-- the genre's sessions. Empty buckets are left out.
WITH exits AS (
  SELECT
    genre,
    LEAST(CAST(FLOOR(100 * exit_position_s / duration_s / 10) AS INT) * 10, 90) AS bucket_pct
  FROM view_sessions
  WHERE duration_s IS NOT NULL
)
SELECT
  genre,
  bucket_pct,
  COUNT(*) AS sessions,
  CAST(COUNT(*) AS DOUBLE) / SUM(COUNT(*)) OVER (PARTITION BY genre) AS share
FROM exits
GROUP BY genre, bucket_pct

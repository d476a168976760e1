-- Where viewers leave, per genre: sessions by the 10% bucket of the exit
-- position (an exit at 100% counts in the 90 bucket), and the bucket's share of
-- the genre's sessions. Empty buckets are left out.
-- The bucket is FLOOR(10 * exit / duration), corrected by comparing the two
-- products where floating-point division put it one step off: an exit at
-- exactly 30% must not land in the 20 bucket.
WITH exits AS (
  SELECT
    genre,
    exit_position_s AS e,
    duration_s AS d,
    CAST(FLOOR(10 * exit_position_s / duration_s) AS INT) AS b
  FROM view_sessions
  WHERE duration_s IS NOT NULL
),
buckets AS (
  SELECT
    genre,
    CAST(LEAST(
      CASE
        WHEN 10 * e >= (b + 1) * d THEN b + 1
        WHEN 10 * e < b * d THEN b - 1
        ELSE b
      END,
      9
    ) * 10 AS INT) AS bucket_pct
  FROM exits
)
SELECT
  genre,
  bucket_pct,
  COUNT(*) AS sessions,
  CAST(COUNT(*) AS DOUBLE) / SUM(COUNT(*)) OVER (PARTITION BY genre) AS share
FROM buckets
GROUP BY genre, bucket_pct

-- Passed pairs by resolution bucket (side sqrt(w*h), px) x aspect bucket (w/h), as in Fig. 5.
SELECT res_bucket, aspect_bucket, n, round(p, 4) AS p
FROM resolution_aspect ORDER BY res_bucket, aspect_bucket;

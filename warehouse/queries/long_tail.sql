-- The long tail: notions seen in at most N captions (default 2). Params: [max n, limit].
SELECT notion, kind, n, round(p, 6) AS p
FROM notion_stats
WHERE n <= coalesce(TRY_CAST($1 AS BIGINT), 2)
ORDER BY n, kind, notion
LIMIT coalesce(TRY_CAST($2 AS BIGINT), 50);

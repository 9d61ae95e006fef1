-- The most frequent notions. Params: [kind or NULL for all kinds, limit].
-- t2i sql --query top_notions --param color --param 20
SELECT notion, kind, n, round(p, 4) AS p
FROM notion_stats
WHERE kind = coalesce(CAST($1 AS VARCHAR), kind)
ORDER BY n DESC, notion
LIMIT coalesce(TRY_CAST($2 AS BIGINT), 20);

-- The SFT quality tier (SimpleAR §3.2: supervised fine-tuning on high-quality data; docs/post-training.md):
-- rows of the samples index whose short side, aesthetic score, caption source, notions and objects pass.
-- Params: [min short side px (default 0), min aesthetic score (default: no filter; a sample
-- never scored fails it), caption_version e.g. 'internvl' (default any), notion 'kind:value' (default any),
-- min objects the caption names (default any): its count notion's number ('count:three' = 3), else
-- its distinct shape notions ("a red circle above a blue square" = 2)].
SELECT s.* FROM samples s
LEFT JOIN (SELECT key, max(score) AS aesthetic FROM filter_scores
           WHERE "filter" = 'aesthetic' GROUP BY key) a USING (key)
WHERE least(s.width, s.height) >= coalesce(TRY_CAST($1 AS BIGINT), 0)
  AND ($2 IS NULL OR a.aesthetic >= TRY_CAST($2 AS DOUBLE))
  AND ($3 IS NULL OR s.caption_version = $3)
  AND ($4 IS NULL OR list_contains(s.notions, $4))
  AND ($5 IS NULL OR greatest(
        len(list_filter(s.notions, lambda n: n LIKE 'shape:%')),
        coalesce(list_max(list_transform(list_filter(s.notions, lambda n: n LIKE 'count:%'),
                 lambda n: list_position(['one', 'two', 'three', 'four', 'five', 'six', 'seven',
                                          'eight', 'nine', 'ten'], substr(n, 7)))), 0))
      >= TRY_CAST($5 AS BIGINT))
ORDER BY s.tar, s."offset";

-- Captions and notions: the content distribution of the data (recaption, notion-stats).

-- Resolution bucket by side length sqrt(w*h) in pixels; aspect bucket by w/h.
CREATE OR REPLACE MACRO res_bucket(w, h) AS CASE
    WHEN w IS NULL OR h IS NULL OR w <= 0 OR h <= 0 THEN 'unknown'
    WHEN sqrt(w * h) < 256 THEN '0000-0256'
    WHEN sqrt(w * h) < 512 THEN '0256-0512'
    WHEN sqrt(w * h) < 1024 THEN '0512-1024'
    WHEN sqrt(w * h) < 2048 THEN '1024-2048'
    WHEN sqrt(w * h) < 4096 THEN '2048-4096'
    ELSE '4096+' END;
CREATE OR REPLACE MACRO aspect_bucket(w, h) AS CASE
    WHEN w IS NULL OR h IS NULL OR w <= 0 OR h <= 0 THEN 'unknown'
    WHEN w / h < 0.5 THEN '1 tall <1:2'
    WHEN w / h < 0.75 THEN '2 portrait 1:2-3:4'
    WHEN w / h <= 4.0 / 3.0 THEN '3 square 3:4-4:3'
    WHEN w / h <= 2.0 THEN '4 landscape 4:3-2:1'
    ELSE '5 wide >2:1' END;

-- The current caption of each key: a VLM caption beats the alt text, then the newest version.
CREATE OR REPLACE VIEW captions_current AS
SELECT * FROM captions
QUALIFY row_number() OVER (PARTITION BY key
                           ORDER BY (source = 'vlm') DESC, created_at DESC, version DESC) = 1;

-- Per caption version: how many captions, how many are current, lengths, empties.
CREATE OR REPLACE VIEW caption_stats AS
SELECT c.version, c.source, c.model_id, c.prompt_hash, count(*) AS n,
       count(cc.key) AS n_current,
       count(*) FILTER (WHERE coalesce(trim(c.caption), '') = '') AS n_empty,
       round(avg(length(c.caption)), 1) AS mean_chars, max(length(c.caption)) AS max_chars,
       min(c.created_at) AS created_at
FROM captions c LEFT JOIN captions_current cc ON c.key = cc.key AND c.version = cc.version
GROUP BY ALL ORDER BY created_at;

-- n = captions containing the notion (one row per (key, notion, kind), so count(*) is exact and
-- needs no DISTINCT); p = n / captions processed by notion-stats (captions with no notion count).
CREATE OR REPLACE VIEW notion_stats AS
SELECT notion, kind, count(*) AS n,
       count(*) / nullif((SELECT sum(n_captions) FROM notion_runs), 0) AS p
FROM notions GROUP BY notion, kind;

-- Passed pairs by resolution x aspect bucket.
CREATE OR REPLACE VIEW resolution_aspect AS
SELECT res_bucket(width, height) AS res_bucket, aspect_bucket(width, height) AS aspect_bucket,
       count(*) AS n, count(*) / sum(count(*)) OVER () AS p
FROM pairs WHERE status = 'passed' GROUP BY ALL;

-- Notion x data source; p = share of that source's captioned pairs that contain the notion.
CREATE OR REPLACE VIEW notion_source AS
WITH k AS (SELECT c.key, coalesce(p.source, 'unknown') AS source
           FROM captions_current c LEFT JOIN pairs p ON p.key = c.key),
     tot AS (SELECT source, count(*) AS n FROM k GROUP BY source)
SELECT n.notion, n.kind, k.source, count(*) AS n, count(*) / any_value(tot.n) AS p
FROM notions n JOIN k ON n.key = k.key JOIN tot ON tot.source = k.source
GROUP BY n.notion, n.kind, k.source;

-- Notion x resolution bucket; p = share of that bucket's captioned pairs that contain it.
CREATE OR REPLACE VIEW notion_resolution AS
WITH k AS (SELECT c.key, res_bucket(p.width, p.height) AS res_bucket
           FROM captions_current c LEFT JOIN pairs p ON p.key = c.key),
     tot AS (SELECT res_bucket, count(*) AS n FROM k GROUP BY res_bucket)
SELECT n.notion, n.kind, k.res_bucket, count(*) AS n, count(*) / any_value(tot.n) AS p
FROM notions n JOIN k ON n.key = k.key JOIN tot ON tot.res_bucket = k.res_bucket
GROUP BY n.notion, n.kind, k.res_bucket;

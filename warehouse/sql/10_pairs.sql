-- The curation funnel: how many pairs each stage rejected or quarantined, and their share.
CREATE OR REPLACE VIEW funnel AS
SELECT status, coalesce(stage, '') AS stage, count(*) AS n,
       round(count(*) / sum(count(*)) OVER (), 4) AS share
FROM pairs GROUP BY 1, 2
ORDER BY CASE status WHEN 'passed' THEN 2 WHEN 'rejected' THEN 1 ELSE 0 END, n DESC;

-- Why, grouped: reasons with their numbers masked ("too small: short side # px < min_side #"),
-- one example each.
CREATE OR REPLACE VIEW reasons AS
SELECT status, stage,
       trim(regexp_replace(regexp_replace(reason, '[0-9]+(\.[0-9]+)?', '#', 'g'), '\(.*\)$', '')) AS reason,
       count(*) AS n, min(reason) AS example
FROM pairs WHERE status <> 'passed' GROUP BY 1, 2, 3 ORDER BY status, n DESC;

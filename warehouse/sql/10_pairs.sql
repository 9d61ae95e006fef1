-- Per-filter funnel: how many pairs each stage rejected or quarantined.
CREATE OR REPLACE VIEW funnel AS
SELECT status, coalesce(stage, '') AS stage, coalesce(reason, '') AS reason, count(*) AS n
FROM pairs GROUP BY ALL ORDER BY status, n DESC;

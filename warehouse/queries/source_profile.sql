-- Per data source: pairs by status, captions, and its most frequent notions.
WITH st AS (
    SELECT coalesce(source, 'unknown') AS source, count(*) AS pairs,
           count(*) FILTER (WHERE status = 'passed') AS passed,
           count(*) FILTER (WHERE status = 'rejected') AS rejected,
           count(*) FILTER (WHERE status = 'quarantined') AS quarantined
    FROM pairs GROUP BY 1),
top AS (
    SELECT source, string_agg(notion || ' ' || round(p, 3), ', ' ORDER BY n DESC) AS top_notions
    FROM (SELECT *, row_number() OVER (PARTITION BY source ORDER BY n DESC, notion) AS r
          FROM notion_source)
    WHERE r <= 8 GROUP BY source)
SELECT st.*, top.top_notions FROM st LEFT JOIN top USING (source) ORDER BY pairs DESC;

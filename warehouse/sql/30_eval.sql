-- Evaluation (evaluate-checkpoints): GenEval-style scores per checkpoint.
-- eval_results holds one row per (checkpoint, prompt, image, notion); each image also has one row
-- with notion_kind = 'category', so category accuracy counts every image exactly once.

-- Per checkpoint and benchmark: accuracy per category and 'overall' = mean over categories
-- (GenEval's overall score).
CREATE OR REPLACE VIEW eval_summary AS
WITH cat AS (
    SELECT checkpoint, run_id, step, benchmark, category, avg(score) AS score,
           count(*) AS n_images, min(created_at) AS created_at
    FROM eval_results WHERE notion_kind = 'category'
    GROUP BY checkpoint, run_id, step, benchmark, category
)
SELECT checkpoint, run_id, step, benchmark, category, score, n_images, created_at FROM cat
UNION ALL
SELECT checkpoint, run_id, step, benchmark, 'overall', avg(score), sum(n_images), min(created_at)
FROM cat GROUP BY checkpoint, run_id, step, benchmark
ORDER BY run_id, step, benchmark, category;

-- Per checkpoint and notion (color=purple, count=four, spatial=below, ...): the share of images
-- whose prompt named the notion that were judged correct. Feedback reads this.
CREATE OR REPLACE VIEW eval_notion_scores AS
SELECT checkpoint, run_id, step, benchmark, notion_kind, notion, avg(score) AS score,
       count(*) AS n_images
FROM eval_results WHERE notion_kind <> 'category'
GROUP BY ALL ORDER BY run_id, step, benchmark, notion_kind, score;

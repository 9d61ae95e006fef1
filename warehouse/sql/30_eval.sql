-- Evaluation (evaluate-checkpoints): GenEval-style scores per checkpoint, with chance controls.
-- eval_results holds one row per (checkpoint, prompt, image, notion); each image also has one row
-- with notion_kind = 'category', so category accuracy counts every image exactly once. Rows with
-- a non-NULL `control` score a chance-level control (uniform_noise, patch_noise,
-- shuffled_prompt: tasks/evaluators/controls.py), one row per image and category; the
-- shuffled_prompt control also has per-notion rows (eval_notion_scores.chance).
-- Intervals are 95% Wilson score intervals (warehouse/intervals.py has the same formula).

-- Per checkpoint, benchmark and category: the model's accuracy with its interval, next to the
-- highest control score (`chance`); 'overall' = the mean over categories (GenEval's overall)
-- with a normal interval of that mean.
CREATE OR REPLACE VIEW eval_summary AS
WITH cat AS (
    SELECT checkpoint, run_id, step, benchmark, category, avg(score) AS score,
           count(*) AS n_images, min(created_at) AS created_at
    FROM eval_results WHERE notion_kind = 'category' AND control IS NULL
    GROUP BY checkpoint, run_id, step, benchmark, category
), ctl AS (
    SELECT checkpoint, benchmark, category, control, avg(score) AS score
    FROM eval_results WHERE notion_kind = 'category' AND control IS NOT NULL
    GROUP BY ALL
), chance AS (
    SELECT checkpoint, benchmark, category, max(score) AS chance FROM ctl GROUP BY ALL
), chance_all AS (
    SELECT checkpoint, benchmark, control, avg(score) AS score FROM ctl GROUP BY ALL
), z AS (SELECT 1.959963984540054 AS z)
SELECT c.checkpoint, c.run_id, c.step, c.benchmark, c.category, c.score,
       -- the interval holds the score exactly (round-off misses 0 and 1 at some n), as wilson()
       greatest(0, least(c.score, (c.score + z*z/(2*c.n_images)
                    - z*sqrt(c.score*(1-c.score)/c.n_images + z*z/(4*c.n_images*c.n_images)))
                   / (1 + z*z/c.n_images))) AS lo,
       least(1, greatest(c.score, (c.score + z*z/(2*c.n_images)
                 + z*sqrt(c.score*(1-c.score)/c.n_images + z*z/(4*c.n_images*c.n_images)))
                / (1 + z*z/c.n_images))) AS hi,
       c.n_images, h.chance, c.created_at
FROM cat c CROSS JOIN z
LEFT JOIN chance h USING (checkpoint, benchmark, category)
UNION ALL
SELECT c.checkpoint, c.run_id, c.step, c.benchmark, 'overall', avg(c.score),
       greatest(0, avg(c.score) - any_value(z) * sqrt(sum(c.score*(1-c.score)/c.n_images)) / count(*)),
       least(1, avg(c.score) + any_value(z) * sqrt(sum(c.score*(1-c.score)/c.n_images)) / count(*)),
       sum(c.n_images),
       (SELECT max(a.score) FROM chance_all a
        WHERE a.checkpoint = c.checkpoint AND a.benchmark = c.benchmark),
       min(c.created_at)
FROM cat c CROSS JOIN z GROUP BY c.checkpoint, c.run_id, c.step, c.benchmark
ORDER BY run_id, step, benchmark, category;

-- The controls themselves, per checkpoint, benchmark, category and control.
CREATE OR REPLACE VIEW eval_controls AS
SELECT checkpoint, run_id, step, benchmark, category, control, avg(score) AS score,
       count(*) AS n_images
FROM eval_results WHERE notion_kind = 'category' AND control IS NOT NULL
GROUP BY ALL ORDER BY run_id, step, benchmark, category, control;

-- Per checkpoint and notion (color=purple, count=four, spatial=below, ...): the share of images
-- whose prompt named the notion that were judged correct. Feedback reads this (with n_images, so
-- it can ignore a difference smaller than the interval), beside the notion's own `chance`: the
-- share of images made for a prompt that did NOT name the notion that were judged correct against
-- a (shuffled, same-category) prompt that does, over `chance_n` images (the shuffled_prompt
-- control's per-notion rows; NULL without them). A model that draws purple for every prompt has
-- purple's score and chance both near 1: no evidence that purple was learned (issue #16).
CREATE OR REPLACE VIEW eval_notion_scores AS
WITH own AS (
    SELECT checkpoint, run_id, step, benchmark, notion_kind, notion, avg(score) AS score,
           count(*) AS n_images
    FROM eval_results WHERE notion_kind <> 'category' AND control IS NULL
    GROUP BY ALL
), chance AS (
    SELECT checkpoint, benchmark, notion_kind, notion, avg(score) AS chance, count(*) AS chance_n
    FROM eval_results WHERE notion_kind <> 'category' AND control = 'shuffled_prompt'
    GROUP BY ALL
)
SELECT o.*, c.chance, c.chance_n
FROM own o LEFT JOIN chance c USING (checkpoint, benchmark, notion_kind, notion)
ORDER BY run_id, step, benchmark, notion_kind, score;

-- CLIPScore per checkpoint (torchmetrics' scale, 0-100; Hessel et al.'s CLIP-S is score / 40):
-- the mean over the model's images, recorded when evaluate.clip names weights.
CREATE OR REPLACE VIEW eval_clipscore AS
SELECT checkpoint, run_id, step, benchmark, count(*) AS images, avg(clipscore) AS clipscore
FROM (SELECT DISTINCT checkpoint, run_id, step, benchmark, prompt_id, image_index, clipscore
      FROM eval_results WHERE control IS NULL AND clipscore IS NOT NULL)
GROUP BY ALL;

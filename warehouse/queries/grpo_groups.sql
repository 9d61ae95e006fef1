-- Why GRPO learns or does not (docs/post-training.md): per prompt category of a post-train run's
-- rollouts, the success rate, the share of groups with any success, and the share of groups whose
-- G rewards all tie (advantage 0 for every image: nothing to learn from), for the summed reward
-- and for each backend's own. Params: [run_id (default: every run), reward backend whose 0/1
-- success is counted (default 'shapes-geneval')].
WITH r AS (
    SELECT run_id, step, category, group_id, reward, kl,
           TRY_CAST(json_extract(rewards, '$."' || coalesce($2, 'shapes-geneval') || '"') AS DOUBLE) AS success
    FROM rollouts WHERE split = 'train' AND ($1 IS NULL OR run_id = $1)),
g AS (
    SELECT run_id, category, step, group_id, avg(success) AS success, max(success) AS any_success,
           var_pop(reward) AS reward_var, var_pop(success) AS success_var, avg(kl) AS kl
    FROM r GROUP BY ALL)
SELECT run_id, category, count(*) AS groups, round(avg(success), 4) AS success,
       round(avg(any_success), 4) AS groups_with_a_success,
       round(avg(CASE WHEN reward_var = 0 THEN 1.0 ELSE 0.0 END), 4) AS tied_groups_reward,
       round(avg(CASE WHEN success_var = 0 THEN 1.0 ELSE 0.0 END), 4) AS tied_groups_success,
       round(avg(reward_var), 5) AS reward_var, round(avg(kl), 5) AS kl
FROM g GROUP BY ALL ORDER BY run_id, category;

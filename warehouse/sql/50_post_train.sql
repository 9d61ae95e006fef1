-- Post-training (post-train, docs/post-training.md): the reward and the held-out metric per step.
-- Rows of split 'train' are GRPO rollouts (images sampled with the flow head's SDE); rows of
-- split 'heldout' are the held-out prompts sampled as evaluation does, scored by the reward and
-- by the held-out metric: reward hacking shows as `reward` rising while `heldout_metric` does not.
CREATE OR REPLACE VIEW post_train_curve AS
SELECT run_id, step,
       avg(reward) FILTER (WHERE split = 'train') AS reward,
       stddev_pop(reward) FILTER (WHERE split = 'train') AS reward_std,
       avg(kl) FILTER (WHERE split = 'train') AS kl,
       avg(reward) FILTER (WHERE split = 'heldout') AS heldout_reward,
       avg(metric) FILTER (WHERE split = 'heldout') AS heldout_metric,
       count(*) FILTER (WHERE split = 'train') AS rollouts,
       count(*) FILTER (WHERE split = 'heldout') AS heldout_images
FROM rollouts GROUP BY run_id, step;

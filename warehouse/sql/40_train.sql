-- Trainer statistics aggregated across ranks: one row per (run, step, kind, value).
-- Counts (images, tokens, resolution histogram, notions, discards by reason) are summed over
-- ranks; loss terms and the learning rate are averaged.
CREATE OR REPLACE VIEW batch_stats_agg AS
SELECT run_id, step, kind, value,
       CASE WHEN kind IN ('loss', 'lr') THEN avg(count) ELSE sum(count) END AS count,
       count(DISTINCT rank) AS ranks,
       string_agg(DISTINCT weights_version, ',') AS weights_version,
       max(created_at) AS created_at
FROM batch_stats GROUP BY run_id, step, kind, value;

-- Checkpoints whose files still exist (keep_last prunes older ones and records it).
CREATE OR REPLACE VIEW checkpoints_live AS
SELECT c.* FROM checkpoints c
WHERE NOT coalesce(c.deleted, false)
  AND NOT EXISTS (SELECT 1 FROM checkpoints d
                  WHERE d.deleted AND d.run_id = c.run_id AND d.step = c.step);

-- What the model saw: accepted samples per run, hour (UTC), kind (notion, source, resolution =
-- side length in px after the transform, accepted) and value, summed over ranks.
CREATE OR REPLACE VIEW training_exposure AS
SELECT run_id, date_trunc('hour', created_at) AS hour, kind, value, sum(count) AS n
FROM batch_stats WHERE kind IN ('notion', 'source', 'resolution', 'accepted')
GROUP BY ALL;

-- The frozen encoders each training run loaded (the checkpoint's recorded config: text encoder
-- backend and weights, image tokenizer and its VAE weights), one row per run and phase.
CREATE OR REPLACE VIEW train_backends AS
SELECT run_id, phase, min(step) AS first_step, max(step) AS last_step,
       json_extract_string(config, '$.model.text_encoder.backend') AS text_encoder,
       json_extract_string(config, '$.model.text_encoder.weights') AS text_encoder_weights,
       json_extract_string(config, '$.model.tokenizer') AS tokenizer,
       json_extract_string(config, '$.model.vae.weights') AS vae_weights
FROM checkpoints GROUP BY ALL ORDER BY run_id;

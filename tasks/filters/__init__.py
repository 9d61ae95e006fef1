"""Curation filters: one module per stage of ``curate.order``, each with pluggable backends.

Every module ``<name>.py`` here that has ``build(cfg)`` is a stage (tasks/stages.py: the ``Stage``
interface, the registry, and docs/curation.md "Adding a stage"); ``clip_embed``, ``clip_head``
and ``clip_loader`` are the CLIP pieces the CLIP-head stages share.
"""
MODEL_STAGES = ("aesthetic", "ocr", "nsfw", "face")  # the stages whose backends load models (t2i check-backends)

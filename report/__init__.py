"""``t2i report``: one HTML page of the lake's plots and a thumbnail gallery of curated pairs.

It reads the warehouse (SQL views) and, for the gallery, the pairs' source tars through the data
layer (``tasks.shard_format``, ``tasks.decode``), so it stands above both. page.py builds the
page from the topic modules; figures.py holds what the figures share.
"""

"""The training system above the network: trainer, data path (index -> feedback sampler ->
token-budget packer -> decoded batch), checkpoints, checkpoint evaluation, and ``lake_io``, its
only door to the warehouse."""

"""The cluster path: a run split into shards, submitted through submitit (Slurm or local), each
shard's job, and the merge of the shards' rows."""

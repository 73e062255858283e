"""``pansharp batch``: many scenes, one record each, resumable, on one machine or a cluster.

- :mod:`batch.scenes`: the scenes of a run (CSV manifest, folder of pairs, globs) and
  where each one's output goes.
- :mod:`batch.fingerprint`: what makes an output the one a scene and its options give.
- :mod:`batch.records`: the per-scene JSON records, the state file and the summary.
- :mod:`batch.worker`: one scene in a worker (fault isolation: any error is a record).
- :mod:`batch.run`: the run itself, on local processes or dask.distributed.
- :mod:`batch.cluster`: connecting to dask.distributed; one scene split into row tasks.
"""

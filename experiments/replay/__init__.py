"""Shadow mode: a recorded floor-event log streamed into a running server's site.

``synctwin replay`` (:mod:`experiments.cli.replay`) lets a site watch SyncTwin on its
own data before trusting it: the log (``floor_events.jsonl``) is checked whole
(:mod:`experiments.replay.log`), sent in batches paced at N times the log's own clock
(:mod:`experiments.replay.stream`, over :mod:`experiments.replay.client`), while the
site's alerts are printed as the server raises them (:mod:`experiments.replay.alerts`).
Event ids make every resend safe, so a replay may be cut and run again.
"""

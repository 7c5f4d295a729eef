"""SyncTwin: training."""

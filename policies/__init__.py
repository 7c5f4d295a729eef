"""SyncTwin: policies."""

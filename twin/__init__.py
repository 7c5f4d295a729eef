"""SyncTwin: twin."""

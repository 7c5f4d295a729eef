"""SyncTwin: experiments."""

"""``synctwin dashboard``: registered on the CLI's app on import."""

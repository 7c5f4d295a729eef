"""The planner dashboard: the Solara page (``app``), its session model and what-ifs."""

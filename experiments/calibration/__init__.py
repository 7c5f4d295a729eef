"""Fitting a scenario to an operation's event log, and checking the fit on held-out days."""

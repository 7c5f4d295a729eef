"""Strategy comparisons over seeds: the runs, their store on disk, silo vs synchronized."""

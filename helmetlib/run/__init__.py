"""A run's settings, record and files: `RunConfig` (read from the settings table), `RunRecord`, `RunFolder` (the only
owner of a run's file names) and `ReportsFolder`; the run's split (`split`).
"""

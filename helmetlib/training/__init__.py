"""Training: one trainer per head family behind one interface (`trainers`), batches and callbacks (`batches`),
repeats with restarts (`repeats`) and the seed ensemble rule (`seed_ensemble`).
"""

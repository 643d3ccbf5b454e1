"""Numbers over predictions, no models: scores (`metrics`), intervals (`uncertainty`), calibration, model health,
the cross-architecture ensemble rule (`ensembles`), the typed result records (`results`) and the choice of the model
to deploy with its threshold rule (`selection`).
"""

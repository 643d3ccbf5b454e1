"""Keras models: the study's and the added architectures (`builders`) and the backbone features they share
(`features`).
"""

"""The ground floor: what every other floor uses. Environment switches (`env`, `quiet`), typed JSON records
(`records`), Keras and its backend (`backend`), the backbone registry (`backbones`), the study's model specs and
defaults (`specs`), the settings table every option is read from (`settings`), normalisation (`preprocess`), weights
resolution (`weights`), progress lines (`progress`) and what every command line shares (`cli`).
"""

"""What a trained model becomes and how it answers: model cards (`cards`), the crop check, saved run models
(`artifacts`), prediction on crops and photos (`predict`), drawings (`drawing`), the TensorFlow Lite export (`export`)
and scoring a run on other data (`evaluate`).
"""

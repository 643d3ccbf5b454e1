"""Images and labels: the dataset format and its loader (`dataset`), photos and their decoding (`photos`), annotation
formats (`annotations`, readers in `formats`), `helmet-import`'s work (`importer`), splits (`splits`) and the
leakage audit (`audit`).
"""

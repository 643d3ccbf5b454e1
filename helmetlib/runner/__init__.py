"""Running the study: the notebook engine, Dask fan-out, the kernel, retention (`clean`), regressions and the run
itself (`study`).
"""

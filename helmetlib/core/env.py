"""The environment variables helmetlib reads, in one place (imported by the lowest layers: no helmetlib imports)."""

PROGRESS_ENV = "HELMETLIB_PROGRESS_FILE"  # kernels append progress lines (epochs) here; the runner prints them
THREADS_ENV = "HELMETLIB_THREADS"  # TensorFlow threads per kernel, when several workers share a machine
PRECISION_ENV = "HELMETLIB_PRECISION"  # float32, bfloat16 or float16 for the backbone pass (default: by machine)
TIMINGS_ENV = "HELMETLIB_TIMINGS"  # a file: backbone passes and training epochs append their seconds (benchmarks)
PROFILE_ENV = "HELMETLIB_PROFILE"  # a folder: each kernel writes its stage's cProfile statistics there (benchmarks)
STAGE_ENV = "HELMETLIB_STAGE"  # the run's stage a kernel executes, set by the runner (labels the timings)

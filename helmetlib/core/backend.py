"""The one place that imports TensorFlow and Keras, without their C++ start-up log lines.

TensorFlow writes lines such as `I0000 ... cudart_stub.cc ... Could not find cuda drivers` and
`E0000 ... failed call to cuInit` straight to file descriptor 2 while it loads and looks for a GPU, before
`TF_CPP_MIN_LOG_LEVEL` is read by all of its parts. On a CPU machine they are noise, and log scanners flag the
`E0000` line. This module sets `TF_CPP_MIN_LOG_LEVEL=3` (unless the user set it), imports TensorFlow and
Keras and initialises the devices with descriptor 2 diverted to a file, then writes back every line that is not
such a log line. Library modules import `keras` from here.
"""

from __future__ import annotations

import os
import re

from helmetlib.core.env import THREADS_ENV
from helmetlib.core.quiet import native_stderr_filtered

TF_LOG_LINE = re.compile(
    r"^([IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl::InitializeLog"
    r"|To enable the following instructions:|INFO: Created TensorFlow Lite XNNPACK delegate)"
)


def tensorflow_log_lines_dropped():
    """Divert file descriptor 2 while the block runs; replay what was written except TensorFlow log lines."""
    return native_stderr_filtered(lambda line: not TF_LOG_LINE.match(line))


def _import_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with tensorflow_log_lines_dropped():
        import tensorflow as tf

        threads = int(os.environ.get(THREADS_ENV, "0"))
        if threads:  # several workers on one machine share its cores instead of oversubscribing them
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.list_physical_devices()  # device discovery (cuInit) logs here, inside the diversion
        import keras
    tf.get_logger().setLevel("ERROR")
    return tf, keras


tf, keras = _import_quietly()
layers = keras.layers

__all__ = ["keras", "layers", "tf", "tensorflow_log_lines_dropped"]

"""The frozen backbones the transfer-learning models stand on, one entry each (VGG16 today).

An entry says how to build the Keras application without its top, how its ImageNet weights are fetched and how a
weights file is recognised (its convolutions' channels), the normalisation it expects (`preprocess_input`, and the
channel means that normalisation subtracts, for the in-graph version), the layers tapped by the multi-scale model
and the one Grad-CAM follows. Models, the feature cache, the backbone store, weights checks and explanations read
the entry instead of naming VGG16; another Keras application is another entry (and its normalisation's name in
`specs`). Kept free of TensorFlow at import: building imports Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from helmetlib.core.backend import keras


@dataclass(frozen=True)
class Backbone:
    """A Keras application used frozen, without its top.

    `application`: the class in `keras.applications`; `preprocess`: the module whose `preprocess_input` it
    expects (RGB in [0, 255] to BGR minus `means_bgr` for the caffe-style ones); `conv_channels`: the output
    channels of its 3x3 convolutions, in order (how a weights file is recognised); `multiscale_taps`: the layers
    whose average and max pooling make the multi-scale features; `last_conv`: Grad-CAM's layer.
    """

    name: str
    application: str
    preprocess: str
    means_bgr: tuple[float, float, float]
    conv_channels: tuple[int, ...]
    multiscale_taps: tuple[str, ...]
    last_conv: str
    imagenet_url: str
    imagenet_md5: str

    def build(self, input_shape: tuple[int, int, int]) -> keras.Model:
        """The application without its top and without weights (they are loaded or drawn by the caller)."""
        from helmetlib.core.backend import keras

        return getattr(keras.applications, self.application)(include_top=False, weights=None, input_shape=input_shape)

    def normalize(self, images_rgb: np.ndarray) -> np.ndarray:
        """RGB images (N, H, W, 3) in [0, 255] as the application's `preprocess_input` makes them, float32."""
        from importlib import import_module

        return import_module(self.preprocess).preprocess_input(images_rgb.astype(np.float32))

    def store_file(self, fingerprint: str) -> str:
        """The file name of weights with `fingerprint` in the backbone store."""
        return f"{self.name}-{fingerprint}.weights.h5"


VGG16 = Backbone(
    name="vgg16",
    application="VGG16",
    preprocess="keras.applications.vgg16",
    means_bgr=(103.939, 116.779, 123.68),
    conv_channels=(64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
    multiscale_taps=("block3_conv3", "block4_conv3", "block5_conv3"),
    last_conv="block5_conv3",
    imagenet_url="https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    imagenet_md5="6d6bbae143d832006294945121d1f1fc",
)
BACKBONES: dict[str, Backbone] = {VGG16.name: VGG16}
BACKBONE = VGG16  # the study's: every backbone model of a run stands on it

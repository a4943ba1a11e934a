"""Shared builder for backbones that come from ``keras.applications``."""

from __future__ import annotations

import warnings

from .. import _lazy
from .spec import Preprocess
from .weights import Weights, keras_imagenet_error, load_into


def keras_app_builder(ctor: str, preprocess: Preprocess | None, **kwargs):
    """A spec builder around ``keras.applications.<ctor>``.

    Args:
        ctor: constructor name, e.g. ``MobileNetV2``.
        preprocess: normalisation to put in front of the network, or ``None`` where the
            Keras graph already starts with its own (MobileNetV3, EfficientNet).
        **kwargs: passed to the constructor (``alpha=...``).
    """

    def build(size: int, weights: Weights, include_top: bool):
        keras = _lazy.keras()
        app = getattr(keras.applications, ctor)
        inp = keras.Input((size, size, 3), name="image")
        x = inp
        if preprocess is not None:
            # Same arithmetic as keras' preprocess_input, but inside the graph so exported
            # files take raw [0, 255] pixels.
            scale = [1.0 / s for s in preprocess.std]
            x = keras.layers.Rescaling(
                scale, offset=[-m / s for m, s in zip(preprocess.mean, preprocess.std)], name="preprocess"
            )(x)
        try:
            with warnings.catch_warnings():
                # MobileNet/V2 warn "`input_shape` is undefined or non-square ... Weights for input
                # shape (224, 224) will be loaded" whenever given an input_tensor: the spec's size
                # rules and caveats already say this, and a Python UserWarning is noise (issue #26).
                warnings.filterwarnings("ignore", message=r".*`input_shape` is undefined or non-square")
                model = app(
                    input_tensor=x,
                    include_top=include_top,
                    weights="imagenet" if weights.kind == "imagenet" else None,
                    **kwargs,
                )
        except (OSError, ConnectionError, TimeoutError) as exc:
            raise keras_imagenet_error(ctor, exc) from None
        except Exception as exc:  # keras wraps URL errors in a bare Exception("URL fetch failure ...")
            if "fetch" in str(exc).lower() or "url" in str(exc).lower():
                raise keras_imagenet_error(ctor, exc) from None
            raise
        # Keras returns a model whose ``input`` is a list when given ``input_tensor``; re-wrap
        # so every backbone looks the same (one input, flat layers).
        model = keras.Model(inp, model.output, name=model.name)
        if weights.kind == "file":
            load_into(model, weights.require_path())
        return model

    return build

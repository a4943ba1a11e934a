"""MobileNet V1, V2 (width multipliers 0.35 to 1.4) and V3 Small / Large from keras.applications.

Published MACs (multiply-adds at 224x224, width 1.0): V1 569M (Howard et al. 2017,
Table 8), V2 300M and its widths 59M..585M (Sandler et al. 2018, Table 3 / the
tensorflow/models slim mobilenet_v2 table), V3-Large 217M and V3-Small 66M as commonly
quoted (Howard et al. 2019 gives 219M / 56M; our graph counts about 56.5M for Small: the
66M figure does not match the architecture Keras ships).
"""

from __future__ import annotations

from ._keras_app import keras_app_builder
from .spec import BackboneSpec, Preprocess, register

_V2_MACS = {0.35: 59e6, 0.5: 97e6, 0.75: 209e6, 1.0: 300e6, 1.3: 509e6, 1.4: 585e6}
_SRC_V2 = "Sandler et al. 2018 (MobileNetV2), tensorflow/models research/slim/nets/mobilenet table"

register(
    BackboneSpec(
        name="mobilenet_v1",
        family="mobilenet",
        builder=keras_app_builder("MobileNet", Preprocess.tf(), alpha=1.0),
        input_size=224,
        allowed_sizes=(32, 1024),
        preprocess=Preprocess.tf(),
        published_macs=569e6,
        macs_source="Howard et al. 2017 (MobileNets), Table 8",
        caveats=("ImageNet weights exist only for input sizes 128, 160, 192 and 224",),
    )
)
for _alpha, _macs in _V2_MACS.items():
    register(
        BackboneSpec(
            name="mobilenet_v2" if _alpha == 1.0 else f"mobilenet_v2_{int(round(_alpha * 100)):03d}",
            family="mobilenet",
            builder=keras_app_builder("MobileNetV2", Preprocess.tf(), alpha=_alpha),
            input_size=224,
            allowed_sizes=(32, 1024),
            preprocess=Preprocess.tf(),
            published_macs=_macs,
            macs_source=_SRC_V2,
            caveats=("ImageNet weights exist only for input sizes 96, 128, 160, 192 and 224",),
        )
    )
# MobileNetV3 graphs start with their own Rescaling(1/127.5, -1): nothing to add in front.
_V3_CAVEATS = (
    "hard-swish and squeeze-excite cost accuracy under full int8 (their wide activation range "
    "and the sigmoid gate quantize coarsely); compare int8 against fp16 before shipping",
    "ImageNet weights exist only for input size 224",
    "no int16x8 TFLite: the converter has no 16x8 kernel for HARD_SWISH",
)
register(
    BackboneSpec(
        name="mobilenet_v3_small",
        family="mobilenet",
        builder=keras_app_builder("MobileNetV3Small", None),
        input_size=224,
        allowed_sizes=(32, 1024),
        preprocess=Preprocess.tf(),
        published_macs=66e6,
        macs_source="commonly quoted 66M; Howard et al. 2019 Table 3 gives 56M, which the graph matches",
        caveats=_V3_CAVEATS,
    )
)
register(
    BackboneSpec(
        name="mobilenet_v3_large",
        family="mobilenet",
        builder=keras_app_builder("MobileNetV3Large", None),
        input_size=224,
        allowed_sizes=(32, 1024),
        preprocess=Preprocess.tf(),
        published_macs=217e6,
        macs_source="Howard et al. 2019 (Searching for MobileNetV3), Table 3",
        caveats=_V3_CAVEATS,
    )
)

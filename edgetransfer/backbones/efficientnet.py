"""EfficientNet B0..B3 and EfficientNetV2-B0 from keras.applications.

Their Keras graphs start with their own rescaling and ImageNet normalisation, so they take
[0, 255] pixels as built. Published MACs at the default size: B0 0.39B, B1 0.70B, B2 1.0B,
B3 1.8B (Tan & Le 2019, Table 2, "FLOPS" counting multiply-adds); V2-B0 0.72B at 224
(Tan & Le 2021, Table 7).
"""

from __future__ import annotations

from ._keras_app import keras_app_builder
from .spec import BackboneSpec, Preprocess, register

# Why B* suffers under int8: swish (x * sigmoid(x)) and the squeeze-excite sigmoid gates
# have activation ranges that per-tensor int8 resolves poorly, and SE's global pooling
# feeds a multiplicative gate, so small quantization errors scale whole channels. The
# Lite variants remove both for exactly this reason.
_CAVEAT = (
    "swish and squeeze-excite lose accuracy under full int8 (see efficientnet_lite* for the "
    "int8-friendly variant); prefer fp16 or dynamic-range, or check the int8 drop"
)

for _name, _ctor, _size, _macs in [
    ("efficientnet_b0", "EfficientNetB0", 224, 0.39e9),
    ("efficientnet_b1", "EfficientNetB1", 240, 0.70e9),
    ("efficientnet_b2", "EfficientNetB2", 260, 1.0e9),
    ("efficientnet_b3", "EfficientNetB3", 300, 1.8e9),
]:
    register(
        BackboneSpec(
            name=_name,
            family="efficientnet",
            builder=keras_app_builder(_ctor, None),
            input_size=_size,
            allowed_sizes=(32, 1024),
            preprocess=Preprocess.torch(),
            published_macs=_macs,
            macs_source="Tan & Le 2019 (EfficientNet), Table 2",
            caveats=(_CAVEAT,),
        )
    )

register(
    BackboneSpec(
        name="efficientnet_v2_b0",
        family="efficientnet",
        builder=keras_app_builder("EfficientNetV2B0", None),
        input_size=224,
        allowed_sizes=(32, 1024),
        preprocess=Preprocess.tf(),
        published_macs=0.72e9,
        macs_source="Tan & Le 2021 (EfficientNetV2), Table 7",
        caveats=("squeeze-excite in the later stages loses some accuracy under full int8",),
    )
)

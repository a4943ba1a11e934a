"""NASNet-A Mobile from keras.applications (564M MACs at 224: Zoph et al. 2018, Table 2)."""

from __future__ import annotations

from ._keras_app import keras_app_builder
from .spec import BackboneSpec, Preprocess, register

register(
    BackboneSpec(
        name="nasnet_mobile",
        family="nasnet",
        builder=keras_app_builder("NASNetMobile", Preprocess.tf()),
        input_size=224,
        allowed_sizes=(32, 1024),
        preprocess=Preprocess.tf(),
        published_macs=564e6,
        macs_source="Zoph et al. 2018 (Learning Transferable Architectures), Table 2",
        caveats=(
            "many small branches and concatenations: full int8 can run slower than fp32 on CPU, "
            "and mobile delegates split it into many partitions",
            "ImageNet weights exist only for input size 224",
        ),
    )
)

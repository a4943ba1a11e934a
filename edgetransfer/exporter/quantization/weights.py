"""Weight remedies that keep every op integer: learned rounding and empirical bias correction, for any format.

Both work on the model's folded weights (``simulate.folded_layers``: BatchNormalization folded as the converters
fold it) and write the result back into the Keras layers, so every format's int8 writer, quantizing the folded
weights per channel with scale ``max|w| / 127``, lands on exactly the integers chosen here:

- **Learned rounding** (AdaRound: Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
  Quantization", eq. 21-24): per conv/dense, each weight rounds down or up as a continuous variable
  ``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`` optimised to minimise the layer's output error on
  calibration inputs plus a regulariser ``1 - |2h - 1|^beta`` (beta annealed 20 -> 2) that drives h to 0 or 1.
  The weights are written back on the grid (``s * k``); a channel's largest weight keeps its nearest rounding so
  the writer recomputes the same scale. A layer keeps the learned rounding only where it lowers the output
  error against nearest rounding on the same inputs (never worse per layer).
- **Empirical bias correction** (Nagel et al. 2019, "Data-Free Quantization...", sec. 4.2; the ONNX writer's
  ``bias_correction`` option does this inside the QDQ file): each bias minus the mean output error the int8
  weights add, ``mean(x) . (W_q - W)``, with ``mean(x)`` the mean input patch over the calibration images. Here
  it applies to the TFLite converter too (the converter has no such option).

:class:`ModelVariants` gives the exporter and the doctor the run's model with a recipe's QAT epochs and weight
remedies applied (computed once per recipe, reused for every format).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import _lazy
from .simulate import WEIGHT_QMAX, Folded, folded_layers, observe, quant_sim, weight_scales

log = logging.getLogger("edgetransfer")
ROWS_PER_IMAGE = 32  # input patches sampled per image and layer: 32 images -> 1024 rows (AdaRound: 1024 images)
IMAGES = 32
# Adam steps per layer (AdaRound: 10k at lr 1e-3 on ImageNet). 400 steps at lr 1e-2 on 2048 rows took 662 s for
# Lite0's 50 layers at load 13 on 2 cores (46 layers improved, summed output MSE 0.118 -> 0.071): the doctor's
# default is a quarter of that work.
ITERATIONS = 200
ZETA, GAMMA = 1.1, -0.1  # AdaRound's rectified sigmoid stretch (paper sec. 4)
LAMBDA = 0.01  # regulariser weight (paper: 0.01)
WARMUP = 0.2  # the first 20% of iterations without the regulariser (paper)


@dataclass
class LayerInputs:
    """Sampled input patches of one conv/dense (rows x patch) and the mean patch over all positions."""

    rows: list = field(default_factory=list)
    total: Any = None
    count: int = 0


def _patches(layer, x):
    """``x`` as the patches ``layer`` multiplies its kernel with: (positions, kh*kw*cin), kernel-order."""
    tf = _lazy.tf()
    kind = type(layer).__name__
    if kind == "Dense":
        return tf.reshape(x, (-1, x.shape[-1]))
    kh, kw = layer.kernel_size
    s, d = layer.strides, layer.dilation_rate
    if (kh, kw) == (1, 1) and tuple(s) == (1, 1):
        return tf.reshape(x, (-1, x.shape[-1]))
    p = tf.image.extract_patches(x, [1, kh, kw, 1], [1, s[0], s[1], 1], [1, d[0], d[1], 1], layer.padding.upper())
    return tf.reshape(p, (-1, p.shape[-1]))


def capture(model, images, seed: int = 0) -> tuple[list[Folded], dict[str, LayerInputs]]:
    """The folded layers of ``model`` and their float inputs on ``images`` (sampled patches, mean patch)."""
    sim = quant_sim(model)
    rng = np.random.default_rng(seed)
    got: dict[str, LayerInputs] = {}

    def hook(layer, x):
        p = np.asarray(_patches(layer, x), np.float64)
        rec = got.setdefault(layer.name, LayerInputs())
        rec.total = p.sum(axis=0) if rec.total is None else rec.total + p.sum(axis=0)
        rec.count += len(p)
        n = min(len(p), ROWS_PER_IMAGE * x.shape[0])
        rec.rows.append(p[rng.choice(len(p), n, replace=False)].astype(np.float32))

    observe(sim, images[:IMAGES], batch=8, hook=hook)
    return folded_layers(model), got


def _as_matrix(f: Folded, w: np.ndarray) -> np.ndarray:
    """Folded weights as the matrix the patches multiply: (patch, out) or, depthwise, (kh*kw, cin, mult)."""
    if f.kind == "DepthwiseConv2D":
        return w.reshape(-1, w.shape[2], w.shape[3])
    return w.reshape(-1, w.shape[-1])


def _apply(f: Folded, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    m = _as_matrix(f, w)
    if f.kind == "DepthwiseConv2D":
        xs = x.reshape(len(x), m.shape[0], m.shape[1])
        return np.einsum("rkc,kcm->rcm", xs, m).reshape(len(x), -1)
    return x @ m


def nearest(f: Folded) -> np.ndarray:
    """The folded weights as the writers quantize them (nearest rounding), dequantized."""
    s = weight_scales(f.w, f.kind)
    return np.clip(np.round(f.w / s), -WEIGHT_QMAX, WEIGHT_QMAX) * s


def reconstruction_error(f: Folded, x: np.ndarray, w_q: np.ndarray) -> float:
    """Mean squared output error of quantized folded weights ``w_q`` against ``f.w`` on inputs ``x``."""
    return float(np.mean((_apply(f, x, f.w) - _apply(f, x, w_q)) ** 2))


def learned_rounding(f: Folded, x: np.ndarray, iterations: int = ITERATIONS, seed: int = 0) -> np.ndarray:
    """AdaRound for one folded layer on input patches ``x``: the dequantized folded weights it chooses."""
    tf = _lazy.tf()
    s = weight_scales(f.w, f.kind)
    q = f.w / s
    lo = np.floor(q)
    frac = np.clip(q - lo, 1e-4, 1 - 1e-4)
    v0 = -np.log((ZETA - GAMMA) / (frac - GAMMA) - 1)  # h(v0) = frac: starts at the float weights
    tf.random.set_seed(seed)
    v = tf.Variable(v0.astype(np.float32))
    xs = tf.constant(x)
    target = tf.constant(_apply(f, x, f.w).astype(np.float32))
    norm = float(np.mean(_apply(f, x, f.w) ** 2)) or 1.0
    lo_t, s_t = tf.constant(lo.astype(np.float32)), tf.constant(np.broadcast_to(s, f.w.shape).astype(np.float32))
    depthwise = f.kind == "DepthwiseConv2D"
    shape = f.w.shape
    opt = _lazy.keras().optimizers.Adam(1e-2)
    opt.build([v])  # its slots exist before the compiled loop below runs

    def out(w):
        if depthwise:
            m = tf.reshape(w, (-1, shape[2], shape[3]))
            xr = tf.reshape(xs, (-1, m.shape[0], m.shape[1]))
            return tf.reshape(tf.einsum("rkc,kcm->rcm", xr, m), (tf.shape(xs)[0], -1))
        return xs @ tf.reshape(w, (-1, shape[-1]))

    warm = int(WARMUP * iterations)

    @tf.function
    def optimise():  # one compiled loop per layer: a Python call per step cost more than the step (2 cores)
        for i in tf.range(iterations):
            t = tf.cast(i - warm, tf.float32) / float(max(1, iterations - warm))
            beta = tf.where(i < warm, 20.0, 2.0 + 18.0 * (1.0 - t))
            lam = tf.where(i < warm, 0.0, LAMBDA)
            with tf.GradientTape() as tape:
                h = tf.clip_by_value(tf.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
                rec = tf.reduce_mean((target - out(s_t * (lo_t + h))) ** 2) / norm
                reg = tf.reduce_mean(1.0 - tf.abs(2.0 * h - 1.0) ** beta)
                loss = rec + lam * reg
            opt.apply_gradients([(tape.gradient(loss, v), v)])

    quiet = logging.getLogger("tensorflow")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one compiled loop per layer is by design: no "retracing" warning per layer
    try:
        optimise()
    finally:
        quiet.setLevel(level)
    k = lo + (v.numpy() >= 0)  # h > 0.5 <=> v > 0 (the rectified sigmoid is symmetric about 0.5 there)
    k = np.clip(k, -WEIGHT_QMAX, WEIGHT_QMAX)
    top = np.isclose(np.abs(q), WEIGHT_QMAX)  # each channel's largest weight: keep it so the scale is the same
    k = np.where(top, np.round(q), k)
    return k * s


def apply_learned_rounding(model, images, seed: int = 0) -> dict:
    """AdaRound every conv/dense of ``model`` (in place); returns per-layer reconstruction errors."""
    layers, inputs = capture(model, images, seed)
    report = {"layers": 0, "kept": 0, "error_nearest": 0.0, "error_learned": 0.0}
    for f in layers:
        rec = inputs.get(f.conv.name)
        if rec is None or not rec.rows:
            continue
        x = np.concatenate(rec.rows)
        w_near, w_learn = nearest(f), learned_rounding(f, x, seed=seed)
        e_near, e_learn = reconstruction_error(f, x, w_near), reconstruction_error(f, x, w_learn)
        report["layers"] += 1
        report["error_nearest"] += e_near
        if e_learn < e_near:
            f.write_back(w_folded=w_learn)
            report["kept"] += 1
            report["error_learned"] += e_learn
        else:
            report["error_learned"] += e_near
    log.info("learned rounding: %d of %d layers improved", report["kept"], report["layers"])
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in report.items()}


def apply_bias_correction(model, images, seed: int = 0) -> dict:
    """Empirical bias correction of every conv/dense of ``model`` (in place) for its int8 weights' mean error."""
    layers, inputs = capture(model, images, seed)
    n = 0
    for f in layers:
        rec = inputs.get(f.conv.name)
        if rec is None or not rec.count:
            continue
        mean = (rec.total / rec.count)[None, :]
        err = _apply(f, mean, nearest(f) - f.w)[0]  # mean output error the int8 weights add, per channel
        f.write_back(b_folded=f.b - err)
        n += 1
    return {"layers": n}


class ModelVariants:
    """The run's model with a recipe's QAT and weight remedies applied, computed once per recipe."""

    def __init__(self, run, model, calibration, seed: int = 0):
        self.run, self.model, self.calibration, self.seed = run, model, calibration, seed
        self.base: list | None = None  # the run's own weights, copied when a recipe first changes them
        self.done: dict[str, tuple[list, dict]] = {}

    @staticmethod
    def key(recipe) -> str:
        """``""`` for the run's own weights, else what changes them (``qat3+learned_rounding``)."""
        parts = [f"qat{recipe.qat_epochs}"] if recipe.qat_epochs else []
        return "+".join(parts + sorted(recipe.weights))

    def model_for(self, recipe):
        """The model with ``recipe``'s changes (the same object, its weights set); its record in :meth:`record`."""
        key = self.key(recipe)
        if key and self.base is None:
            self.base = self.model.get_weights()
        if key not in self.done and key:
            self.model.set_weights(self.base)
            notes: dict = {}
            start = time.perf_counter()
            if recipe.qat_epochs:
                from .qat import fine_tune

                notes["qat"] = fine_tune(self.run, self.model, self.calibration, recipe.qat_epochs, seed=self.seed
                                         ).to_json()  # fmt: skip
            images = self.calibration.images
            if "learned_rounding" in recipe.weights:
                notes["learned_rounding"] = apply_learned_rounding(self.model, images, self.seed)
            if "bias_correction" in recipe.weights:
                notes["bias_correction"] = apply_bias_correction(self.model, images, self.seed)
            notes["seconds"] = round(time.perf_counter() - start, 1)
            self.done[key] = (self.model.get_weights(), notes)
        if key:
            self.model.set_weights(self.done[key][0])
        else:
            self.restore()
        return self.model

    def restore(self) -> None:
        """The run's own weights back in the model (a no-op while no recipe changed them)."""
        if self.base is not None:
            self.model.set_weights(self.base)

    def record(self, recipe) -> dict:
        key = self.key(recipe)
        return self.done[key][1] if key in self.done else {}

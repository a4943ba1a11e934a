"""Training settings and the automatic choice of workflow and unfreeze depth.

- ``fine-tune``: a warm-up of a new head on the frozen backbone, then the top of the backbone
  unfrozen at a ~10x smaller peak learning rate with linear warm-up + cosine decay, AdamW,
  label smoothing, photo augmentation (random resized crop, flip, small rotation, colour)
  and early stopping on a smoothed validation accuracy that keeps the best weights;
  BatchNorm stays in inference mode throughout.
- ``features``: every image through the frozen backbone once, vectors cached on disk,
  a small head trained on the cache; optionally K augmented views per image.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import backbones
from ..errors import ConfigError

WORKFLOWS = ("auto", "fine-tune", "features")
# The usual guide (Keras transfer-learning guide, cs231n notes): with ~1k images the head
# alone generalises best; up to ~10k, unfreezing the last blocks pays; from ~50k, all.
FEATURES_MAX, LAST_BLOCKS_MAX, ALL_FROM = 1_000, 10_000, 50_000
SCHEDULES = ("cosine", "constant")
# --workflow auto looks at the data too (issue 28): the features head is fitted first (cheap),
# and when it cannot fit its own training set (the frozen features do not separate the
# classes) or its held-out accuracy is low, auto goes on to fine-tune. Thresholds chosen
# here, not from a paper: hymenoptera's head fits (train 0.99, val 0.95) and stays;
# see benchmarks/train_workflows.py --auto for the measurements behind them.
SEPARABLE_TRAIN_MIN, FEATURES_VAL_MIN = 0.95, 0.90
# Where the fine-tune defaults come from, recorded in the manifest with the values used.
RECIPE_SOURCES = {
    "warm-up of the head, then unfreeze at ~1/10 LR": "Keras guide 'Transfer learning & fine-tuning' (Chollet)",
    "cosine decay with linear warm-up": "Loshchilov & Hutter 2017 (SGDR); Goyal et al. 2017 (warm-up)",
    "label_smoothing 0.1": "Szegedy et al. 2016 (Inception-v3); Mueller et al. 2019",
    "AdamW, decoupled weight decay 0.01 (PyTorch's default)": "Loshchilov & Hutter 2019",
    "random resized crop, flip, rotation, colour": "Szegedy et al. 2015 (Inception crops), milder scale",
    "BatchNorm in inference mode when unfrozen": "Keras guide 'Transfer learning & fine-tuning'",
    "early stopping on EMA-smoothed val accuracy, best weights kept": "Prechelt 1998 ('Early stopping - but when?')",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; validated when built."""

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    workflow: str = "auto"
    image_size: int | None = None
    epochs: int = 10
    fine_tune_epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_lr_factor: float = 0.1
    unfreeze: str = "auto"
    cut_at: str = "top"
    dropout: float = 0.2
    augment: bool = True
    feature_views: int = 1
    class_weights: bool = True
    patience: int = 3
    seed: int = 0
    val_split: float = 0.2
    policy: str = "crop"
    mixed_precision: bool = False
    strategy: str = "auto"
    # The fine-tune recipe (see RECIPE_SOURCES); the features workflow keeps the plain head.
    label_smoothing: float = 0.1
    weight_decay: float = 0.01
    lr_schedule: str = "cosine"
    warmup_epochs: int = 1
    crop_scale: float = 0.5
    stop_smoothing: float = 0.5
    worker_timeout: float = 120.0
    # Distillation (distill.py): a finished run as teacher. T = 4 sits in Hinton et al. 2015's
    # 1-20; alpha weighs the teacher's soft loss against the hard labels.
    teacher: str | None = None
    distill_temperature: float = 4.0
    distill_alpha: float = 0.9
    distill_views: int = 4

    def __post_init__(self) -> None:
        backbones.get(self.backbone)
        checks = [
            (self.workflow in WORKFLOWS, f"--workflow {self.workflow!r}", f"use one of {', '.join(WORKFLOWS)}"),
            (
                self.epochs >= 1 and self.fine_tune_epochs >= 0,
                "--epochs must be >= 1 and --fine-tune-epochs >= 0",
                "fix the counts",
            ),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}", "use a positive batch size"),
            (  # 0 is not "the backbone's default" (that is leaving it out): refused, not trained at 224
                self.image_size is None or self.image_size >= 1,
                f"--image-size {self.image_size}",
                "use a positive side in pixels, or leave it out for the backbone's own",
            ),
            (
                0 < self.learning_rate < 1 and 0 < self.fine_tune_lr_factor <= 1,
                "learning rate out of range",
                "use e.g. 1e-3 and 0.1",
            ),
            (
                self.unfreeze in ("auto", "all") or self.unfreeze.isdigit(),
                f"--unfreeze {self.unfreeze!r}",
                "use auto, all or a layer count",
            ),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}", "use a value in [0, 1)"),
            (self.feature_views >= 1, f"--augment-views {self.feature_views}", "use 1 or more"),
            (0 < self.val_split < 1, f"--val-split {self.val_split}", "use a fraction such as 0.2"),
            (
                self.strategy in ("auto", "default", "mirrored"),
                f"--strategy {self.strategy!r}",
                "use auto, default or mirrored",
            ),
            (0 <= self.label_smoothing < 1, f"--label-smoothing {self.label_smoothing}", "use e.g. 0.1"),
            (0 <= self.weight_decay < 1, f"--weight-decay {self.weight_decay}", "use e.g. 0.01"),
            (self.lr_schedule in SCHEDULES, f"--lr-schedule {self.lr_schedule!r}", f"use {' or '.join(SCHEDULES)}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs {self.warmup_epochs}", "use 0 or more"),
            (0 < self.crop_scale <= 1, f"--crop-scale {self.crop_scale}", "use a fraction such as 0.5 (1 = no crop)"),
            (0 <= self.stop_smoothing < 1, f"--stop-smoothing {self.stop_smoothing}", "use a value in [0, 1)"),
            (self.worker_timeout > 0, f"--worker-timeout {self.worker_timeout}", "use a positive number of seconds"),
            (self.distill_temperature > 0, f"--distill-temperature {self.distill_temperature}", "use e.g. 4"),
            (0 <= self.distill_alpha <= 1, f"--distill-alpha {self.distill_alpha}", "use a value in [0, 1]"),
            (self.distill_views >= 1, f"--distill-views {self.distill_views}", "use 1 or more"),
            (
                not (self.teacher and self.feature_views > 1),
                "--augment-views with --teacher",
                "use --distill-views: the student trains on the views the teacher labelled",
            ),
            (
                not (self.workflow == "features" and self.unfreeze not in ("auto", "0")),
                "--unfreeze has no effect with --workflow features",
                "drop --unfreeze or use --workflow fine-tune",
            ),
        ]
        for ok, problem, fix in checks:
            if not ok:
                raise ConfigError(problem, fix=fix)

    @classmethod
    def quick(cls, backbone: str = "efficientnet_lite0", **overrides) -> TrainConfig:
        """Few epochs, for demos and smoke tests."""
        return cls(**{"backbone": backbone, "epochs": 5, "fine_tune_epochs": 3, **overrides})


@dataclass(frozen=True)
class Plan:
    """The workflow actually run and why."""

    workflow: str
    unfreeze: str  # "0", "all" or a layer count
    reason: str


def choose(n_train: int, cfg: TrainConfig, base_layers: int, last_blocks: int) -> Plan:
    """Pick the workflow and unfreeze depth from the number of training images.

    Args:
        n_train: training images.
        cfg: the config (explicit choices win over the rule).
        base_layers: layers in the backbone prefix.
        last_blocks: layers after its ``stride16`` cut point (the last stage and head).
    """
    n = f"{n_train:,} training images"
    if cfg.workflow == "features" or (cfg.workflow == "auto" and n_train <= FEATURES_MAX):
        why = (
            "chosen by --workflow"
            if cfg.workflow == "features"
            else f"{n} <= {FEATURES_MAX:,}: the head alone generalises best; fine-tuning this few mostly overfits"
        )
        return Plan("features", "0", why)
    if cfg.unfreeze != "auto":
        depth, why = cfg.unfreeze, f"--unfreeze {cfg.unfreeze}"
    elif n_train >= ALL_FROM:
        depth, why = "all", f"{n} >= {ALL_FROM:,}: enough to adapt every layer"
    elif n_train <= LAST_BLOCKS_MAX:
        depth, why = str(last_blocks), f"{n} <= {LAST_BLOCKS_MAX:,}: unfreeze the last blocks ({last_blocks} layers)"
    else:
        depth = str(min(base_layers, 2 * last_blocks))
        why = f"{LAST_BLOCKS_MAX:,} < {n} < {ALL_FROM:,}: unfreeze the last two stages ({depth} layers)"
    source = "chosen by --workflow" if cfg.workflow == "fine-tune" else "auto"
    return Plan("fine-tune", depth, f"{source}; {why}")


def reconsider(plan: Plan, train_acc: float, val_acc: float, last_blocks: int) -> Plan:
    """After an ``auto`` features head: keep it, or go on to fine-tune the last blocks, and why.

    Args:
        plan: the features plan that ran.
        train_acc: the head's best training accuracy (dropout on, so slightly low).
        val_acc: its held-out accuracy.
        last_blocks: layers after the backbone's ``stride16`` cut point.
    """
    seen = f"features head: train accuracy {train_acc:.3f}, val accuracy {val_acc:.3f}"
    if train_acc < SEPARABLE_TRAIN_MIN:
        why = f"train {train_acc:.3f} < {SEPARABLE_TRAIN_MIN}: the frozen features do not separate the classes"
    elif val_acc < FEATURES_VAL_MIN:
        why = f"val {val_acc:.3f} < {FEATURES_VAL_MIN}: the frozen features generalise poorly here"
    else:
        return Plan(plan.workflow, plan.unfreeze, f"{plan.reason}; kept after the {seen}")
    return Plan(
        "fine-tune",
        str(last_blocks),
        f"auto; {plan.reason.split(':')[0]}, but the {seen}; {why}; "
        f"so fine-tune the last blocks ({last_blocks} layers)",
    )

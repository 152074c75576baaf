"""Image-quality and distribution metrics, registered by :mod:`restore.metrics.plugin`.

Every image metric is ``metric(x, reference, **options) -> Tensor`` with one value per
batch item, images on [0, 1]; the options are each metric's conventions
(:mod:`restore.metrics.fidelity`) or weights (:mod:`restore.metrics.perceptual`).
Registering imports nothing heavy: scikit-image, lpips and torchvision are imported when a
metric is first called.
"""

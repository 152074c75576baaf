"""Training the networks the project ships: the EDM prior, the SR3-style conditional
network and the noise-aware classifier.

One loop (:mod:`restore.training.loop`) owns optimisation, the learning-rate schedule,
the EMA, checkpoints and resumption, the time box, progress and torch.distributed; each
model module (:mod:`.prior`, :mod:`.sr3`, :mod:`.classifier`) gives it a loss, a
validation and an export.
"""

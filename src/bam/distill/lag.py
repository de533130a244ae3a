"""How far a student lags its target on a task, on a scale that tasks of any kind share.

The adaptive sampler (``sampling: adaptive``, :mod:`bam.train.sampling`) compares tasks by this
number, so it must not depend on a task's number of classes, label range or loss scale. The
measure is the student's distillation loss on some rows divided by the loss of the best
*constant* prediction on the same rows:

- classification: mean KL(p‖q) of the target distributions p (softmax of the teacher's logits,
  or one-hot gold labels) and the student's q, over the mean KL(p‖p̄) of the best constant
  prediction, which is the mean target distribution p̄ (so the divisor is H(p̄) − mean H(p));
- regression: the mean squared difference of the student's and the target scores, over the
  variance of the target scores (the squared error of predicting their mean).

0 is a student that matches its target on every row; 1 is one no better than a constant answer.
Both divisors are the exact minimum of the same loss over constant predictions, so the ratio
is the fraction of the learnable gap still open, comparable across tasks with no per-task constant.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax, xlogy

# Below this divisor the targets are (numerically) the same on every row: nothing to measure.
NO_SPREAD = 1e-12


def target_distribution(teacher_logits: np.ndarray | None, gold: np.ndarray, num_classes: int) -> np.ndarray:
    """The distribution a classification student is measured against: the teacher's softmax
    (temperature 1) when there are teacher outputs, else the one-hot gold labels."""
    if teacher_logits is not None:
        return softmax(np.asarray(teacher_logits, dtype=np.float64), axis=-1)  # type: ignore[no-any-return]
    return np.eye(num_classes, dtype=np.float64)[np.asarray(gold, dtype=np.int64)]


def normalised_lag(outputs: np.ndarray, targets: np.ndarray, kind: str) -> float | None:
    """The student's loss on the rows over the best constant prediction's (None: the targets do
    not vary across the rows, so no constant can be beaten and the ratio means nothing).

    ``outputs``: the student's logits (rows, classes) or scores (rows,); ``targets``: target
    distributions (rows, classes) (:func:`target_distribution`) or scores (rows,).
    """
    student = np.asarray(outputs, dtype=np.float64)
    target = np.asarray(targets, dtype=np.float64)
    if kind == "regression":
        loss = float(np.mean((student.reshape(-1) - target) ** 2))
        constant = float(np.var(target))
    else:
        own = xlogy(target, target).sum(axis=-1)  # −H(p) per row (0 for one-hot rows)
        loss = float(np.mean(own - (target * log_softmax(student, axis=-1)).sum(axis=-1)))
        mean = target.mean(axis=0)
        constant = float(np.mean(own) - xlogy(mean, mean).sum())
    if constant < NO_SPREAD:
        return None
    return max(loss, 0.0) / constant

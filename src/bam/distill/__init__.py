"""Distillation for BAM: teacher outputs, mixed-target losses and teacher-annealing schedules.

The student's target is λ·gold + (1−λ)·teacher. Teacher annealing raises λ linearly from 0 to 1
over training, so the student first imitates its single-task teachers and ends on the gold labels,
which lets it surpass them instead of being capped by them (Clark et al., 2019).
"""

from __future__ import annotations

from bam.distill.losses import classification_loss, regression_loss
from bam.distill.schedules import LAMBDA_SCHEDULES, lambda_at
from bam.distill.store import (
    OUTPUT_KIND,
    average_teachers,
    load_outputs_for,
    load_teacher_outputs,
    read_teacher_metadata,
    save_teacher_outputs,
)

__all__ = [
    "LAMBDA_SCHEDULES",
    "OUTPUT_KIND",
    "average_teachers",
    "classification_loss",
    "lambda_at",
    "load_outputs_for",
    "load_teacher_outputs",
    "read_teacher_metadata",
    "regression_loss",
    "save_teacher_outputs",
]

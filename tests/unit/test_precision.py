"""Which precision a stage runs in: detected from the device, recorded, and keyed by what ran."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bam import precision as precision_module
from bam.config.train import TrainConfig
from bam.errors import BamError
from bam.precision import inference_precision, native_bf16, resolve_precision
from bam.train.keys import keyed_settings

CPU = torch.device("cpu")


def _flags(monkeypatch: pytest.MonkeyPatch, flags: set[str]) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx512f", "avx512_bf16"}, "bf16"),  # AMD Zen 4, Intel Cooper Lake
        ({"avx512f", "amx_bf16", "amx_tile"}, "bf16"),  # Intel Sapphire Rapids
        ({"fp", "asimd", "bf16"}, "bf16"),  # Arm v8.6 (Graviton 3)
        ({"avx2", "avx512f"}, "fp32"),  # AVX-512 without BF16: autocast would emulate it, slower
        (set(), "fp32"),  # flags unreadable
    ],
)
def test_auto_is_bf16_only_with_native_bf16_units(monkeypatch, flags, expected) -> None:
    _flags(monkeypatch, flags)
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == expected
    assert chosen.reason.startswith("auto: ")
    assert native_bf16(CPU)[0] == (expected == "bf16")


def test_explicit_settings_and_the_launcher(monkeypatch) -> None:
    _flags(monkeypatch, set())
    assert resolve_precision("bf16", CPU).name == "bf16"  # asked for: runs (emulated) even without units
    assert resolve_precision("fp32", CPU).name == "fp32"
    with pytest.raises(BamError, match="fp16 needs a GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(BamError, match="precision: 'half' is not one of"):
        resolve_precision("half", CPU)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate launch --mixed_precision bf16
    assert resolve_precision("auto", CPU) == precision_module.Precision(
        "bf16", "ACCELERATE_MIXED_PRECISION=bf16"
    )
    assert resolve_precision("fp32", CPU).name == "fp32"  # an explicit setting wins


def test_a_precision_setting_is_checked_with_the_config() -> None:
    with pytest.raises(BamError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(BamError, match="gradient_accumulation_steps"):
        TrainConfig(batch_size=4, gradient_accumulation_steps=5)


def test_inference_runs_in_the_precision_the_model_trained_in(monkeypatch) -> None:
    _flags(monkeypatch, {"avx512_bf16"})
    assert inference_precision("bf16", CPU).name == "bf16"
    assert inference_precision(None, CPU).name == "fp32"  # models saved before precision existed
    assert inference_precision("fp16", CPU).name == "fp32"
    _flags(monkeypatch, {"avx2"})
    assert inference_precision("bf16", CPU).name == "fp32"


def test_the_stage_key_holds_the_precision_that_ran_not_the_setting(monkeypatch) -> None:
    base = TrainConfig(tasks=["rte"])
    _flags(monkeypatch, {"avx512_bf16"})
    auto, bf16 = keyed_settings(base), keyed_settings(dataclasses.replace(base, precision="bf16"))
    assert auto == bf16 and auto["precision"] == "bf16"
    _flags(monkeypatch, {"avx2"})
    auto, fp32 = keyed_settings(base), keyed_settings(dataclasses.replace(base, precision="fp32"))
    assert auto == fp32 and "precision" not in auto  # fp32: keyed as before precision existed


def test_settings_that_do_not_change_the_weights_stay_out_of_the_key(monkeypatch) -> None:
    _flags(monkeypatch, set())
    base = TrainConfig(tasks=["rte"])
    for change in (
        {"log_with": []},
        {"checkpoint_every": 7},
        {"num_threads": 1},
        {"eval_batch_size": 5},
    ):
        assert keyed_settings(dataclasses.replace(base, **change)) == keyed_settings(base), change
    for change in (
        {"gradient_accumulation_steps": 2},
        {"attention": "eager"},
        {"compile": True},
        {"seed": 1},
    ):
        assert keyed_settings(dataclasses.replace(base, **change)) != keyed_settings(base), change

"""In-Place TTT settings of a model: which layers hold fast weights, chunk size, lr, target.

Read from a checkpoint's config.json (official In-Place-TTT keys `ttt_layers`, `ttt_chunk`,
`ttt_lr`, `ttt_target`, `ttt_proj`) or given on the command line for a plain checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

TARGETS = ("hidden_states", "input_embed")


@dataclass(frozen=True, slots=True)
class TTTSettings:
    """The fast-weight mechanism's hyperparameters (see reference/inplace_ttt.md)."""

    layers: tuple[int, ...]          # decoder layers whose mlp.down_proj is a fast weight
    chunk: int                       # C: a WRITE follows every C tokens, aligned to position 0
    lr: float                        # eta: W += eta * V^T H, a fixed scalar
    target: str = "hidden_states"    # source of V: the MLP input, or the token embedding
    use_proj: bool = True            # V = conv(S) @ P (P as stored, no transpose), else conv(S)
    enabled: bool = True             # False: the static-weights model (TTT off)

    def __post_init__(self) -> None:
        if self.chunk < 1:
            raise ValueError(f"ttt chunk must be >= 1, got {self.chunk}")
        if self.target not in TARGETS:
            raise ValueError(f"ttt target must be one of {TARGETS}, got {self.target!r}")
        if len(set(self.layers)) != len(self.layers) or any(i < 0 for i in self.layers):
            raise ValueError(f"ttt layers must be distinct non-negative ints, got {self.layers}")

    def validate_for(self, num_layers: int) -> "TTTSettings":
        """Drop layers the model lacks (the official configs name layer 36 of 36)."""
        return replace(self, layers=tuple(i for i in self.layers if i < num_layers))

    def with_overrides(self, **kw: Any) -> "TTTSettings":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_config(self) -> dict[str, Any]:
        return {"ttt_mode": self.enabled, "ttt_layers": list(self.layers), "ttt_chunk": self.chunk,
                "ttt_lr": self.lr, "ttt_target": self.target, "ttt_proj": self.use_proj}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "TTTSettings | None":
        """The checkpoint's own settings; TTT is on only where `ttt_mode` is true (the official
        config carries `ttt_layers` even with TTT off; a config without `ttt_mode` is ours: on)."""
        if "ttt_layers" not in cfg:
            return None
        return cls(layers=tuple(int(i) for i in cfg["ttt_layers"]), chunk=int(cfg.get("ttt_chunk", 8192)),
                   lr=float(cfg.get("ttt_lr", 0.3)), target=str(cfg.get("ttt_target", "hidden_states")),
                   use_proj=bool(cfg.get("ttt_proj", True)), enabled=bool(cfg.get("ttt_mode", True)))


def resolve_settings(declared: TTTSettings | None, overrides: dict[str, Any], num_layers: int,
                     where: str) -> tuple[TTTSettings, list[str]]:
    """The settings a model is served with, and notes for the start-up line.

    `declared`: the checkpoint's (or the built-in model's); `overrides`: the command line's
    (None = not given). Layers given on the command line must exist (an error otherwise);
    declared layers the model lacks are dropped, as the official configs name one past the end.
    """
    notes: list[str] = []
    layers = overrides.get("layers")
    rest = {k: v for k, v in overrides.items() if k != "layers"}
    if layers is not None:
        bad = [i for i in layers if i >= num_layers]
        if bad or not layers:
            raise ValueError(f"--ttt-layers {','.join(map(str, layers)) or '(none)'}: {where} has layers "
                             f"0..{num_layers - 1}" + (f", not {bad}" if bad else ""))
        base = declared or TTTSettings(layers=tuple(layers), chunk=512, lr=0.3)
        if declared is not None and not declared.enabled:
            notes.append("ttt_mode is false in the checkpoint; --ttt-layers turns TTT on")
        return base.with_overrides(layers=tuple(layers), enabled=True, **rest), notes
    if declared is None:
        raise ValueError(f"{where} has no ttt_layers in config.json; give --ttt-layers for a plain checkpoint")
    settings = declared.with_overrides(**rest)
    dropped = [i for i in settings.layers if i >= num_layers]
    if dropped:
        notes.append(f"declared TTT layers {dropped} do not exist (layers 0..{num_layers - 1}): dropped")
        settings = settings.validate_for(num_layers)
    if not settings.enabled:
        notes.append("ttt_mode is false: serving the static model (no fast weights)")
    elif not settings.layers:
        raise ValueError(f"{where}: none of the declared TTT layers {list(declared.layers)} exists "
                         f"(layers 0..{num_layers - 1})")
    return settings, notes

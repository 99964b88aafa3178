"""Command-line flags shared by `rwttt bench`, `serve` and `eval`: value parsers that refuse
bad input in one line, the model and scheduler flag groups, and the help format (every
default shown); `config_from` builds the one RwtttConfig of parsed flags."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rwttt_ray.config import RwtttConfig


def version_string() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rwttt-ray")
    except PackageNotFoundError:
        return "unknown"


VERSION = version_string()


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag with its default (flags with none given, or whose help names it, as they are)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is argparse.SUPPRESS \
                or action.default is False or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".strip()


def positive(kind: str, least: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be an integer, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{kind} must be >= {least}, got {value}")
        return value
    return parse


def non_negative(kind: str):
    return positive(kind, least=0)


def layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ttt-layers takes comma-separated ints, got {text!r}") from None


def csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def positive_list(kind: str):
    def parse(text: str) -> tuple[int, ...]:
        values = tuple(positive(kind)(x) for x in csv(text))
        if not values:
            raise argparse.ArgumentTypeError(f"{kind} needs at least one value")
        return values
    return parse


def weights(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(x) for x in csv(text))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(0 < v < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"--tenant-weights takes two positive numbers FLOOD,STEADY, got {text!r}")
    return values


def add_model_flags(p: argparse.ArgumentParser, dtype: str = "float32") -> None:
    p.add_argument("--model", help="local checkpoint dir (default: the built-in tiny random model)")
    p.add_argument("--ttt-layers", type=layers, help="comma-separated TTT layer indices (must exist)")
    p.add_argument("--chunk", type=positive("--chunk"), help="TTT chunk size C")
    p.add_argument("--ttt-lr", type=float, help="TTT learning rate eta")
    p.add_argument("--ttt-target", choices=("hidden_states", "input_embed"), help="source of the TTT values V")
    p.add_argument("--ttt-init", default="checkpoint", choices=("checkpoint", "random"),
                   help="TTT conv/projection: the checkpoint's (missing ones are an error) or seeded random ones")
    p.add_argument("--dtype", default=dtype, choices=("auto", "float32", "bfloat16", "float16"),
                   help="compute dtype ('auto': the checkpoint's); fast weights are always float32")
    p.add_argument("--device", default="cpu", help="cpu or cuda")


def add_scheduler_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--align-rounds", type=non_negative("--align-rounds"),
                   help="READ rounds an owner at a WRITE boundary may sit out so owners that arrived apart "
                        "WRITE together (ray/http; default C/2, 0 = never)")
    p.add_argument("--admit-window-ms", type=float, default=10.0,
                   help="an idle worker starts once no request arrived for this long (ray/http; 0 = at once)")


def config_from(args) -> "RwtttConfig":
    """The one RwtttConfig of parsed flags (bench, serve, eval): the CLI builds it once."""
    from rwttt_ray.config import RwtttConfig

    seed = getattr(args, "seed", None) if args.command == "serve" else None
    return RwtttConfig(model=args.model, ttt_layers=args.ttt_layers, ttt_chunk=args.chunk, ttt_lr=args.ttt_lr,
                       ttt_target=args.ttt_target, dtype=args.dtype, device=args.device, ttt_init=args.ttt_init,
                       max_model_len=getattr(args, "max_model_len", None),
                       chat_template=getattr(args, "chat_template", None),
                       generation_config=getattr(args, "generation_config", "auto"),
                       session_ttl_s=getattr(args, "session_ttl_s", 3600.0),
                       **({"seed": seed} if seed is not None else {}),
                       max_group_size=getattr(args, "max_group_size", 64),
                       max_states_per_worker=getattr(args, "max_states_per_worker", 64),
                       wait_budget_steps=getattr(args, "wait_budget", 0),
                       align_rounds=getattr(args, "align_rounds", None),
                       admit_window_ms=getattr(args, "admit_window_ms", 10.0))

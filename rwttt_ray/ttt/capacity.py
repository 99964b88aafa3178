"""Capacity planning: how many owners (slots) and paged-KV blocks a worker's memory budget holds.

A worker sizes itself from a byte budget (like vLLM's --gpu-memory-utilization) instead of fixed
counts. Everything here is pure arithmetic on a `ModelShapes`; only `ModelShapes.of`,
`model_bytes_of` and `device_total_bytes` look at a live model or device.

A worker's memory, as planned:
  model weights (measured)
  + (slots + write_reserve) fast weights: per TTT layer one fp32 [d_ff, d_model] (always fp32)
  + (slots + 1) chunk buffers: per TTT layer x [C, d_model], h [C, d_ff] (+ s [C, d_model] when
    the target is the token embedding), compute dtype; the +1 is the scratch row padding writes to
  + (kv_blocks + 1) paged-KV blocks of `block_size` tokens; the +1 is the scratch block
  + workspace (logits and activations of one forward pass; see `workspace_estimate`)
and `CapacityPlan.total_bytes` is always <= the budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2 ** 30
MIB = 2 ** 20
FIXED_WORKSPACE = 256 * MIB   # allocator fragmentation, attention/rope temporaries, sampler


def blocks_for(tokens: int, block_size: int) -> int:
    """Paged-KV blocks needed to hold `tokens` tokens (ceil division)."""
    return -(-max(tokens, 0) // block_size)


@dataclass(frozen=True)
class ModelShapes:
    """The sizes of a model that decide its per-owner memory."""

    num_layers: int
    kv_heads: int
    head_dim: int
    d_model: int
    d_ff: int
    vocab: int
    num_ttt: int                 # layers with a fast weight (0: TTT off)
    chunk: int                   # C: rows of a chunk buffer
    dtype_bytes: int             # compute dtype (KV cache, chunk buffers)
    keep_targets: bool = False   # target "input_embed": the chunk's token embeddings are kept too

    @property
    def fast_slot_bytes(self) -> int:
        """One owner's fast weights over all TTT layers, fp32."""
        return self.num_ttt * self.d_ff * self.d_model * 4

    @property
    def buffer_slot_bytes(self) -> int:
        """One owner's chunk buffers (x, h and maybe s) over all TTT layers."""
        cols = self.d_model + self.d_ff + (self.d_model if self.keep_targets else 0)
        return self.num_ttt * self.chunk * cols * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        return self.kv_block_bytes(1)

    def kv_block_bytes(self, block_size: int) -> int:
        """K and V of `block_size` tokens over all layers."""
        return self.num_layers * 2 * self.kv_heads * self.head_dim * block_size * self.dtype_bytes

    @classmethod
    def qwen3_4b(cls, num_ttt: int = 6, chunk: int = 128, dtype_bytes: int = 2) -> "ModelShapes":
        return cls(num_layers=36, kv_heads=8, head_dim=128, d_model=2560, d_ff=9728, vocab=151936,
                   num_ttt=num_ttt, chunk=chunk, dtype_bytes=dtype_bytes)

    @classmethod
    def of(cls, model: Any) -> "ModelShapes":
        """The shapes of a `rwttt_ray.ttt.model.TTTModel` as loaded (its dtype, its TTT settings)."""
        cfg, s = model.hf.config, model.settings
        heads = int(cfg.num_attention_heads)
        head_dim = getattr(cfg, "head_dim", None) or int(cfg.hidden_size) // heads
        return cls(num_layers=int(cfg.num_hidden_layers),
                   kv_heads=int(getattr(cfg, "num_key_value_heads", None) or heads),
                   head_dim=int(head_dim), d_model=int(cfg.hidden_size), d_ff=int(cfg.intermediate_size),
                   vocab=int(cfg.vocab_size), num_ttt=len(s.layers) if s.enabled else 0, chunk=int(s.chunk),
                   dtype_bytes=int(next(model.hf.parameters()).dtype.itemsize),
                   keep_targets=s.target == "input_embed")


class CapacityError(ValueError):
    """The budget cannot hold the model and one owner; message says the numbers in GiB."""


def _gib(n: float) -> str:
    return f"{n / GIB:.2f}"


@dataclass(frozen=True)
class CapacityPlan:
    """What a worker allocates: counts, and the bytes each part costs."""

    slots: int               # owners held on the device at once
    write_reserve: int       # candidate slots for WRITE groups
    kv_blocks: int           # paged-KV blocks (excluding the scratch block)
    block_size: int
    budget_bytes: int
    model_bytes: int
    fast_bytes: int          # (slots + write_reserve) fast slots
    buffer_bytes: int        # (slots + 1) chunk-buffer slots
    kv_bytes: int            # (kv_blocks + 1) blocks
    workspace_bytes: int

    @property
    def total_bytes(self) -> int:
        """Everything planned, the model included; never more than budget_bytes."""
        return self.model_bytes + self.fast_bytes + self.buffer_bytes + self.kv_bytes + self.workspace_bytes

    def max_tokens_per_owner(self) -> int:
        """The longest context one owner can hold with the KV blocks to itself."""
        return self.kv_blocks * self.block_size

    def owners_at(self, tokens: int) -> int:
        """Owners that fit at once with `tokens` tokens of context each."""
        need = blocks_for(tokens, self.block_size)
        return self.slots if need == 0 else min(self.slots, self.kv_blocks // need)

    def describe(self, tokens: int, host: int | None = None) -> str:
        """The start-up line; `host`: owners the host tier holds besides (None: no limit)."""
        more = "" if host is None else f", and {host} more in the --swap-space host tier"
        return (f"capacity: {self.slots} slots, {self.write_reserve} write reserve, {self.kv_blocks} KV blocks "
                f"of {self.block_size} tokens ({self.owners_at(tokens)} owners at {tokens} tokens{more}); "
                f"fast weights {_gib(self.fast_bytes)} GiB, KV {_gib(self.kv_bytes)} GiB, "
                f"buffers {_gib(self.buffer_bytes)} GiB, model {_gib(self.model_bytes)} GiB "
                f"of budget {_gib(self.budget_bytes)} GiB")


def _plan(shapes: ModelShapes, slots: int, reserve: int, kv_blocks: int, block_size: int,
          model_bytes: int, workspace_bytes: int, budget_bytes: int | None) -> CapacityPlan:
    fast_bytes = (slots + reserve) * shapes.fast_slot_bytes
    buffer_bytes = (slots + 1) * shapes.buffer_slot_bytes
    kv_bytes = (kv_blocks + 1) * shapes.kv_block_bytes(block_size)
    total = model_bytes + fast_bytes + buffer_bytes + kv_bytes + workspace_bytes
    return CapacityPlan(slots, reserve, kv_blocks, block_size, total if budget_bytes is None else budget_bytes,
                        model_bytes, fast_bytes, buffer_bytes, kv_bytes, workspace_bytes)


def _check_counts(block_size: int, write_reserve: int, max_slots: int, tokens: int) -> None:
    if block_size < 1 or write_reserve < 0 or max_slots < 1 or tokens < 1:
        raise ValueError(f"need block_size >= 1, write_reserve >= 0, slots >= 1, tokens >= 1; got "
                         f"{block_size}, {write_reserve}, {max_slots}, {tokens}")


def plan_capacity(shapes: ModelShapes, *, budget_bytes: int, model_bytes: int, block_size: int = 16,
                  write_reserve: int, max_slots: int, target_tokens: int, workspace_bytes: int = 0) -> CapacityPlan:
    """The most slots (<= max_slots) whose owners all fit at `target_tokens` tokens each, the write
    reserve clamped to the slots, and every byte left over as KV blocks (shorter owners leave room).

    Slots s cost s * per_owner + min(write_reserve, s) * fast_slot, increasing in s, so the largest
    s that fits grows with the budget. CapacityError when not even one owner fits."""
    _check_counts(block_size, write_reserve, max_slots, target_tokens)
    fast, block = shapes.fast_slot_bytes, shapes.kv_block_bytes(block_size)
    per_owner = fast + shapes.buffer_slot_bytes + blocks_for(target_tokens, block_size) * block
    free = budget_bytes - model_bytes - workspace_bytes - shapes.buffer_slot_bytes - block
    reserve = min(write_reserve, max_slots)
    if free < per_owner + min(reserve, 1) * fast:
        raise CapacityError(
            f"a budget of {_gib(budget_bytes)} GiB cannot hold the model ({_gib(model_bytes)} GiB), workspace "
            f"({_gib(workspace_bytes)} GiB) and one owner at {target_tokens} tokens "
            f"({_gib(per_owner + min(reserve, 1) * fast)} GiB with its write reserve): "
            f"{_gib(max(free, 0))} GiB is left")
    slots = free // (per_owner + fast)           # while slots <= reserve, each slot brings a reserve slot
    if slots >= reserve:
        slots = (free - reserve * fast) // per_owner
    slots = min(int(slots), max_slots)
    reserve = min(reserve, slots)
    left = free - slots * (fast + shapes.buffer_slot_bytes) - reserve * fast
    plan = _plan(shapes, slots, reserve, int(left // block), block_size, model_bytes, workspace_bytes, budget_bytes)
    assert plan.total_bytes <= budget_bytes and plan.owners_at(target_tokens) == slots, plan
    return plan


def plan_counts(shapes: ModelShapes, *, slots: int, write_reserve: int, block_size: int, max_tokens: int,
                model_bytes: int = 0, workspace_bytes: int = 0) -> CapacityPlan:
    """The count-sized plan (no budget given): `slots` slots, KV for every slot at `max_tokens`,
    the write reserve clamped to the slots; its budget is what it costs."""
    _check_counts(block_size, write_reserve, slots, max_tokens)
    kv_blocks = slots * blocks_for(max_tokens, block_size)
    return _plan(shapes, slots, min(write_reserve, slots), kv_blocks, block_size, model_bytes,
                 workspace_bytes, None)


def host_bytes_per_owner(shapes: ModelShapes, tokens: int) -> int:
    """The most one spilled owner at `tokens` tokens costs in the host tier: its fp32 fast weights,
    chunk buffers and KV, plus its header (token log, tensor table: 16 bytes a token and 64 KiB)."""
    return shapes.fast_slot_bytes + shapes.buffer_slot_bytes + tokens * (shapes.kv_bytes_per_token + 16) + 2 ** 16


def host_owners(swap_bytes: int | None, per_owner_bytes: int) -> int | None:
    """Owners the host tier (--swap-space) holds at `per_owner_bytes` each (None: no limit)."""
    return None if swap_bytes is None else swap_bytes // max(1, per_owner_bytes)


def swap_bytes(swap_space_gib: float | None) -> int | None:
    """--swap-space GiB as bytes (None: no limit)."""
    return None if swap_space_gib is None else int(swap_space_gib * GIB)


def host_tier_owners(model: Any, swap_space_gib: float | None, tokens: int) -> int | None:
    """Owners at `tokens` tokens that a --swap-space host tier holds for a live model (None: no limit)."""
    return host_owners(swap_bytes(swap_space_gib), host_bytes_per_owner(ModelShapes.of(model), tokens))


def workspace_estimate(shapes: ModelShapes, max_batch: int, fixed_bytes: int = FIXED_WORKSPACE) -> int:
    """Working memory of one forward pass of `max_batch` rows (tokens): fp32 logits [rows, vocab]
    plus about 8 d_ff-wide activations per row in the compute dtype (gate, up, act, fast-weight
    terms), plus `fixed_bytes` for temporaries and allocator slack; rounded up to a MiB."""
    raw = max_batch * (shapes.vocab * 4 + 8 * shapes.d_ff * shapes.dtype_bytes) + fixed_bytes
    return -(-raw // MIB) * MIB


def budget_from(*, total_device_bytes: int, gpu_memory_utilization: float | None,
                memory_budget_gib: float | None) -> int | None:
    """The byte budget: memory_budget_gib if given, else utilization * total, else None (count-sized)."""
    if memory_budget_gib is not None:
        if not memory_budget_gib > 0:
            raise ValueError(f"memory budget must be > 0 GiB, got {memory_budget_gib}")
        return int(memory_budget_gib * GIB)
    if gpu_memory_utilization is not None:
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu memory utilization must be in (0, 1], got {gpu_memory_utilization}")
        return int(gpu_memory_utilization * total_device_bytes)
    return None


def model_bytes_of(model: Any) -> int:
    """Bytes of a live TTTModel's weights: the transformers model's parameters and buffers plus
    the TTT conv/projection tensors."""
    hf = model.hf
    tensors = [*hf.parameters(), *hf.buffers(), *model.conv.values(), *model.proj.values()]
    return sum(t.numel() * t.element_size() for t in tensors)


def device_total_bytes(device: str) -> int:
    """Total memory of a device: a CUDA device's, else the host's physical memory."""
    import torch

    if str(device).startswith("cuda"):
        return int(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def plan_worker(model: Any, *, device: str, max_states_per_worker: int, max_group_size: int, kv_block_size: int = 16,
                gpu_memory_utilization: float | None = None, memory_budget_gib: float | None = None,
                **_: Any) -> CapacityPlan:
    """A worker's plan for its loaded model: from the budget when one is given (slots capped by
    `max_states_per_worker`, each owner sized for the model's full context), else by counts
    (`max_states_per_worker` slots, KV for each at the full context). The WRITE reserve is the
    largest WRITE group: min(max_group_size, slots)."""
    shapes = ModelShapes.of(model)
    reserve = min(max_group_size, max_states_per_worker)
    budget = budget_from(total_device_bytes=device_total_bytes(device) if (gpu_memory_utilization or 0) else 0,
                         gpu_memory_utilization=gpu_memory_utilization, memory_budget_gib=memory_budget_gib)
    weights = model_bytes_of(model) + _fused_bytes(model)
    if budget is None:
        return plan_counts(shapes, slots=max_states_per_worker, write_reserve=reserve, block_size=kv_block_size,
                           max_tokens=model.max_seq_len, model_bytes=weights)
    return plan_capacity(shapes, budget_bytes=budget, model_bytes=weights, block_size=kv_block_size,
                         write_reserve=reserve, max_slots=max_states_per_worker, target_tokens=model.max_seq_len,
                         workspace_bytes=workspace_estimate(shapes, max_states_per_worker))


def _fused_bytes(model: Any) -> int:
    """The static decoder's fused QKV and gate/up copies (ttt.decode)."""
    total = 0
    for layer in model.hf.model.layers:
        for lin in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj,
                    layer.mlp.gate_proj, layer.mlp.up_proj):
            total += lin.weight.numel() * lin.weight.element_size()
    return total

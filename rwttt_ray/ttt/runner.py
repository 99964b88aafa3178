"""GroupRunner: executes legal groups for the owners placed on one worker (torch, no ray).

It holds the model forward, the fast-weight pool and the sequence pool, and each owner's
position, token log and sampler. It never changes versions: READ groups emit tokens, WRITE
groups produce dirty candidates plus receipts; the caller commits or rolls back through the
ledger and then calls `commit`/`rollback` here. It re-checks each group's legality first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from rwttt_ray.core.planner import assert_legal
from rwttt_ray.core.phase import WriteReceipt
from rwttt_ray.core.progress import OwnerProgress
from rwttt_ray.core.types import Backend, Effect, Group, StepKind, TransitionTag, shape_class
from rwttt_ray.ttt.forward import BatchView, FastWeightForward
from rwttt_ray.ttt.kernels import chunk_values
from rwttt_ray.ttt.model import TTTModel
from rwttt_ray.ttt.pool import FastWeightPool
from rwttt_ray.text.codec import TextCodec
from rwttt_ray.text.stops import StopChecker, StopReason
from rwttt_ray.ttt.sampling import Request, TokenLogprobs, sample, token_logprobs
from rwttt_ray.ttt.seqpool import SequencePool
from rwttt_ray.ttt.state_io import OwnerSnapshot


@dataclass
class OwnerState:
    """Worker-side state of one owner besides its tensors: its request, token stream and
    progress (see core.progress: what is fed, what is next)."""

    request: Request
    stream: list[int]                                 # prompt + generated tokens
    progress: OwnerProgress
    logits: list[torch.Tensor] = field(default_factory=list)  # per emitted token, if recorded
    checker: StopChecker | None = None                # stop strings of this turn (made at its first token)

    @property
    def generated(self) -> list[int]:
        return self.stream[self.progress.num_prompt:]

    @property
    def writes(self) -> int:
        return self.progress.writes

    @property
    def pos(self) -> int:
        return self.progress.pos


@dataclass(frozen=True, slots=True)
class GroupResult:
    """Tokens emitted per owner by a READ group (with logprobs and stop reasons where there are
    some), or receipts of a WRITE group."""

    tokens: dict[str, int] = field(default_factory=dict)
    receipts: tuple[WriteReceipt, ...] = ()
    logprobs: dict[str, TokenLogprobs] = field(default_factory=dict)
    stops: dict[str, StopReason] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)       # owners whose token could not be made


class GroupRunner:
    """Owner states + pools + forward; `run(group)` executes one legal group."""

    static_rounds = True          # its decode rounds may take the static-shape path (StaticRounds)

    def __init__(self, model: TTTModel, max_owners: int = 64, record_logits: bool = False,
                 placement: str = "local", write_reserve: int | None = None,
                 max_seq_len: int | None = None, block_size: int = 16, kv_blocks: int | None = None) -> None:
        """`write_reserve`: WRITE candidate slots (default: one per owner); `kv_blocks`: paged-KV
        blocks of `block_size` tokens (default: every owner at the full context)."""
        s, cfg = model.settings, model.hf.config
        self.model, self.settings, self.placement = model, s, placement
        self.record_logits = record_logits
        dtype = next(model.hf.parameters()).dtype
        device = next(model.hf.parameters()).device
        self.max_seq_len = min(max_seq_len or model.max_seq_len, model.max_seq_len)
        self.seqs = SequencePool(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim, self.max_seq_len,
                                 len(s.layers), s.chunk, cfg.hidden_size, cfg.intermediate_size, max_owners, dtype, device,
                                 keep_targets=s.target == "input_embed", block_size=block_size, num_blocks=kv_blocks)
        self.pool = FastWeightPool(len(s.layers), cfg.intermediate_size, cfg.hidden_size, max_owners,
                                   write_reserve or max_owners, device)
        self.forward = FastWeightForward(model, self.seqs, self.pool)
        self.owners: dict[str, OwnerState] = {}
        self.shape_prefix = f"{str(dtype).removeprefix('torch.')}:{cfg.hidden_size}x{cfg.intermediate_size}:C{s.chunk}"
        self.write_fault: Callable[[str], None] | None = None   # test hook: raise inside a WRITE
        self.read_fault: Callable[[str], None] | None = None    # test hook: raise in a READ, per owner
        self.codec = TextCodec(model.tokenizer)                  # stop strings are matched on its text
        self.profile = {"sampling": 0.0, "host_sync": 0.0}      # seconds (LocalLoop.profile)

    # -- owners ---------------------------------------------------------------------------
    def admit(self, req: Request, generated: list[int] | None = None) -> None:
        """Place an owner; with `generated`, replay prompt + those tokens first (recovery)."""
        if len(req.prompt) + req.max_new_tokens > self.max_seq_len:
            raise ValueError(f"prompt ({len(req.prompt)}) + max_new_tokens ({req.max_new_tokens}) "
                             f"exceeds the context limit {self.max_seq_len}")
        gen = list(generated or [])
        progress = OwnerProgress.fresh(self.settings.chunk, len(req.prompt), len(gen), req.max_new_tokens,
                                       ttt=self.settings.enabled,
                                       done=len(gen) >= req.max_new_tokens or self._stopped(req, gen))
        self.pool.attach(req.owner_id, self.seqs.allocate(req.owner_id))
        self.owners[req.owner_id] = OwnerState(req, list(req.prompt) + gen, progress)

    def release(self, owner_id: str) -> None:
        self.owners.pop(owner_id, None)
        self.pool.drop(owner_id)
        moved = self.seqs.release(owner_id)
        if moved is not None:
            self.pool.move(*moved)

    def progress(self, owner_id: str) -> OwnerProgress:
        return self.owners[owner_id].progress

    def is_finished(self, owner_id: str) -> bool:
        return self.owners[owner_id].progress.finished

    def next_tag(self, owner_id: str, version: int) -> TransitionTag | None:
        """The owner's next step (WRITE at a full chunk, else a prefill piece or a decode READ)."""
        p = self.owners[owner_id].progress
        effect = p.next_effect()
        return None if effect is None else self.tag(owner_id, p.step_kind(), effect, version, p.piece())

    def tag(self, owner_id: str, kind: StepKind, effect: Effect, version: int, piece: int = 1) -> TransitionTag:
        return TransitionTag(owner_id, Backend.FAST_WEIGHT, shape_class(self.shape_prefix, kind, piece), effect,
                             version, self.placement)

    # -- execution ------------------------------------------------------------------------
    def run(self, group: Group) -> GroupResult:
        """Re-check legality against this worker's mirror of versions, then run the kernels."""
        assert_legal(group, lambda o: self.owners[o].writes)
        if group.effect is Effect.WRITE:
            return self._run_write(group)
        return self._run_read(group)

    def _run_read(self, group: Group) -> GroupResult:
        states = [self.owners[o] for o in group.owner_ids]
        blocks = [st.stream[st.pos:st.pos + st.progress.piece()] for st in states]
        if len({len(b) for b in blocks}) != 1 or not blocks[0]:
            raise ValueError("a READ group must feed equal-length, non-empty token blocks")
        for o, st in zip(group.owner_ids, states):
            self.seqs.ensure(o, st.pos + len(blocks[0]), st.pos)
        view = BatchView(tuple(self.seqs.owner_slot[o] for o in group.owner_ids), tuple(st.pos for st in states),
                         tuple(st.progress.fill for st in states), tuple(self._fast_slot(o) for o in group.owner_ids))
        for o in group.owner_ids if self.read_fault is not None else ():
            self.read_fault(o)
        logits = self.forward(torch.tensor(blocks), view)
        out = GroupResult()
        for b, (o, st) in enumerate(zip(group.owner_ids, states)):
            if st.pos + len(blocks[b]) < len(st.stream):
                st.progress = st.progress.after_read()
                continue
            try:
                self._emit(o, st, logits[b], out)
            except Exception as exc:          # this owner's token only: the others' stand
                out.failed[o] = f"{type(exc).__name__}: {exc}"
        return out

    def _fast_slot(self, owner_id: str) -> int | None:
        return self.pool.slot_of(owner_id)

    def _emit(self, owner_id: str, st: OwnerState, logits: torch.Tensor, out: GroupResult) -> None:
        """Sample the owner's next token and accept it."""
        req = st.request
        shaped = req.shapes_logits
        t0 = time.perf_counter()
        tok = sample(logits, req, len(st.generated), st.generated if shaped else (), st.stream if shaped else ())
        self.profile["sampling"] += time.perf_counter() - t0
        self.accept(owner_id, st, tok, logits, out)

    def accept(self, owner_id: str, st: OwnerState, tok: int, logits: torch.Tensor | None, out: GroupResult) -> None:
        """Append the owner's next token, deciding here whether its turn ends with it (all
        decided before the owner's state changes, so a failure leaves it as it was)."""
        req = st.request
        entry = token_logprobs(logits, tok, req.logprobs) if req.logprobs is not None else None
        reason = self._stop_reason(st, tok)
        if self.record_logits and logits is not None:
            st.logits.append(logits.clone())
        st.stream.append(tok)
        out.tokens[owner_id] = tok
        if entry is not None:
            out.logprobs[owner_id] = entry
        if reason is not None:
            out.stops[owner_id] = reason
        st.progress = st.progress.after_read(stopped=reason is not None)

    def _checker(self, req: Request, prompt: list[int]) -> StopChecker:
        return StopChecker(self.codec, req.stop, req.stop_ids, req.skip_special_tokens, context=prompt)

    def _stop_reason(self, st: OwnerState, tok: int) -> StopReason:
        if tok in st.request.stop_ids:
            return tok
        if not st.request.stop:
            return None
        if st.checker is None:        # the turn's first token, or an owner rebuilt mid-turn
            st.checker = self._checker(st.request, st.stream[:st.progress.num_prompt])
            st.checker.replay(st.generated)
        return st.checker.push(tok)

    def _stopped(self, req: Request, generated: list[int]) -> bool:
        """Whether a turn that generated these tokens has ended at a stop (a rebuilt owner)."""
        if not generated:
            return False
        if generated[-1] in req.stop_ids:
            return True
        return bool(req.stop) and self._checker(req, list(req.prompt)).replay(generated) is not None

    def write_room(self) -> int:
        """Owners a WRITE can take now: the free candidate slots."""
        return self.pool.num_free()

    def _run_write(self, group: Group) -> GroupResult:
        owners = group.owner_ids
        for o in owners:
            self.pool.begin_candidate(o)
        try:
            self._write_candidates(owners)
        except BaseException:
            for o in owners:
                self.pool.rollback(o)
            raise
        return GroupResult(receipts=tuple(WriteReceipt(o, self.owners[o].writes, self._checksum(o)) for o in owners))

    def _write_candidates(self, owners: tuple[str, ...]) -> None:
        s = self.settings
        # the index must live on the buffers' device: index_select of a CUDA tensor with a CPU index
        # raises, and the engine would count every WRITE as failed
        slots = torch.tensor([self.seqs.owner_slot[o] for o in owners],
                             device=self.seqs.hbuf[0].device if self.seqs.hbuf else None)
        for ti, layer_idx in enumerate(s.layers):
            h = self.seqs.hbuf[ti].index_select(0, slots)                           # [G, C, F], kept from READ
            buf = self.seqs.xbuf if self.seqs.sbuf is None else self.seqs.sbuf
            src = buf[ti].index_select(0, slots)                                    # [G, C, D]
            v = chunk_values(src, self.model.conv[layer_idx], self.model.proj[layer_idx] if s.use_proj else None)
            for g, o in enumerate(owners):
                if self.write_fault is not None:
                    self.write_fault(o)
                self.pool.write_candidate(o, ti, h[g], v[g], s.lr)

    def _checksum(self, owner_id: str) -> float:
        slot = self.pool._candidates[owner_id]
        return float(sum(layer[slot].sum() for layer in self.pool.layers))

    def commit(self, owner_id: str) -> None:
        self.pool.commit(owner_id)
        st = self.owners[owner_id]
        st.progress = st.progress.after_write()

    def rollback(self, owner_id: str) -> None:
        self.pool.rollback(owner_id)

    def deltas(self, owner_id: str) -> list[torch.Tensor] | None:
        """The owner's committed fast-weight deltas dW [D, F] per TTT layer (None: still zero)."""
        d = self.pool.export(owner_id)
        return None if d is None else [t.t().contiguous() for t in d]

    # -- migration and spill ----------------------------------------------------------------
    def snapshot(self, owner_id: str) -> OwnerSnapshot:
        """The owner's committed state (no dirty candidate) as tensors off the pools."""
        st = self.owners[owner_id]
        if self.pool.has_candidate(owner_id):
            raise RuntimeError(f"owner {owner_id} has an uncommitted WRITE candidate")
        seq = self.seqs.export(owner_id, st.pos, st.progress.fill)
        tensors = {f"{kind}.{i}": t for kind in ("k", "v", "x", "h", "s") for i, t in enumerate(seq[kind])}
        for i, t in enumerate(self.pool.export(owner_id) or []):
            tensors[f"dw.{i}"] = t
        return OwnerSnapshot(st.request, st.writes, st.pos, list(st.generated), st.progress.done, tensors)

    def restore(self, snap: OwnerSnapshot) -> None:
        """Install an owner from a snapshot (another worker's, or this one's host tier)."""
        owner_id = snap.request.owner_id
        self.admit(snap.request, snap.generated)
        st = self.owners[owner_id]
        st.progress = replace(st.progress, pos=snap.pos, writes=snap.version, done=snap.done)

        def pick(kind: str) -> list[torch.Tensor]:
            names = sorted((k for k in snap.tensors if k.startswith(kind + ".")), key=lambda k: int(k.split(".")[1]))
            return [snap.tensors[k] for k in names]
        self.seqs.load(owner_id, {kind: pick(kind) for kind in ("k", "v", "x", "h", "s")})
        dw = pick("dw")
        self.pool.load(owner_id, dw or None)

    def replay(self, owner_id: str, target: OwnerProgress) -> None:
        """Rebuild an owner from its token log up to `target` (its last committed position):
        READ the logged tokens in chunk-aligned pieces and redo each WRITE, no sampling."""
        st = self.owners[owner_id]
        while st.pos < target.pos or st.writes < target.writes:
            if st.progress.write_pending:
                tag = self.tag(owner_id, StepKind.WRITE, Effect.WRITE, st.writes)
                self._run_write(Group(tag.key, (tag,), -1))
                self.commit(owner_id)
                continue
            n = min(target.pos - st.pos, self.settings.chunk - st.progress.fill)
            self.seqs.ensure(owner_id, st.pos + n, st.pos)
            view = BatchView((self.seqs.owner_slot[owner_id],), (st.pos,), (st.progress.fill,), (self._fast_slot(owner_id),))
            self.forward(torch.tensor([st.stream[st.pos:st.pos + n]]), view)
            st.progress = replace(st.progress, pos=st.pos + n)
        if (st.pos, st.writes) != (target.pos, target.writes):
            raise RuntimeError(f"replay of {owner_id} reached pos {st.pos}/v{st.writes}, wanted {target.pos}/v{target.writes}")
        st.progress = target

    # -- sessions ---------------------------------------------------------------------------
    def extend(self, req: Request) -> None:
        """Continue an idle owner with a longer stream (its history + a new turn's tokens)."""
        st = self.owners[req.owner_id]
        if list(req.prompt[:len(st.stream)]) != st.stream:
            raise ValueError(f"owner {req.owner_id}: a continuation must start with the owner's stream")
        if len(req.prompt) + req.max_new_tokens > self.max_seq_len:
            raise ValueError(f"session would reach {len(req.prompt) + req.max_new_tokens} tokens, "
                             f"over the context limit {self.max_seq_len}")
        st.request, st.stream, st.checker = req, list(req.prompt), None
        st.progress = replace(st.progress, num_prompt=len(req.prompt), stream_len=len(req.prompt),
                              max_new_tokens=req.max_new_tokens, done=False)

    def fork(self, parent_id: str, child: Request) -> None:
        """A new owner with the parent's committed state: buffer rows and fast weights copied, KV shared
        copy-on-write (the KV blocks: a shared block is copied when either one writes into it)."""
        st = self.owners[parent_id]
        if self.pool.has_candidate(parent_id):
            raise RuntimeError(f"owner {parent_id} has an uncommitted WRITE candidate")
        self.seqs.copy_slot(parent_id, child.owner_id, st.pos, st.progress.fill)
        self.pool.attach(child.owner_id, self.seqs.owner_slot[child.owner_id])
        self.pool.fork(parent_id, child.owner_id)
        self.owners[child.owner_id] = OwnerState(child, list(st.stream), st.progress)

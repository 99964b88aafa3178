"""RwtttConfig: sub-configs, one name a knob (field = flag dest = parameter), pure validation on
construction, the machine's checks apart, and the flags' defaults equal to the config's."""
import dataclasses

import pytest
import torch

from rwttt_ray.cli import build_parser
from rwttt_ray.config import BUILTIN_ARCHS, KNOBS, SECTIONS, RwtttConfig
from rwttt_ray.flags import BUILTIN_ARCHS as FLAG_ARCHS
from rwttt_ray.flags import POLICIES, TRACES, config_from

NO_FLAG = {"autoscale", "worker_resources", "scheduler_resources", "tenant_limits"}   # dicts: YAML/API only


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_every_knob_name_is_unique_and_routed_to_its_section():
    c = RwtttConfig.of(ttt_chunk=8, max_group_size=3, workers=2, session_ttl_s=5.0, model="/m")
    assert (c.model.ttt_chunk, c.batching.max_group_size, c.cluster.workers) == (8, 3, 2)
    assert (c.service.session_ttl_s, c.model.model) == (5.0, "/m")
    assert set(KNOBS) == {f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)}
    with pytest.raises(TypeError, match="max_rounds"):
        RwtttConfig.of(max_rounds=4)                       # k is rounds_per_call, one name


def test_sub_configs_are_frozen_and_keyword_only():
    for cls in (RwtttConfig, *SECTIONS.values()):
        with pytest.raises(TypeError):
            cls(None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(), dataclasses.fields(cls)[0].name, None)


def test_dict_round_trip_and_unknown_names_are_named():
    c = RwtttConfig.of(ttt_layers=[1, 2], workers=3, rounds_per_call=4, tenant_limits={"t": {"weight": 2.0}})
    assert c.model.ttt_layers == (1, 2)
    assert RwtttConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match=r"unknown knobs \['max_group'\]"):
        RwtttConfig.from_dict({"batching": {"max_group": 2}})
    with pytest.raises(ValueError, match=r"unknown sections \['extra'\]"):
        RwtttConfig.from_dict({"extra": {}})


@pytest.mark.parametrize("knobs, needle", [
    ({"max_group_size": 0}, "max group size must be >= 1"), ({"wait_budget_steps": -1}, "wait budget must be >= 0"),
    ({"rounds_per_call": 0}, "rounds per call must be >= 1"), ({"admit_window_ms": -1}, "admit window must be >= 0"),
    ({"session_ttl_s": 0}, "session ttl"), ({"dtype": "int8"}, "dtype must be one of"),
    ({"ttt_chunk": 0}, "ttt chunk must be >= 1"), ({"fairness_policy": "x"}, "fairness_policy must be one of"),
    ({"placement_policy": "x"}, "placement_policy"), ({"min_workers": 2}, "autoscaling needs max_workers"),
    ({"workers": 3, "max_workers": 2}, "must be <= max_workers"), ({"max_model_len": 1}, "max model len"),
    ({"gpu_memory_utilization": 0}, "gpu memory utilization must be > 0"),
    ({"gpu_memory_utilization": 1.5}, "gpu memory utilization must be <= 1"),
    ({"memory_budget_gib": 0}, "memory budget must be > 0"), ({"memory_budget_gib": -2.0}, "memory budget"),
    ({"swap_space": -1}, "swap space must be >= 0"), ({"kv_block_size": 0}, "kv block size must be >= 1"),
    ({"gpu_memory_utilization": 0.9, "memory_budget_gib": 8}, "gpu_memory_utilization and memory_budget_gib"),
    ({"builtin_arch": "qwen3-8b"}, "builtin_arch must be one of"),
    ({"builtin_arch": "qwen3-4b", "model": "/m"}, "builtin_arch 'qwen3-4b' is the built-in model's"),
])
def test_bad_values_are_refused_on_construction(knobs, needle):
    with pytest.raises(ValueError, match=needle):
        RwtttConfig.of(**knobs)


def test_memory_and_eager_knobs_round_trip_and_their_defaults():
    c = RwtttConfig.of(gpu_memory_utilization=0.9, swap_space=0.0, kv_block_size=32, enforce_eager=True,
                       builtin_arch="qwen3-4b", max_states_per_worker=5)
    assert RwtttConfig.from_dict(c.to_dict()) == c
    assert c.batching.memory() == {"max_states_per_worker": 5, "gpu_memory_utilization": 0.9,
                                   "memory_budget_gib": None, "swap_space": 0.0, "kv_block_size": 32}
    d = RwtttConfig()
    assert (d.batching.gpu_memory_utilization, d.batching.memory_budget_gib) == (None, None)
    assert (d.batching.swap_space, d.batching.kv_block_size, d.model.enforce_eager, d.model.builtin_arch) == \
        (4.0, 16, False, "tiny")
    assert RwtttConfig.of(memory_budget_gib=0.5, gpu_memory_utilization=None).batching.memory_budget_gib == 0.5
    assert RwtttConfig.of(gpu_memory_utilization=1.0).batching.gpu_memory_utilization == 1.0


def test_machine_checks_are_apart_from_construction(tmp_path):
    """A config naming things this machine lacks builds anywhere; check_environment refuses it."""
    missing = str(tmp_path / "none")
    for knobs, needle in [({"model": missing}, "model dir"), ({"chat_template": missing}, "chat template file"),
                          ({"generation_config": missing}, "generation config")]:
        c = RwtttConfig.of(**knobs)
        with pytest.raises(ValueError, match=needle):
            c.check_environment()
        with pytest.raises(ValueError, match=needle):
            c.model.load_model()
    cuda = RwtttConfig.of(device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            cuda.check_environment()
    RwtttConfig().check_environment()


@pytest.mark.parametrize("command", [["bench"], ["eval"], ["serve"]])
def test_flag_defaults_are_the_config_defaults(command):
    got = config_from(parse(*command))
    want = RwtttConfig.of(dtype="auto") if command == ["serve"] else RwtttConfig()
    assert got == want


@pytest.mark.parametrize("command", ["bench", "eval", "serve"])
def test_every_knob_has_one_flag_of_its_name_in_every_command(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    dests = {a.dest: a for a in parser._actions}
    flags = {s for a in parser._actions for s in a.option_strings}
    for knob in set(KNOBS) - NO_FLAG - {"seed"}:
        assert knob in dests and f"--{knob.replace('_', '-')}" in flags, knob
    assert ("model_seed" in dests) == (command == "serve")        # serve's --seed is the model's (vLLM's)
    for old in ("--streams", "--chunk", "--wait-budget"):
        assert old not in flags


def test_flags_reach_the_config_by_name():
    args = parse("bench", "--ttt-chunk", "8", "--max-states-per-worker", "4", "--rounds-per-call", "5",
                 "--quantum-steps", "3", "--workers", "2", "--session-ttl-s", "9", "--fairness-policy", "fcfs",
                 "--max-workers", "3", "--seed", "7")
    c = config_from(args)
    assert (c.model.ttt_chunk, c.batching.max_states_per_worker, c.batching.rounds_per_call) == (8, 4, 5)
    assert (c.batching.quantum_steps, c.cluster.workers, c.cluster.max_workers) == (3, 2, 3)
    assert (c.service.session_ttl_s, c.batching.fairness_policy, c.model.seed) == (9.0, "fcfs", None)
    assert config_from(parse("serve", "--seed", "7")).model.seed == 7
    c = config_from(parse("bench", "--gpu-memory-utilization", "0.8", "--swap-space", "2", "--kv-block-size", "8",
                          "--enforce-eager", "--builtin-arch", "qwen3-4b"))
    assert (c.batching.gpu_memory_utilization, c.batching.swap_space, c.batching.kv_block_size) == (0.8, 2.0, 8)
    assert (c.model.enforce_eager, c.model.builtin_arch, c.batching.memory_budget_gib) == (True, "qwen3-4b", None)
    assert config_from(parse("serve", "--memory-budget-gib", "12.5")).batching.memory_budget_gib == 12.5


def test_the_light_flag_tables_match_the_packages():
    from policies.eviction import EVICTION_NAMES
    from policies.fairness import FAIRNESS_NAMES
    from policies.grouping import GROUPING_NAMES
    from policies.placement import PLACEMENT_NAMES
    from rwttt_ray.bench.traces import TRACES as BENCH_TRACES

    assert TRACES == BENCH_TRACES
    assert FLAG_ARCHS == tuple(BUILTIN_ARCHS)
    assert POLICIES == {"grouping_policy": GROUPING_NAMES, "eviction_policy": EVICTION_NAMES,
                        "fairness_policy": FAIRNESS_NAMES, "placement_policy": PLACEMENT_NAMES}

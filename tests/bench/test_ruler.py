"""RULER-style tasks: seeded, sized in byte tokens, answers where they belong, exact scoring."""
import re
from collections import Counter

import pytest

from rwttt_ray.bench.ruler import (NIAH, TASKS, Example, english_text, expand_families, make_example, make_tasks,
                                   score, task_scores, to_request)
from rwttt_ray.ttt.tokenizer import ByteTokenizer

CONTEXT = 1024
MAX_SLACK = 128   # one filler sentence, list entry or uuid needle


@pytest.fixture(scope="module")
def examples():
    return make_tasks(TASKS, 3, CONTEXT, seed=7)


def test_families_expand_and_unknown_ones_raise():
    assert len(TASKS) == 11
    assert expand_families(["niah_single"]) == ["niah_single_1", "niah_single_2", "niah_single_3"]
    assert expand_families(["vt", "niah_multikey_2", "vt"]) == ["vt", "niah_multikey_2"]
    with pytest.raises(ValueError):
        expand_families(["qa_squad"])


def test_seeded_and_deterministic(examples):
    assert make_tasks(TASKS, 3, CONTEXT, seed=7) == examples
    other = make_tasks(TASKS, 3, CONTEXT, seed=8)
    assert all(a.prompt != b.prompt for a, b in zip(examples, other))
    assert len({ex.prompt for ex in examples}) == len(examples)
    assert [ex.task for ex in examples] == [t for t in TASKS for _ in range(3)]


@pytest.mark.parametrize("context_len", [CONTEXT, 1900])
def test_prompt_length_is_context_len_in_byte_tokens(context_len):
    for ex in make_tasks(TASKS, 2, context_len, seed=1):
        tokens = len(ByteTokenizer().encode(ex.prompt))
        assert ex.prompt.isascii() and tokens == len(ex.prompt)
        assert context_len - MAX_SLACK <= tokens <= context_len, (ex.task, tokens)
        assert ex.max_new_tokens > 0 and ex.answers


def test_too_small_a_context_raises():
    for task in TASKS:
        with pytest.raises(ValueError, match="too small"):
            make_example(task, 0, 200)


def test_niah_needles_hold_the_answers(examples):
    for ex in (e for e in examples if e.task in NIAH):
        spec = NIAH[ex.task]
        needles = re.findall(r"One of the special magic \w+ for (\S+) is: (\S+)\.", ex.prompt)
        query = ex.prompt.rsplit("special magic", 1)[1]
        asked = [k for k, _ in needles if k in query]
        assert sorted(v for k, v in needles if k in asked) == sorted(ex.answers)
        assert len(ex.answers) == spec.num_values * spec.num_queries
        if spec.haystack == "needle":      # distractor needles never reuse a queried key
            assert len(needles) > 3 and len(asked) == 1
        else:
            assert len(needles) == spec.num_keys * spec.num_values


def test_vt_chain_is_in_order(examples):
    for ex in (e for e in examples if e.task == "vt"):
        first, *rest = ex.answers
        value = re.search(rf"VAR {first} = (\d+)\.", ex.prompt).group(1)
        positions = [ex.prompt.index(f"VAR {first} = {value}.")]
        positions += [ex.prompt.index(f"VAR {b} = VAR {a}.") for a, b in zip(ex.answers, rest)]
        assert positions == sorted(positions) and f"assigned the value {value}" in ex.prompt


def test_cwe_answers_are_the_ten_most_common(examples):
    for ex in (e for e in examples if e.task == "cwe"):
        counts = Counter(re.findall(r"^\d+\. (\w+)$", ex.prompt, re.M))
        assert len(ex.answers) == 10
        assert min(counts[a] for a in ex.answers) > max(n for w, n in counts.items() if w not in ex.answers)


def test_fwe_answers_are_the_three_most_frequent(examples):
    for ex in (e for e in examples if e.task == "fwe"):
        text = ex.prompt.split("coded words. ", 1)[1].split("\nQuestion:", 1)[0]
        ranked = Counter(text.split()).most_common()
        assert [w for w, _ in ranked[:3]] == ex.answers and ranked[2][1] > ranked[3][1]


def test_score_is_string_match_all():
    ex = Example("niah_multivalue", 0, "p", ["1234567", "Blue-Fox", "x9", "ab"], 8)
    assert score(ex, "1234567 blue-fox X9 ab") == 1.0
    assert score(ex, "the answer is 1234567 and BLUE-FOX.") == 0.5
    assert score(ex, "123456") == 0.0
    assert score(ex, "") == 0.0


def test_task_scores_average_per_task_times_100():
    a = Example("vt", 0, "p", ["A", "B"], 4)
    b = Example("vt", 1, "p", ["C"], 4)
    c = Example("cwe", 0, "p", ["w"], 4)
    assert task_scores([a, b, c], ["a", "c", "nothing"]) == {"vt": 75.0, "cwe": 0.0}
    with pytest.raises(ValueError):
        task_scores([a, b], ["a"])


def test_gold_predictions_score_100_and_to_request_encodes_bytes(examples):
    assert set(task_scores(examples, [" ".join(e.answers) for e in examples]).values()) == {100.0}
    req = to_request(examples[0], "o1")
    assert req.owner_id == "o1" and len(req.prompt) == len(examples[0].prompt)
    assert ByteTokenizer().decode(req.prompt) == examples[0].prompt


def test_english_text_is_exact_and_seeded():
    text = english_text(500, seed=3)
    assert len(text) == 500 and text == english_text(500, seed=3) != english_text(500, seed=4)
    assert re.fullmatch(r"[A-Za-z .]+", text) and text.count(".") >= 5

"""RULER-style synthetic long-context tasks, seeded and offline (standard library only).

The RULER families that need no data: niah_single_1/2/3, niah_multikey_1/2/3, niah_multivalue,
niah_multiquery, vt (variable tracking), cwe and fwe (common / frequent words extraction), with
RULER's templates. Paul Graham essays are replaced by seeded English-like text (`english_text`).
Prompts are ASCII, so their length in tokens of the byte tokenizer is `len(prompt)`: each is at
most `context_len` and within one filler sentence (or list entry) of it. Scoring is RULER's
string_match_all: the fraction of expected answers found in the prediction, case-insensitive.
"""
from __future__ import annotations

import itertools
import random
import string
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from rwttt_ray.core.request import Request
from rwttt_ray.ttt.tokenizer import ByteTokenizer

TASKS = ("niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2",
         "niah_multikey_3", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe")
NOISE_SENTENCES = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.",
                   "There and back again.")   # RULER's noise haystack, repeated
WORDS = """the of and to in is was that for on with as by at from it this be are or an which have had not but they
his her their one all were we when there can been more if will would some time people year way day man
world life hand part child eye woman place work week case point number group problem fact water house
story idea city light night money book river market road letter garden window mountain music paper
school family company question system program answer reason small large early young important public
bright quiet simple strong careful ancient open common make know take see come think look want give use
find tell ask seem feel leave call keep begin show hear play run move live believe bring happen write
provide sit stand lose pay meet include""".split()
ADJECTIVES = """fearless quick silent brave gentle vivid hollow proud lucky calm eager fancy humble jolly mighty
noisy plain rapid shiny tidy wise zealous amber crisp dusty frozen""".split()
NOUNS = """cauliflower lantern harbor falcon meadow pebble violin glacier orchard compass thimble canyon beacon
walrus quartz saddle tulip anchor blossom cobalt ember fjord jigsaw kettle""".split()
NIAH_TEMPLATE = ("Some special magic {kind} are hidden within the following text. Make sure to memorize "
                 "it. I will quiz you about the {kind} afterwards.\n{context}\nWhat are all the special "
                 "magic {kind} for {query} mentioned in the provided text? The special magic {kind} for "
                 "{query} mentioned in the provided text are")
NEEDLE = "One of the special magic {kind} for {key} is: {value}."
VT_TEMPLATE = ("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n"
               "{context}\nQuestion: Find all variables that are assigned the value {value} in the text "
               "above. Answer: According to the chain(s) of variable assignment in the text above, "
               "{count} variables are assigned the value {value}, they are:")
CWE_TEMPLATE = ("Below is a numbered list of words. In these words, some appear more often than others. "
                "Memorize the ones that appear most often.\n{context}\nQuestion: What are the 10 most common "
                "words in the above list? Answer: The top 10 words that appear most often in the list are:")
FWE_TEMPLATE = ("Read the following coded text and track the frequency of each coded word. Find the three most "
                "frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. Please "
                "ignore the dots '....'. What are the three most frequently appeared words in the above coded "
                "text? Answer: According to the coded text above, the three most frequently appeared words are:")
MAX_NEW_TOKENS = {"niah": 128, "vt": 60, "cwe": 160, "fwe": 50}   # bytes: 1 token = 1 byte


@dataclass(frozen=True, slots=True)
class Example:
    """One task instance: the prompt, what a correct answer contains, how long to generate."""

    task: str                 # one of TASKS
    index: int                # example number within its task
    prompt: str               # ASCII: one byte-tokenizer token per character
    answers: list[str]        # every one should appear in the prediction
    max_new_tokens: int       # generation budget, in byte tokens


@dataclass(frozen=True, slots=True)
class NiahSpec:
    """One needle-in-a-haystack variant (RULER's synthetic.yaml)."""

    haystack: str             # noise (repeated sentences) | essay (English-like text) | needle
    key_kind: str             # words (adjective-noun) | uuids
    value_kind: str           # numbers (7 digits) | uuids
    num_keys: int = 1         # needles with distinct keys
    num_values: int = 1       # needles per queried key
    num_queries: int = 1      # keys asked for


NIAH = {"niah_single_1": NiahSpec("noise", "words", "numbers"),
        "niah_single_2": NiahSpec("essay", "words", "numbers"),
        "niah_single_3": NiahSpec("essay", "words", "uuids"),
        "niah_multikey_1": NiahSpec("essay", "words", "numbers", num_keys=4),
        "niah_multikey_2": NiahSpec("needle", "words", "numbers"),
        "niah_multikey_3": NiahSpec("needle", "uuids", "uuids"),
        "niah_multivalue": NiahSpec("essay", "words", "numbers", num_values=4),
        "niah_multiquery": NiahSpec("essay", "words", "numbers", num_keys=4, num_queries=4)}


# -- text ----------------------------------------------------------------------------------
def english_sentences(rng: random.Random) -> Iterator[str]:
    """Endless English-like sentences of 6 to 14 common words."""
    while True:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
        yield " ".join(words).capitalize() + "."


def english_text(num_chars: int, seed: int = 0) -> str:
    """Exactly `num_chars` characters of seeded English-like text (held-out text, essay filler)."""
    out, size, sentences = [], 0, english_sentences(random.Random(seed))
    while size < num_chars:
        out.append(next(sentences))
        size += len(out[-1]) + 1
    return " ".join(out)[:num_chars]


def _fill(sentences: Iterator[str], budget: int) -> list[str]:
    """Sentences whose ' '-joined length (plus one separator each) stays within `budget`."""
    out, size = [], 0
    for s in sentences:
        if size + len(s) + 1 > budget:
            return out
        out.append(s)
        size += len(s) + 1
    return out


def _insert(haystack: list[str], needles: list[str], rng: random.Random) -> str:
    """Needles at seeded depths (sentence boundaries), kept in their given order."""
    depths = sorted(rng.randint(0, len(haystack)) for _ in needles)
    items = list(haystack)
    for offset, (depth, needle) in enumerate(zip(depths, needles)):
        items.insert(depth + offset, needle)
    return " ".join(items)


def _budget(template_len: int, fixed: Iterable[str], context_len: int, task: str) -> int:
    budget = context_len - template_len - sum(len(s) + 1 for s in fixed)
    if budget < 0:
        raise ValueError(f"context_len {context_len} is too small for {task} (needs > {context_len - budget})")
    return budget


# -- needle in a haystack -------------------------------------------------------------------
def _item(rng: random.Random, kind: str) -> str:
    """A key or value of `kind`: words (an adjective-noun pair), numbers (7 digits) or uuids."""
    if kind == "uuids":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if kind == "numbers":
        return str(rng.randint(1_000_000, 9_999_999))
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def _distinct(make: Callable[[], str], n: int) -> list[str]:
    out: dict[str, None] = {}     # insertion-ordered set
    while len(out) < n:
        out[make()] = None
    return list(out)


def _haystack(spec: NiahSpec, rng: random.Random, budget: int, avoid: list[str]) -> list[str]:
    if spec.haystack == "noise":
        return _fill(itertools.cycle(NOISE_SENTENCES), budget)
    if spec.haystack == "essay":
        return _fill(english_sentences(rng), budget)
    distractors = (NEEDLE.format(kind=spec.value_kind, key=k, value=_item(rng, spec.value_kind))
                   for k in iter(lambda: _item(rng, spec.key_kind), None) if k not in avoid)
    return _fill(distractors, budget)


def niah(task: str, index: int, context_len: int, rng: random.Random) -> Example:
    """A needle-in-a-haystack example of variant `task` (a key of NIAH)."""
    spec = NIAH[task]
    kind = spec.value_kind
    keys = _distinct(lambda: _item(rng, spec.key_kind), spec.num_keys)
    values = [[_item(rng, kind) for _ in range(spec.num_values)] for _ in keys]
    needles = [NEEDLE.format(kind=kind, key=k, value=v) for k, vs in zip(keys, values) for v in vs]
    rng.shuffle(needles)
    asked = rng.sample(range(len(keys)), spec.num_queries)
    names = [keys[i] for i in asked]
    query = names[0] if len(names) == 1 else ", ".join(names[:-1]) + ", and " + names[-1]
    template_len = len(NIAH_TEMPLATE.format(kind=kind, query=query, context=""))
    budget = _budget(template_len, needles, context_len, task)
    context = _insert(_haystack(spec, rng, budget, keys), needles, rng)
    prompt = NIAH_TEMPLATE.format(kind=kind, query=query, context=context)
    return Example(task, index, prompt, [v for i in asked for v in values[i]], MAX_NEW_TOKENS["niah"])


# -- variable tracking, common and frequent words ---------------------------------------------
def variable_tracking(index: int, context_len: int, rng: random.Random, num_hops: int = 4) -> Example:
    """vt: one chain `VAR A = value`, `VAR B = VAR A`, ... hidden in noise, in order."""
    names = _distinct(lambda: "".join(rng.choice(string.ascii_uppercase) for _ in range(5)), num_hops + 1)
    value = str(rng.randint(10_000, 99_999))
    chain = [f"VAR {names[0]} = {value}."] + [f"VAR {b} = VAR {a}." for a, b in zip(names, names[1:])]
    template_len = len(VT_TEMPLATE.format(context="", value=value, count=len(names)))
    budget = _budget(template_len, chain, context_len, "vt")
    context = _insert(_fill(itertools.cycle(NOISE_SENTENCES), budget), chain, rng)
    prompt = VT_TEMPLATE.format(context=context, value=value, count=len(names))
    return Example("vt", index, prompt, names, MAX_NEW_TOKENS["vt"])


def _pseudo_words(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> Iterator[str]:
    """Endless distinct pronounceable words (consonant-vowel syllables)."""
    seen: set[str] = set()
    while True:
        word = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou")
                       for _ in range(rng.randint(*syllables)))
        if word not in seen:
            seen.add(word)
            yield word


def _numbered_len(words: list[str]) -> int:
    return sum(len(w) + len(str(i)) + 3 for i, w in enumerate(words, 1))   # "i. word\n"


def _cwe_words(rng: random.Random, budget: int, freq_cw: int, freq_ucw: int) -> tuple[list[str], list[str]] | None:
    source = _pseudo_words(rng)
    common = [next(source) for _ in range(10)]
    words = common * freq_cw
    size, uncommon = _numbered_len(words), 0
    while size <= budget:
        word = next(source)
        add = sum(len(word) + len(str(len(words) + j)) + 3 for j in range(1, freq_ucw + 1))
        if size + add > budget:
            break
        words, size, uncommon = words + [word] * freq_ucw, size + add, uncommon + 1
    return (common, words) if uncommon >= 10 and size <= budget else None


def common_words(index: int, context_len: int, rng: random.Random) -> Example:
    """cwe: a numbered list where 10 words appear freq_cw times and the rest freq_ucw times;
    the frequencies shrink (RULER does the same) until at least 10 uncommon words fit."""
    budget = _budget(len(CWE_TEMPLATE.format(context="")), [], context_len, "cwe")
    for freq_cw, freq_ucw in ((30, 3), (20, 3), (10, 2), (6, 2), (4, 1), (3, 1), (2, 1)):
        found = _cwe_words(rng, budget, freq_cw, freq_ucw)
        if found:
            common, words = found
            rng.shuffle(words)
            context = "\n".join(f"{i}. {w}" for i, w in enumerate(words, 1))
            return Example("cwe", index, CWE_TEMPLATE.format(context=context), common, MAX_NEW_TOKENS["cwe"])
    raise ValueError(f"context_len {context_len} is too small for cwe")


def frequent_words(index: int, context_len: int, rng: random.Random, alpha: float = 2.0) -> Example:
    """fwe: coded words with Zipf(alpha) counts, floor(c / rank**alpha), then singletons;
    the answer is the three most frequent (strictly ahead of the fourth)."""
    budget = _budget(len(FWE_TEMPLATE.format(context="")), [], context_len, "fwe")
    c = 0.6 * budget / 7                       # ~7 characters per coded word; zeta(2) ~ 1.64
    counts = [n for n in (int(c / r ** alpha) for r in range(1, int(c ** (1 / alpha)) + 2)) if n > 0]
    if len(counts) < 4 or counts[2] <= counts[3]:
        raise ValueError(f"context_len {context_len} is too small for fwe")
    source = _pseudo_words(rng, (3, 3))
    vocab = [next(source) for _ in counts]
    words = [w for w, n in zip(vocab, counts) for _ in range(n)]
    size = sum(len(w) + 1 for w in words)
    for w in source:
        if size + len(w) + 1 > budget:
            break
        words.append(w)
        size += len(w) + 1
    rng.shuffle(words)
    return Example("fwe", index, FWE_TEMPLATE.format(context=" ".join(words)), vocab[:3], MAX_NEW_TOKENS["fwe"])


# -- the suite --------------------------------------------------------------------------------
def expand_families(families: Iterable[str]) -> list[str]:
    """Task names from names or family prefixes ("niah_single" -> its three variants)."""
    out: list[str] = []
    for fam in families:
        names = [t for t in TASKS if t == fam or t.startswith(fam + "_")]
        if not names:
            raise ValueError(f"unknown RULER task {fam!r}; choose from {', '.join(TASKS)}")
        out += [t for t in names if t not in out]
    return out


def make_example(task: str, index: int, context_len: int, seed: int = 0) -> Example:
    rng = random.Random(f"{seed}:{task}:{index}")   # str seeds hash stably (sha512)
    if task in NIAH:
        return niah(task, index, context_len, rng)
    makers = {"vt": variable_tracking, "cwe": common_words, "fwe": frequent_words}
    if task not in makers:
        raise ValueError(f"unknown RULER task {task!r}; choose from {', '.join(TASKS)}")
    return makers[task](index, context_len, rng)


def make_tasks(families: Iterable[str], num_examples: int, context_len: int, seed: int = 0) -> list[Example]:
    """`num_examples` examples of each task named (or family prefixed) in `families`."""
    return [make_example(t, i, context_len, seed) for t in expand_families(families) for i in range(num_examples)]


def score(example: Example, prediction_text: str) -> float:
    """RULER string_match_all: the fraction of answers in the prediction (case-insensitive), 0..1."""
    pred = prediction_text.lower()
    return sum(a.lower() in pred for a in example.answers) / len(example.answers)


def task_scores(examples: list[Example], predictions: list[str]) -> dict[str, float]:
    """Per task, the mean example score times 100 (RULER's table unit)."""
    per_task: dict[str, list[float]] = {}
    for ex, pred in zip(examples, predictions, strict=True):
        per_task.setdefault(ex.task, []).append(score(ex, pred))
    return {t: 100 * sum(s) / len(s) for t, s in per_task.items()}


def to_request(example: Example, owner_id: str, tokenizer: ByteTokenizer | None = None) -> Request:
    """A greedy generation request for `example` (byte tokenizer unless one is given)."""
    return Request(owner_id, tuple((tokenizer or ByteTokenizer()).encode(example.prompt)), example.max_new_tokens)

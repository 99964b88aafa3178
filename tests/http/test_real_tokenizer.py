"""The official OpenAI client against a checkpoint with a real BPE tokenizer, ChatML template and
generation_config.json: chat prompts are the template's tokens, replies end at EOS, text equals
the tokenizer's decode of the ids (multi-byte characters split across batches included), stop
strings at every position end the reply with 200, and logprobs are the reference's."""
import concurrent.futures as cf

import pytest
import torch
from openai import OpenAI

from rwttt_ray.core.request import Request

pytestmark = pytest.mark.ray
MODEL = "bpe-tiny"
MSGS = [[{"role": "system", "content": "Antworte kurz."}, {"role": "user", "content": "Ein Bär läuft über die Straße?"}],
        [{"role": "user", "content": "日本語のテキスト 🎉"}], [{"role": "user", "content": "naïve café résumé"}],
        [{"role": "user", "content": [{"type": "text", "text": "tell me"}, {"type": "text", "text": "a story"}]}]]




def eos_ids(bpe_tok):
    return (bpe_tok.eos_token_id, bpe_tok.convert_tokens_to_ids("<|endoftext|>"))


def chat_ids(bpe_tok, msgs):
    flat = [{"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
             else "\n".join(p["text"] for p in m["content"])} for m in msgs]
    return list(bpe_tok.apply_chat_template(flat, add_generation_prompt=True, tokenize=True)["input_ids"])


def test_chat_uses_the_template_and_ends_at_eos(bpe_client, bpe_tok, bpe_reference):
    stopped = 0
    for msgs in MSGS:
        prompt = chat_ids(bpe_tok, msgs)
        want = bpe_reference.run(Request("r", tuple(prompt), 60, stop_ids=eos_ids(bpe_tok))).tokens
        out = bpe_client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=60, temperature=0,
                                             extra_body={"return_token_ids": True})
        c = out.choices[0]
        assert out.usage.prompt_tokens == len(prompt) and c.token_ids == want
        assert c.message.content == bpe_tok.decode(want, skip_special_tokens=True)
        assert c.finish_reason == ("stop" if want[-1] in eos_ids(bpe_tok) else "length")
        stopped += c.finish_reason == "stop"
        chunks = list(bpe_client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=60, temperature=0,
                                                     stream=True, extra_body={"return_token_ids": True}))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == c.message.content
        assert sum((ch.choices[0].token_ids or [] for ch in chunks), []) == want
        assert chunks[-1].choices[0].finish_reason == c.finish_reason
    assert stopped >= 2                          # the checkpoint's EOS really ends replies


def test_streamed_text_equals_decode_with_split_characters(bpe_client, bpe_tok):
    prompts = ["héllo wörld ✓", "日本語の", "Привет мир.", "你好，世界。", "crème brûlée in Zürich"]

    def one(p):
        c = OpenAI(base_url=bpe_client.base_url, api_key="sk-beta", max_retries=0)
        chunks = [ch.choices[0] for ch in c.completions.create(model="bpe", prompt=p, max_tokens=48, temperature=0,
                                                               stream=True, extra_body={"return_token_ids": True})
                  if ch.choices]
        ids, text, held = [], "", 0
        for ch in chunks:
            ids, text = ids + (ch.token_ids or []), text + ch.text
            held += text != bpe_tok.decode(ids, skip_special_tokens=True)   # a character waits for the next batch
        return text, ids, held

    with cf.ThreadPoolExecutor(len(prompts)) as pool:
        got = list(pool.map(one, prompts))
    held = 0
    for p, (text, ids, h) in zip(prompts, got):
        assert text == bpe_tok.decode(ids, skip_special_tokens=True)
        whole = bpe_client.completions.create(model="bpe", prompt=p, max_tokens=48, temperature=0).choices[0].text
        assert whole == text
        held += h
    assert held > 0                              # some batches really ended inside a character


def test_stop_strings_at_every_position_end_with_200(bpe_client, bpe_tok, bpe_reference):
    prompt = "tell me a story about Zürich"
    free = bpe_reference.run(Request("f", tuple(bpe_tok.encode(prompt)), 40)).tokens

    def text_of(ids: list[int]) -> str:
        return bpe_tok.decode(ids, skip_special_tokens=True)

    cases = []
    for k in range(1, 38):
        before, full = text_of(free[:k]), text_of(free[:k + 1])
        if full.startswith(before) and len(full) > len(before) and "\ufffd" not in full[len(before) - 1:]:
            cases.append(full[len(before):][-2:])
    assert len(cases) >= 5

    def one(stop, stream):
        kw = dict(model=MODEL, prompt=prompt, max_tokens=40, temperature=0, stop=[stop], extra_body={"ignore_eos": True})
        if not stream:
            c = bpe_client.completions.create(**kw).choices[0]
            return c.text, c.finish_reason
        chunks = [ch for ch in bpe_client.completions.create(stream=True, **kw) if ch.choices]
        return "".join(ch.choices[0].text for ch in chunks), chunks[-1].choices[0].finish_reason

    jobs = [(s, stream) for s in cases for stream in (False, True)]
    with cf.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda job: one(*job), jobs))
    for (stop, _), (text, reason) in zip(jobs, got):
        j = next(j for j in range(len(free)) if stop in text_of(free[:j + 1]))
        full = text_of(free[:j + 1])
        assert reason == "stop" and text == full[:full.find(stop)], stop


def test_logprobs_are_the_references_log_softmax(bpe_client, bpe_tok, bpe_reference):
    prompt = "Ein Bär läuft"
    ref = bpe_reference.run(Request("r", tuple(bpe_tok.encode(prompt)), 12, stop_ids=eos_ids(bpe_tok)))
    ls = [torch.log_softmax(x.float(), -1) for x in ref.logits]
    out = bpe_client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0, logprobs=3,
                                    extra_body={"return_token_ids": True}).choices[0]
    assert out.token_ids == ref.tokens
    assert all(abs(lp - float(x[t])) < 1e-4 for lp, x, t in zip(out.logprobs.token_logprobs, ls, ref.tokens))
    for top, x, t in zip(out.logprobs.top_logprobs, ls, ref.tokens):   # keyed by token text (so pieces of
        allowed = [float(v) for v in torch.topk(x, 3).values] + [float(x[t])]   # one character can collide)
        assert max(top.values()) == pytest.approx(float(x.max()), abs=1e-4)
        assert all(min(abs(v - a) for a in allowed) < 1e-4 for v in top.values())
    msgs = MSGS[1]
    cref = bpe_reference.run(Request("c", tuple(chat_ids(bpe_tok, msgs)), 10, stop_ids=eos_ids(bpe_tok)))
    chat = bpe_client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10, temperature=0, logprobs=True,
                                          top_logprobs=2).choices[0]
    assert len(chat.logprobs.content) == len(cref.tokens)
    for entry, logits, t in zip(chat.logprobs.content, cref.logits, cref.tokens):
        x = torch.log_softmax(logits.float(), -1)
        assert abs(entry.logprob - float(x[t])) < 1e-4 and len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob == pytest.approx(float(x.max()), abs=1e-4)
        assert bytes(entry.bytes) == b"".join(bytes([b]) for b in entry.bytes)

"""From a request body to Request fields (pure): the generation config's defaults apply only to
fields the request leaves out; EOS ids unless ignore_eos; lengths default as OpenAI and vLLM."""
import pytest

from rwttt_ray.api.params import BadRequest, chat_prompt, completion_prompts, max_new_tokens, sampling_fields
from rwttt_ray.api.protocol import ChatRequest, CompletionRequest
from rwttt_ray.api.served import ServedModel
from rwttt_ray.text.codec import TextCodec
from rwttt_ray.text.generation import GenerationDefaults
from rwttt_ray.ttt.tokenizer import ByteTokenizer

GEN = GenerationDefaults(eos_ids=(2, 7), sampling={"temperature": 0.6, "top_k": 20, "max_tokens": 50}, source="x")
MODEL = ServedModel(("m",), TextCodec(ByteTokenizer()), 100, GEN)
PLAIN = ServedModel(("m",), TextCodec(ByteTokenizer()), 100, GenerationDefaults())


def completion(**kw):
    return CompletionRequest(model="m", prompt=kw.pop("prompt", "hi"), **kw)


def test_generation_defaults_fill_only_what_is_left_out():
    f = sampling_fields(completion(), MODEL, None)
    assert (f["temperature"], f["top_k"], f["top_p"], f["stop_ids"]) == (0.6, 20, 1.0, (2, 7))
    f = sampling_fields(completion(temperature=0, top_k=-1, stop_token_ids=[9], ignore_eos=True), MODEL, 2)
    assert (f["temperature"], f["top_k"], f["stop_ids"], f["logprobs"]) == (0.0, 0, (9,), 2)
    assert sampling_fields(completion(), PLAIN, None)["temperature"] == 1.0       # OpenAI's default


def test_lengths():
    assert max_new_tokens(completion(), MODEL, 10, False) == 50                # the generation config's
    assert max_new_tokens(completion(), PLAIN, 10, False) == 16                # OpenAI's
    assert max_new_tokens(completion(max_tokens=None), PLAIN, 10, False) == 90  # null: the rest of the context
    chat = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    assert max_new_tokens(chat, PLAIN, 10, False) == 90 and max_new_tokens(chat, PLAIN, 10, True) is None
    with pytest.raises(BadRequest, match="context limit 100") as err:
        max_new_tokens(completion(max_tokens=91), PLAIN, 10, False)
    assert err.value.status == 413


def test_prompts_and_bad_ids():
    assert [p.ids for p in completion_prompts(completion(prompt=[[5, 6], [7]]), PLAIN)] == [(5, 6), (7,)]
    assert completion_prompts(completion(prompt=[5, 6]), PLAIN)[0].text == ByteTokenizer().decode([5, 6])
    with pytest.raises(BadRequest, match="outside the vocabulary"):
        completion_prompts(completion(prompt=[5, 9999]), PLAIN)
    with pytest.raises(BadRequest, match="logit_bias"):
        sampling_fields(completion(logit_bias={"9999": 1}), PLAIN, None)
    parts = ChatRequest(model="m", messages=[{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                          {"type": "text", "text": "b"}]}])
    assert chat_prompt(parts, PLAIN).text == "<|user|>\na\nb\n<|assistant|>\n"

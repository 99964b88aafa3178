"""The codec: chat prompts are the tokenizer's own template (or an override file), the byte
tokenizer's built-in one otherwise; token bytes of byte-level pieces; generation configs."""
import json

import pytest

from rwttt_ray.text.codec import BUILTIN_TEMPLATE, TextCodec, read_chat_template
from rwttt_ray.text.generation import load_generation_config

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "héllo ✓"}]


def test_chat_uses_the_tokenizers_template(bpe):
    hf = bpe.tokenizer
    want = hf.apply_chat_template(MSGS, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert bpe.encode_chat(MSGS) == list(want)
    assert bpe.render_chat(MSGS).endswith("<|im_start|>assistant\n")


def test_template_file_overrides_and_byte_tokenizer_has_the_builtin(bpe, byte_codec, tmp_path):
    f = tmp_path / "t.jinja"
    f.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}[assistant] {% endif %}")
    over = TextCodec(bpe.tokenizer, read_chat_template(str(f)))
    assert over.render_chat(MSGS) == "[system] be brief\n[user] héllo ✓\n[assistant] "
    assert byte_codec.chat_template == BUILTIN_TEMPLATE
    assert byte_codec.render_chat(MSGS) == "<|system|>\nbe brief\n<|user|>\nhéllo ✓\n<|assistant|>\n"
    with pytest.raises(ValueError, match="does not exist"):
        read_chat_template(str(tmp_path / "nope.jinja"))


def test_a_template_that_raises_is_a_clear_error(bpe):
    bad = TextCodec(bpe.tokenizer, "{{ raise_exception('no system messages') }}")
    with pytest.raises(ValueError, match="no system messages"):
        bad.render_chat(MSGS)


def test_token_bytes_of_byte_level_pieces(bpe, byte_codec):
    ids = bpe.encode("日")
    assert b"".join(bytes(bpe.token_bytes(i)) for i in ids) == "日".encode()
    assert byte_codec.token_bytes(byte_codec.encode("é")[0]) == ["é".encode()[0]]
    assert bpe.eos_ids == (bpe.tokenizer.eos_token_id,) and byte_codec.eos_ids == (2,)


def test_generation_config(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [5, 7], "temperature": 0.6, "top_k": 20, "max_new_tokens": 99, "typical_p": 0.5,
         "do_sample": True, "transformers_version": "5"}))
    g = load_generation_config("auto", str(tmp_path))
    assert g.eos_ids == (5, 7) and g.sampling == {"temperature": 0.6, "top_k": 20, "max_tokens": 99}
    assert g.ignored == ("do_sample", "typical_p") and "not applied: do_sample, typical_p" in g.describe()
    assert load_generation_config("vllm", str(tmp_path)).eos_ids == ()
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 3}))
    assert load_generation_config(str(tmp_path), None).eos_ids == (3,)
    assert load_generation_config("auto", str(tmp_path / "none")).source is None
    with pytest.raises(ValueError, match="no generation_config.json"):
        load_generation_config(str(tmp_path / "none"), None)

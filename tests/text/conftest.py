import pytest

from rwttt_ray.text.codec import TextCodec
from rwttt_ray.ttt.tokenizer import ByteTokenizer
from tests.checkpoints import bpe_tokenizer


@pytest.fixture(scope="session")
def bpe():
    return TextCodec(bpe_tokenizer())


@pytest.fixture(scope="session")
def metaspace():
    return TextCodec(bpe_tokenizer(metaspace=True))


@pytest.fixture(scope="session")
def byte_codec():
    return TextCodec(ByteTokenizer())

"""Byte-level tokenizer."""

import pytest

from pimgpt.core.errors import PimgptError
from pimgpt.sw.models import get_model
from pimgpt.sw.tokenizer import BYTE_VOCAB, TokenizerError, decode, encode, is_byte_level


def test_encode_is_utf8_bytes():
    assert encode("def f():") == [100, 101, 102, 32, 102, 40, 41, 58]
    assert encode("é€") == [0xC3, 0xA9, 0xE2, 0x82, 0xAC]
    assert encode("") == []


@pytest.mark.parametrize("text", ["", "import os\n", "x = 'naïve ∑ 😀'\n\ttab", "\x00\x7f"])
def test_round_trip(text):
    ids = encode(text)
    assert all(0 <= t < BYTE_VOCAB for t in ids)
    assert decode(ids) == text


def test_decode_replaces_invalid_utf8():
    # A lone continuation byte and a truncated 3-byte sequence each become U+FFFD.
    assert decode([0x41, 0x80, 0x42]) == "A\ufffdB"
    assert decode([0xE2, 0x82]) == "\ufffd"


def test_decode_rejects_non_byte_tokens():
    with pytest.raises(TokenizerError, match="token 256 is not a byte"):
        decode([65, 256])
    with pytest.raises(PimgptError, match="token -1"):
        decode([-1])


def test_encode_rejects_non_str():
    with pytest.raises(TokenizerError, match="takes a str, got bytes"):
        encode(b"abc")


def test_is_byte_level():
    assert is_byte_level(get_model("tiny"))
    assert is_byte_level(get_model("tiny-py"))
    assert not is_byte_level(get_model("gpt2-small"))
    assert is_byte_level(256) and not is_byte_level(50257)

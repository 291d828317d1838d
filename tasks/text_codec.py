"""Text <-> token ids for ``task=lm``: UTF-8 bytes by default, or a user's tokenizer file.

Bytes: ids 0..255 are the bytes, ``EOS`` = 256 separates documents (files), ``PAD`` = 257 fills
the tail of the last window. Every byte target stands for exactly one byte, so bits per byte is
the mean cross-entropy in bits.

A tokenizer file (a Hugging Face ``tokenizers`` JSON, if that package is installed) maps text to
its ids; EOS and PAD are added after its vocabulary. Each target token carries the number of UTF-8
bytes it covers, so bits per byte stays comparable with byte-level models.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from seqssm.errors import ConfigError

N_BYTES = 256


class ByteCodec:
    eos, pad, vocab_size = N_BYTES, N_BYTES + 1, N_BYTES + 2
    decodes_text = False  # the training stream passes raw bytes: every byte is a token

    def encode(self, text: str | bytes) -> tuple[list[int], list[int]]:
        """Token ids and the number of bytes each one stands for."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        return list(data), [1] * len(data)

    def decoder(self):
        """An incremental decoder: feed ids one at a time, get the text completed so far (a multi-byte
        UTF-8 character appears once its last byte arrives; special ids print nothing)."""
        dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda i: dec.decode(bytes([i])) if i < N_BYTES else ""


class TokenizerCodec:
    """A ``tokenizers`` JSON file (``Tokenizer.from_file``)."""

    decodes_text = True  # the training stream decodes UTF-8 first (invalid bytes counted, tasks/lm.py)

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ConfigError(
                f"task.tokenizer={path}: reading a tokenizer file needs the `tokenizers` package "
                "(pip install tokenizers), or set task.tokenizer=null for bytes"
            ) from None
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"task.tokenizer={path}: no such file (expected a tokenizers JSON file)")
        try:
            self.tok = Tokenizer.from_file(str(Path(path).expanduser()))
        except Exception as e:
            raise ConfigError(f"task.tokenizer={path}: not a tokenizers JSON file ({str(e).splitlines()[0]})") from None
        n = self.tok.get_vocab_size(with_added_tokens=True)
        self.eos, self.pad, self.vocab_size = n, n + 1, n + 2

    def encode(self, text: str | bytes) -> tuple[list[int], list[int]]:
        s = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        enc = self.tok.encode(s, add_special_tokens=False)
        return list(enc.ids), [len(s[a:b].encode("utf-8")) for a, b in enc.offsets]

    def decoder(self):
        ids: list[int] = []
        state = {"text": ""}

        def feed(i: int) -> str:
            if i >= self.eos:
                return ""
            ids.append(i)
            text = self.tok.decode(ids)
            new, state["text"] = text[len(state["text"]) :], text
            return new

        return feed


def make_codec(tokenizer: str | None) -> ByteCodec | TokenizerCodec:
    return TokenizerCodec(tokenizer) if tokenizer else ByteCodec()

"""Word classes (vtr_core.methods.word_classes) as masks over a text encoder's word pieces.

Alignment to word pieces is done on characters, not on words: both the tagger's words and the
pieces are reduced to a normalised character stream (NFKD, accents and case folded, spaces
dropped), the two streams are matched (exactly, or with difflib where the tokenizer changed or
dropped characters), and each piece takes the class of the tagger word its first matched character
came from. A piece-word (a WordPiece word with its `##` continuations, a CLIP BPE word up to its
`</w>`) takes one class for all its pieces. Whatever cannot be matched is "other"; specials and
padding are never verb or noun.
"""

from __future__ import annotations

import codecs
import difflib
import functools
import re
import unicodedata
from collections.abc import Sequence

import torch

from vtr_core.methods.word_classes import NOUN, OTHER, VERB, WordClassError, caption_classes

_WORDPIECE_SPECIAL = re.compile(r"\[[^\[\]\s]*\]")
_CLIP_SPECIAL = frozenset({"<start_of_text>", "<end_of_text>", "<|startoftext|>", "<|endoftext|>"})
_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "`": "'"})


def _normalise(s: str) -> str:
    """The character stream both sides are matched on: NFKD, no accents, casefolded, no spaces."""
    s = unicodedata.normalize("NFKD", s.translate(_QUOTES))
    s = "".join(ch for ch in s if not unicodedata.combining(ch) and not ch.isspace())
    return unicodedata.normalize("NFKD", s.casefold())


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2/CLIP `bytes_to_unicode`: the printable character each byte is written as."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _is_clip(pieces: Sequence[str]) -> bool:
    return any(p in _CLIP_SPECIAL or p.endswith("</w>") for p in pieces)


def _clip_pieces(pieces: Sequence[str]) -> tuple[list[str | None], list[int]]:
    """CLIP BPE pieces -> (text of each piece or None for specials/padding, word id of each piece).

    Pieces are byte-level: each character stands for one UTF-8 byte, so non-Latin text and emoji
    are decoded back through the byte map; a character split over pieces goes to the piece that
    completes it. A piece that is not valid byte-level UTF-8 ("naïve</w>") is taken as plain text. A piece ending in </w> ends a word. Everything after <end_of_text> is padding.
    """
    decoder = _byte_decoder()
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts: list[str | None] = []
    word_ids: list[int] = []
    word, ended = 0, False
    for piece in pieces:
        piece = "" if piece is None else str(piece)
        if ended or piece in _CLIP_SPECIAL or piece == "":
            ended = ended or piece in ("<end_of_text>", "<|endoftext|>")
            texts.append(None)
            word_ids.append(-1)
            continue
        closes = piece.endswith("</w>")
        body = piece[: -len("</w>")] if closes else piece
        text = body  # already-decoded text is used as it is
        if all(ch in decoder for ch in body):
            decoded = utf8.decode(bytes(decoder[ch] for ch in body))
            if "\ufffd" not in decoded or "\ufffd" in body:
                text = decoded
        texts.append(text)
        word_ids.append(word)
        if closes:
            word += 1
    return texts, word_ids


def _wordpiece_pieces(pieces: Sequence[str]) -> tuple[list[str | None], list[int]]:
    """BERT WordPiece pieces -> (text or None for [CLS]/[SEP]/[PAD]/[UNK]..., word id of each piece)."""
    texts: list[str | None] = []
    word_ids: list[int] = []
    word, previous_real = -1, False
    for piece in pieces:
        piece = "" if piece is None else str(piece)
        if piece == "" or _WORDPIECE_SPECIAL.fullmatch(piece):
            texts.append(None)
            word_ids.append(-1)
            previous_real = False
            continue
        continues = piece.startswith("##") and len(piece) > 2 and previous_real
        if not continues:
            word += 1
        texts.append(piece[2:] if piece.startswith("##") and len(piece) > 2 else piece)
        word_ids.append(word)
        previous_real = True
    return texts, word_ids


def _piece_classes(text: str, pieces: Sequence[str]) -> list[str]:
    """verb / noun / other for each piece of one caption."""
    texts, word_ids = (_clip_pieces if _is_clip(pieces) else _wordpiece_pieces)(pieces)
    words = caption_classes(text)

    word_chars, word_owner = [], []
    for k, (w, _, _, _) in enumerate(words):
        norm = _normalise(w)
        word_chars.append(norm)
        word_owner.extend([k] * len(norm))
    piece_chars, piece_owner = [], []
    for k, t in enumerate(texts):
        norm = _normalise(t) if t else ""
        piece_chars.append(norm)
        piece_owner.extend([k] * len(norm))
    a, b = "".join(word_chars), "".join(piece_chars)

    # first matched tagger word for each piece
    first_word: dict[int, int] = {}
    if a == b:
        for wa, pb in zip(word_owner, piece_owner):
            first_word.setdefault(pb, wa)
    elif a and b:
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for block in matcher.get_matching_blocks():
            for off in range(block.size):
                first_word.setdefault(piece_owner[block.b + off], word_owner[block.a + off])

    # one class per piece-word: that of the tagger word its first matched character belongs to
    word_class: dict[int, str] = {}
    for k in range(len(texts)):
        if word_ids[k] >= 0 and k in first_word and word_ids[k] not in word_class:
            word_class[word_ids[k]] = words[first_word[k]][3]
    return [word_class.get(wid, OTHER) if wid >= 0 else OTHER for wid in word_ids]


def role_masks(texts: list[str], tokens: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """bool masks [B, L] (verb positions, noun positions) over the encoder's word pieces.

    `tokens[b]` are caption b's pieces as the text encoder produced them, in BERT WordPiece form
    (`[CLS] a skate ##board ##er ...`) or CLIP BPE form (`<start_of_text> a</w> skate boarder</w>
    ...`), detected per caption. L is the longest list; shorter lists are padded with False. All
    pieces of a verb (noun) word are True in the verb (noun) mask; specials and padding never are.
    """
    if len(texts) != len(tokens):
        raise WordClassError(f"role_masks got {len(texts)} captions but {len(tokens)} token lists")
    length = max((len(t) for t in tokens), default=0)
    verbs = torch.zeros(len(texts), length, dtype=torch.bool)
    nouns = torch.zeros(len(texts), length, dtype=torch.bool)
    for b, (text, pieces) in enumerate(zip(texts, tokens)):
        for k, cls in enumerate(_piece_classes(str(text), list(pieces))):
            if cls == VERB:
                verbs[b, k] = True
            elif cls == NOUN:
                nouns[b, k] = True
    return verbs, nouns

"""Which words of a caption are verbs and which are nouns, as masks over the text encoder's pieces.

CAMoE pools a caption's word-token features over its VERBS (the action stream) and its NOUNS (the
entity stream), so it needs, per caption, which word-piece positions of the text encoder belong to
each. The paper used spaCy tags; spaCy's English models are not on PyPI under Explosion's name
(`spacy download` fetches them from elsewhere, which fails offline) and spaCy itself is ~200 MB
installed. This module uses the part-of-speech tagger that ships inside TextBlob (from Pattern):
a Penn Treebank lexicon of ~94,000 words from Brill's tagger (Brown + WSJ) with suffix rules for
unknown words; ~2.5 MB, pure Python, no download, loads in ~0.3 s.

On top of the Penn tags a few documented context rules (see `_classify`) make the classes fit the
task: forms of "be", modals and auxiliary "have"/"do" are not verbs (only the main verb is an
action); indefinite pronouns ("someone") are not nouns; and the tagger's common caption errors are
fixed, e.g. "a man talks about ..." (talks tagged as a plural noun), "a woman cooking food"
(cooking tagged as a noun), "a dog can jump". Measured against spaCy en_core_web_sm on 3,000
MSR-VTT captions, the verb/noun/other class agrees on 96.5% of words (95.0% with the bare tags);
most of the rest are words where spaCy is wrong or the call is arguable ("an animated horse").
Known misses: a base-form verb after a plural subject ("people dance in a hall") stays a noun,
and a plural noun compound after a singular one ("a car parts store") reads as a verb.

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
import importlib.util
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vtr_core.errors import VtrError

VERB, NOUN, OTHER = "verb", "noun", "other"

# Forms of "be": copula or auxiliary, never the action ("a man is running" -> running).
_BE = frozenset({"be", "is", "are", "was", "were", "am", "been", "being", "'s", "'re", "'m", "’s", "’re", "’m"})
_HAVE = frozenset({"have", "has", "had", "having", "'ve", "'d", "’ve", "’d"})
_DO = frozenset({"do", "does", "did"})
# Words the Brill lexicon tags NN that are pronouns (spaCy: PRON), so not entities.
_PRONOUNS = frozenset(
    {
        "someone", "somebody", "something", "anyone", "anybody", "anything", "everyone", "everybody",
        "everything", "nobody", "nothing", "noone", "none", "oneself", "whatever", "whoever",
    }
)
# Words between an auxiliary and its main verb ("has not yet been", "did n't").
_ADVERB_TAGS = frozenset({"RB", "RBR", "RBS"})
# Tokens that start a new clause, so a new subject-verb pair may follow.
_CLAUSE_BREAK_WORDS = frozenset(
    {"and", "or", "but", "while", "as", "when", "where", "whereas", "before", "after", "because",
     "until", "since", "if", "though", "although", "then", "who", "which", "that", "so"}
)
# After "NOUN talks" these tags mean "talks" heads a verb phrase, not a noun compound.
_AFTER_VERB_TAGS = frozenset({"DT", "PDT", "PRP", "PRP$", "IN", "TO", "RP", "RB", "RBR", "CD", "WRB", "WP", "EX"})
_DETERMINERS = frozenset({"a", "an", "the", "his", "her", "its", "their", "my", "your", "our", "this", "these", "those"})
_SUBJECT_PRONOUNS = frozenset({"he", "she", "it", "they", "we", "i", "you", "someone", "somebody", "everyone", "everybody", "nobody"})

_TOKEN_RE = re.compile(
    r"""
      n['’]t(?![^\W_])                        # the n't of don't / isn't (Penn Treebank split)
    | ['’](?:s|re|ve|ll|d|m)(?![^\W_])        # clitics: man's, they're, we've
    | [^\W_]+?(?=n['’]t(?![^\W_]))            # "do" of don't, "ca" of can't
    | [^\W_]+(?:(?:[-.]|['’](?!(?:s|re|ve|ll|d|m|t)(?![^\W_])))[^\W_]+)*   # words, t-shirt, 3.5, o'clock
    | \S                                      # any other single character (punctuation, emoji)
    """,
    re.VERBOSE,
)

_TAG_LOCK = threading.Lock()
_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "`": "'"})
_WORDPIECE_SPECIAL = re.compile(r"\[[^\[\]\s]*\]")
_CLIP_SPECIAL = frozenset({"<start_of_text>", "<end_of_text>", "<|startoftext|>", "<|endoftext|>"})


class WordClassError(VtrError):
    """The part-of-speech tagger is missing, or the inputs do not belong together."""


class _Tagger:
    """Penn Treebank tags for tokenised words: TextBlob's `find_tags` bound to its English lexicon."""

    def __init__(self, find_tags: Callable[..., list], lexicon: dict) -> None:
        self._find_tags = find_tags
        self.lexicon = lexicon

    def __call__(self, words: list[str]) -> list[tuple[str, str]]:
        tagged = self._find_tags(words, lexicon=self.lexicon, default=("NN", "NNP", "CD"), language="en")
        return [(str(w), str(t)) for w, t in tagged]


@functools.lru_cache(maxsize=1)
def _load_tagger() -> _Tagger:
    """TextBlob's tagger, loaded once per process.

    The tagger is `textblob/_text.py` (standard library only) with the lexicon in `textblob/en/`.
    Importing the `textblob` package itself would import NLTK and, through it, SciPy (2-5 s) for
    nothing used here, so `_text.py` is loaded on its own from the installed package. The call is
    the one TextBlob's own `PatternTagger` makes (lexicon + suffix rules; Brill's contextual rules
    are left off as TextBlob does, which also agrees better with spaCy on captions). The lexicon is
    a lazy dict that reads its file on first use, which is not safe to race, so it is read here.
    """
    spec = importlib.util.find_spec("textblob")
    if spec is None or not spec.submodule_search_locations:
        raise WordClassError("word classes need the textblob package (pip install -r requirements.txt)")
    package = Path(next(iter(spec.submodule_search_locations)))
    try:
        module_spec = importlib.util.spec_from_file_location("_vtr_textblob_text", package / "_text.py")
        text = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(text)
        lexicon = text.Lexicon(
            path=str(package / "en" / "en-lexicon.txt"),
            morphology=str(package / "en" / "en-morphology.txt"),
            context=str(package / "en" / "en-context.txt"),
            entities=str(package / "en" / "en-entities.txt"),
            language="en",
        )
        with _TAG_LOCK:
            lexicon.load()
            size = dict.__len__(lexicon)
    except (OSError, AttributeError, TypeError) as exc:
        raise WordClassError(f"cannot load TextBlob's part-of-speech tagger from {package} ({exc})") from None
    if size < 10000:
        raise WordClassError(f"TextBlob's lexicon at {package} holds only {size} words")

    return _Tagger(text.find_tags, lexicon)


def _tokenize(text: str) -> list[tuple[str, int, int]]:
    """Penn-Treebank-like words with their character spans: "don't" -> do + n't, "man's" -> man + 's."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def _tag(words: Sequence[str]) -> list[str]:
    """Penn Treebank tags for already tokenised words (thread-safe)."""
    if not words:
        return []
    tag = _load_tagger()
    with _TAG_LOCK:
        tagged = tag(list(words))
    return [str(t) for _, t in tagged]


def _lexicon_tag(word: str) -> str | None:
    """The lexicon's (most frequent) tag for a word, or None if unknown."""
    lexicon = _load_tagger().lexicon
    return dict.get(lexicon, word) or dict.get(lexicon, word.lower())


def _has_latin(word: str) -> bool:
    """Whether the word has a Latin letter or a digit; the tagger is English, other scripts are other."""
    return any(ch.isascii() and ch.isalnum() for ch in unicodedata.normalize("NFKD", word))


def _is_noun_tag(tag: str) -> bool:
    return tag.startswith("NN")


def _next_content(words: Sequence[str], tags: Sequence[str], i: int) -> int | None:
    """Index of the first word after i that is not an adverb / negation, or None."""
    for j in range(i + 1, len(words)):
        if tags[j] not in _ADVERB_TAGS and words[j].lower() not in ("not", "n't", "n’t"):
            return j
    return None


def _object_of(words: Sequence[str], tags: Sequence[str], i: int) -> bool:
    """Whether the noun at i cannot head a subject: its noun phrase follows "of" ("clips of
    football games in"), or follows "and"/"or" with no determiner ("salt and cilantro sprigs")."""
    j = i
    while j >= 0 and (_is_noun_tag(tags[j]) or tags[j] in ("JJ", "DT", "PRP$", "CD", "POS")):
        j -= 1
    if j < 0:
        return False
    has_determiner = any(tags[k] in ("DT", "PRP$", "CD") for k in range(j + 1, i + 1))
    return words[j] == "of" or (tags[j] == "CC" and not has_determiner)


def _singular_subject(words: Sequence[str], tags: Sequence[str], i: int) -> bool:
    """Whether the noun at i is singular and heads a phrase opened by a determiner ("a chef"),
    so that an -s word after it agrees as a verb ("a chef cooks pasta")."""
    if tags[i] not in ("NN", "NNP"):
        return False
    j = i
    while j >= 0 and (_is_noun_tag(tags[j]) or tags[j] in ("JJ", "POS")):
        j -= 1
    return j >= 0 and words[j] in _DETERMINERS


def _after_modal(words: Sequence[str], tags: Sequence[str], i: int) -> bool:
    """Whether a modal precedes word i, adverbs and "not" skipped ("can jump", "will not fall")."""
    j = i - 1
    while j >= 0 and (tags[j] in _ADVERB_TAGS or words[j] in ("not", "n't", "n’t")):
        j -= 1
    return j >= 0 and tags[j] == "MD"


def _classify(words: Sequence[str], tags: Sequence[str]) -> list[str]:
    """verb / noun / other for each word from its Penn tag and its neighbours.

    Rules:
    - words with no Latin letter or digit (punctuation, emoji, other scripts) are other;
    - nouns: NN, NNS, NNP, NNPS (proper nouns are entities too), except indefinite pronouns;
      an unknown hyphenated word ("t-shirt", tagged JJ) that ends its phrase and whose last part
      is a noun is a noun;
    - forms of "be" and modals (MD) are other, as copula or auxiliary;
    - "have" / "do" are other when an auxiliary (a participle / bare verb follows, adverbs and
      "not" skipped), else the main verb ("a man has a dog", "she does a flip");
    - a plural-looking noun right after the subject ("a man talks about", "she rides her bike")
      is a verb when the clause has no verb yet and a determiner, pronoun, preposition, particle,
      adverb, number or the end follows, or a noun or adjective follows a singular subject opened by
      a determiner ("a chef cooks pasta");
    - an -ing word tagged NN is a verb after a form of "be" ("is cooking"), after "VBG and"
      ("singing and dancing") or right after the subject noun phrase of a verbless clause
      ("a woman cooking food"); see `_object_of` for noun phrases that are not subjects;
    - a noun right after "to" and before a determiner or pronoun, or after "how to", is a verb
      ("to cook something", "how to cook rice");
    - after "do not" / "doesn't" the next word is the main verb, whatever its tag ("does not like");
    - a noun or adjective right after a modal is a verb ("a dog can jump");
    - an -ing word between a determiner and a noun is a modifier, other ("a swimming pool");
    - a base-form verb right after a determiner or adjective is a noun ("a talk show");
    - every other VB* tag is a verb; everything else is other.
    """
    tags = list(tags)
    lowered = [w.lower() for w in words]
    classes: list[str] = []
    clause_has_verb = False
    for i, (word, tag) in enumerate(zip(lowered, tags)):
        prev_tag = tags[i - 1] if i else ""
        prev_word = lowered[i - 1] if i else ""
        nxt = tags[i + 1] if i + 1 < len(tags) else ""
        if word in _CLAUSE_BREAK_WORDS or tag in {",", ":", ".", "WDT", "WP"}:
            clause_has_verb = False
        after_subject = (_is_noun_tag(prev_tag) and prev_word not in _PRONOUNS and not _object_of(lowered, tags, i - 1)) or (
            prev_word in _SUBJECT_PRONOUNS
        )
        if word in _PRONOUNS or not _has_latin(word):
            cls = OTHER
        elif "-" in word and tag == "JJ" and nxt not in ("NN", "NNS", "NNP", "NNPS", "JJ") and (
            (_lexicon_tag(word.rsplit("-", 1)[1]) or "").startswith("NN")
        ):
            cls, tags[i] = NOUN, "NN"  # an unknown hyphenated word heading its phrase: "a red t-shirt"
        elif word.isdigit():
            cls = OTHER  # a number, whatever the lexicon says
        elif tag == "NNS" and word.endswith("s") and not clause_has_verb and after_subject and (
            not nxt or nxt in _AFTER_VERB_TAGS or (nxt in ("NN", "NNS", "JJ") and _singular_subject(lowered, tags, i - 1))
        ):
            cls, tags[i] = VERB, "VBZ"
        elif tag == "NN" and word.endswith("ing") and (
            prev_word in _BE
            or (prev_tag == "CC" and i >= 2 and tags[i - 2] == "VBG")
            or (not clause_has_verb and after_subject and (not nxt or nxt in _AFTER_VERB_TAGS | {"JJ", "NN", "NNS"}))
        ):
            cls, tags[i] = VERB, "VBG"
        elif tag == "NN" and prev_tag == "TO" and (
            (i >= 2 and lowered[i - 2] == "how")
            or (i + 1 < len(words) and (nxt in ("DT", "PRP$", "PRP") or lowered[i + 1] in _PRONOUNS))
        ):
            cls, tags[i] = VERB, "VB"  # "how to cook something", "to use a stroller"
        elif tag in ("NN", "VBP", "JJ") and _after_modal(lowered, tags, i):
            cls, tags[i] = VERB, "VB"  # "a dog can jump", "he will not fall"
        elif tag == "VBG" and prev_word in _DETERMINERS and nxt in ("NN", "NNS"):
            cls = OTHER  # a modifier: "a swimming pool", "a wrestling competition"
        elif tag in ("VB", "VBP") and (prev_word in _DETERMINERS or prev_tag == "JJ") and word not in _BE | _HAVE | _DO:
            cls, tags[i] = NOUN, "NN"  # no verb follows a determiner or an adjective: "a talk show"
        elif _is_noun_tag(tag):
            cls = NOUN
        elif tag == "MD" or word in _BE:
            cls = OTHER
        elif tag.startswith("VB") and word in _HAVE | _DO:
            j = _next_content(lowered, tags, i)
            wanted = ("VBN", "VBD") if word in _HAVE else ("VB", "VBP")
            negated = word in _DO and i + 1 < len(words) and lowered[i + 1] in ("not", "n't", "n’t")
            auxiliary = negated or (j is not None and (tags[j] in wanted or lowered[j] in _BE))
            cls = OTHER if auxiliary else VERB
            if negated and j is not None and not tags[j].startswith(("VB", "MD")):
                tags[j] = "VB"  # "does not like": the word after the negation is the main verb
        elif tag.startswith("VB"):
            cls = VERB
        else:
            cls = OTHER
        if tag.startswith("VB") or tag == "MD" or cls == VERB:
            clause_has_verb = True
        classes.append(cls)
    return classes


@functools.lru_cache(maxsize=65536)
def _caption_classes(text: str) -> tuple[tuple[str, int, int, str], ...]:
    """(word, start, end, cls) for one caption; cached because training repeats captions."""
    tokens = _tokenize(text)
    words = [w for w, _, _ in tokens]
    # the lexicon is case-sensitive and mostly lower-case: an all-caps caption is tagged lower-cased
    tagged = [w.lower() for w in words] if text.isupper() else words
    classes = _classify(tagged, _tag(tagged))
    return tuple((w, s, e, c) for (w, s, e), c in zip(tokens, classes))


def word_classes(texts: list[str]) -> list[list[tuple[str, str]]]:
    """Per caption: (word, cls) with cls in {"verb", "noun", "other"}.

    Words are Penn-Treebank-style tokens of the caption ("don't" -> "do", "n't"); punctuation is
    a word of class "other". This is the readable view of what `role_masks` marks.
    """
    return [[(w, c) for w, _, _, c in _caption_classes(str(text))] for text in texts]


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
    words = _caption_classes(text)

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

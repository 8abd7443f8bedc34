"""Which words of a caption are verbs and which are nouns, as masks over the text encoder's pieces.

CAMoE pools a caption's word-token features over its VERBS (the action stream) and its NOUNS (the
entity stream), so it needs, per caption, which word-piece positions of the text encoder belong to
each. The paper used spaCy tags; spaCy's English models are not on PyPI under Explosion's name
(`spacy download` fetches them from elsewhere, which fails offline) and spaCy itself is ~200 MB
installed. This module uses the part-of-speech tagger that ships inside TextBlob (from Pattern):
a Penn Treebank lexicon of ~94,000 words from Brill's tagger (Brown + WSJ) with suffix rules for
unknown words; ~2.5 MB, pure Python, no download, loads in ~0.3 s.

On top of the Penn tags a few documented context rules (see `_classify` and its `_RULES`) make the classes fit the
task: forms of "be", modals and auxiliary "have"/"do" are not verbs (only the main verb is an
action); indefinite pronouns ("someone") are not nouns; and the tagger's common caption errors are
fixed, e.g. "a man talks about ..." (talks tagged as a plural noun), "a woman cooking food"
(cooking tagged as a noun), "a dog can jump". Measured against spaCy en_core_web_sm on 3,000
MSR-VTT captions, the verb/noun/other class agrees on 96.5% of words (95.0% with the bare tags);
most of the rest are words where spaCy is wrong or the call is arguable ("an animated horse").
Known misses: a base-form verb after a plural subject ("people dance in a hall") stays a noun,
and a plural noun compound after a singular one ("a car parts store") reads as a verb.

Alignment of these classes to a text encoder's word pieces is in vtr_core.methods.word_pieces.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class _Word:
    """Word i of a caption and what the rules look at around it. `words` (lower-cased) and `tags`
    are the caption's: a rule that reclassifies a word re-tags it there, and later words see that."""

    words: Sequence[str]
    tags: list[str]
    i: int
    clause_has_verb: bool  # a verb (or modal) was seen since the clause began
    word: str = field(init=False)
    tag: str = field(init=False)  # as it was before any rule ran on this word
    prev_word: str = field(init=False)
    prev_tag: str = field(init=False)
    nxt: str = field(init=False)  # the next word's tag
    after_subject: bool = field(init=False)  # right after a subject noun (see `_object_of`) or pronoun

    def __post_init__(self) -> None:
        words, tags, i = self.words, self.tags, self.i
        self.word, self.tag = words[i], tags[i]
        self.prev_word, self.prev_tag = (words[i - 1], tags[i - 1]) if i else ("", "")
        self.nxt = tags[i + 1] if i + 1 < len(tags) else ""
        self.after_subject = (
            _is_noun_tag(self.prev_tag) and self.prev_word not in _PRONOUNS and not _object_of(words, tags, i - 1)
        ) or self.prev_word in _SUBJECT_PRONOUNS

    def retag(self, cls: str, tag: str) -> str:
        """Give the word the tag its new class implies; return the class."""
        self.tags[self.i] = tag
        return cls


def _surface_rule(w: _Word) -> str | None:
    """Words with no Latin letter or digit (punctuation, emoji, other scripts), indefinite pronouns
    and numbers are other; an unknown hyphenated word ("t-shirt", tagged JJ) that ends its phrase
    and whose last part is a noun is a noun."""
    if w.word in _PRONOUNS or not _has_latin(w.word):
        return OTHER
    if "-" in w.word and w.tag == "JJ" and w.nxt not in ("NN", "NNS", "NNP", "NNPS", "JJ") and (
        (_lexicon_tag(w.word.rsplit("-", 1)[1]) or "").startswith("NN")
    ):
        return w.retag(NOUN, "NN")  # an unknown hyphenated word heading its phrase: "a red t-shirt"
    return OTHER if w.word.isdigit() else None  # a number is other, whatever the lexicon says


def _missed_verb_rule(w: _Word) -> str | None:
    """Verbs the tagger took for nouns or adjectives (see `_object_of` for nouns that are no subject):
    - a plural-looking noun right after the subject ("a man talks about", "she rides her bike") in
      a verbless clause, before a determiner, pronoun, preposition, particle, adverb, number or the
      end, or before a noun or adjective after a singular subject with a determiner ("a chef cooks pasta");
    - an -ing word tagged NN after a form of "be" ("is cooking"), after "VBG and" ("singing and
      dancing") or right after the subject of a verbless clause ("a woman cooking food");
    - a noun after "to" and before a determiner or pronoun, or after "how to" ("how to cook rice");
    - a noun or adjective right after a modal ("a dog can jump", "he will not fall").
    """
    words, tags, i, word, tag, nxt = w.words, w.tags, w.i, w.word, w.tag, w.nxt
    if tag == "NNS" and word.endswith("s") and not w.clause_has_verb and w.after_subject and (
        not nxt or nxt in _AFTER_VERB_TAGS or (nxt in ("NN", "NNS", "JJ") and _singular_subject(words, tags, i - 1))
    ):
        return w.retag(VERB, "VBZ")
    if tag == "NN" and word.endswith("ing") and (
        w.prev_word in _BE
        or (w.prev_tag == "CC" and i >= 2 and tags[i - 2] == "VBG")
        or (not w.clause_has_verb and w.after_subject and (not nxt or nxt in _AFTER_VERB_TAGS | {"JJ", "NN", "NNS"}))
    ):
        return w.retag(VERB, "VBG")
    if tag == "NN" and w.prev_tag == "TO" and (
        (i >= 2 and words[i - 2] == "how")
        or (i + 1 < len(words) and (nxt in ("DT", "PRP$", "PRP") or words[i + 1] in _PRONOUNS))
    ):
        return w.retag(VERB, "VB")  # "how to cook something", "to use a stroller"
    after_modal = tag in ("NN", "VBP", "JJ") and _after_modal(words, tags, i)
    return w.retag(VERB, "VB") if after_modal else None  # "a dog can jump", "he will not fall"


def _noun_phrase_rule(w: _Word) -> str | None:
    """An -ing word between a determiner and a noun is a modifier, other ("a swimming pool"); a
    base-form verb right after a determiner or adjective is a noun ("a talk show")."""
    if w.tag == "VBG" and w.prev_word in _DETERMINERS and w.nxt in ("NN", "NNS"):
        return OTHER  # a modifier: "a swimming pool", "a wrestling competition"
    if w.tag in ("VB", "VBP") and (w.prev_word in _DETERMINERS or w.prev_tag == "JJ") and w.word not in _BE | _HAVE | _DO:
        return w.retag(NOUN, "NN")  # no verb follows a determiner or an adjective: "a talk show"
    return None


def _have_do_rule(w: _Word) -> str:
    """"have" / "do" are other when an auxiliary (a participle / bare verb follows, adverbs and
    "not" skipped), else the main verb ("a man has a dog", "she does a flip"); after "do not" /
    "doesn't" the next word is the main verb, whatever its tag ("does not like")."""
    words, tags, i, word = w.words, w.tags, w.i, w.word
    j = _next_content(words, tags, i)
    wanted = ("VBN", "VBD") if word in _HAVE else ("VB", "VBP")
    negated = word in _DO and i + 1 < len(words) and words[i + 1] in ("not", "n't", "n’t")
    auxiliary = negated or (j is not None and (tags[j] in wanted or words[j] in _BE))
    if negated and j is not None and not tags[j].startswith(("VB", "MD")):
        tags[j] = "VB"  # "does not like": the word after the negation is the main verb
    return OTHER if auxiliary else VERB


def _tag_rule(w: _Word) -> str:
    """The Penn tag decides: NN, NNS, NNP, NNPS are nouns (proper nouns are entities too); forms of
    "be" and modals (MD) are other, as copula or auxiliary; "have" / "do" see `_have_do_rule`;
    every other VB* tag is a verb; everything else is other."""
    if _is_noun_tag(w.tag):
        return NOUN
    if w.tag == "MD" or w.word in _BE:
        return OTHER
    if w.tag.startswith("VB") and w.word in _HAVE | _DO:
        return _have_do_rule(w)
    return VERB if w.tag.startswith("VB") else OTHER


# in this order, the first rule with an answer decides (`_tag_rule` always has one)
_RULES: tuple[Callable[[_Word], str | None], ...] = (_surface_rule, _missed_verb_rule, _noun_phrase_rule, _tag_rule)


def _classify(words: Sequence[str], tags: Sequence[str]) -> list[str]:
    """verb / noun / other for each word from its Penn tag and its neighbours (see `_RULES`)."""
    tags = list(tags)
    lowered = [w.lower() for w in words]
    classes: list[str] = []
    clause_has_verb = False
    for i in range(min(len(lowered), len(tags))):
        if lowered[i] in _CLAUSE_BREAK_WORDS or tags[i] in {",", ":", ".", "WDT", "WP"}:
            clause_has_verb = False
        word = _Word(lowered, tags, i, clause_has_verb)
        cls = next(found for found in (rule(word) for rule in _RULES) if found is not None)
        if word.tag.startswith("VB") or word.tag == "MD" or cls == VERB:
            clause_has_verb = True
        classes.append(cls)
    return classes


@functools.lru_cache(maxsize=65536)
def caption_classes(text: str) -> tuple[tuple[str, int, int, str], ...]:
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
    return [[(w, c) for w, _, _, c in caption_classes(str(text))] for text in texts]

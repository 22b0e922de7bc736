"""Word n-gram LM (Kneser-Ney, ARPA) and the CTC beam search it is fused into."""

import gzip
import math

import numpy as np
import pytest

from speechbraid.cli.main import main
from speechbraid.errors import InputError
from speechbraid.inference.ctc_beam import CTCBeamDecoder, LMFusion
from speechbraid.models.ngram_lm import EOS, UNK, NgramLM, build_kneser_ney

SENTENCES = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the fish", "the cat sat"]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_history_gets_a_distribution(order):
    lm = build_kneser_ney(SENTENCES, order=order)
    outcomes = [*sorted(lm.vocabulary), EOS, UNK]
    for history in [(), ("<s>",), ("the",), ("<s>", "the"), ("the", "cat"), ("cat", "sat", "on"), ("zebra",),
                    ("the", "zebra")]:
        total = sum(10 ** lm.log10_prob(history, w) for w in outcomes)
        assert total == pytest.approx(1.0, abs=1e-6), history


def test_seen_continuations_beat_unseen_and_unknown_words():
    lm = build_kneser_ney(SENTENCES, order=3)
    assert lm.log10_prob(("the", "cat"), "sat") > lm.log10_prob(("the", "cat"), "log")
    assert lm.log10_prob(("the", "cat"), "log") > lm.log10_prob(("the", "cat"), "zebra")
    assert lm.log10_prob(("the", "cat"), "zebra") == lm.log10_prob(("the", "cat"), UNK)


@pytest.mark.parametrize("name", ["lm.arpa", "lm.arpa.gz"])
def test_arpa_round_trip(tmp_path, name):
    lm = build_kneser_ney(SENTENCES, order=3)
    back = NgramLM.read_arpa(lm.write_arpa(tmp_path / name))
    assert back.order == 3 and back.vocabulary == lm.vocabulary
    for history, word in [(("the", "cat"), "sat"), (("a",), "dog"), ((), "fish"), (("x", "y"), "mat")]:
        assert back.log10_prob(history, word) == pytest.approx(lm.log10_prob(history, word), abs=1e-5)


def test_bad_arpa_files_name_the_file_and_line(tmp_path):
    lm = build_kneser_ney(SENTENCES, order=2)
    good = lm.write_arpa(tmp_path / "good.arpa").read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.arpa"
    line = good.index("\\2-grams:") + 2
    broken.write_text("\n".join(good[: line - 1] + ["-0.5 the"] + good[line:]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=f"broken.arpa:{line}: not an ARPA 2-gram line"):
        NgramLM.read_arpa(broken)
    fake = tmp_path / "fake.arpa.gz"
    fake.write_text("not gzip", encoding="utf-8")
    with pytest.raises(InputError, match="fake.arpa.gz: cannot read the n-gram LM"):
        NgramLM.read_arpa(fake)
    empty = tmp_path / "empty.arpa.gz"
    with gzip.open(empty, "wt") as handle:
        handle.write("\\data\\\n\\end\\\n")
    with pytest.raises(InputError, match="not an ARPA n-gram LM"):
        NgramLM.read_arpa(empty)
    with pytest.raises(InputError, match="not found"):
        NgramLM.read_arpa(tmp_path / "missing.arpa")


def spelled(text: str, labels: list[str], doubts: dict[int, tuple[str, float]]) -> np.ndarray:
    """CTC log-probabilities that spell ``text`` one character per frame with a blank between; ``doubts[i]``
    gives character ``i`` a rival with some of its probability."""
    frames = []
    for i, char in enumerate(text):
        row = np.full(len(labels), 1e-4)
        rival, share = doubts.get(i, (char, 0.0))
        row[labels.index(char)] += 1.0 - share
        row[labels.index(rival)] += share
        frames += [row / row.sum()]
        blank = np.full(len(labels), 1e-4)
        blank[0] = 1.0
        frames.append(blank / blank.sum())
    return np.log(np.stack(frames)).astype(np.float32)


def test_the_lm_turns_a_doubtful_spelling_into_a_known_word():
    labels = ["", "'", *"abcdefghijklmnopqrstuvwxyz", " "]
    text = "the cat sad"  # the acoustics prefer "sad" (0.55) over "sat"
    log_probs = spelled(text, labels, {10: ("t", 0.45)})
    assert CTCBeamDecoder(labels, None).decode(log_probs) == "the cat sad"
    lm = build_kneser_ney(SENTENCES, order=3)
    assert CTCBeamDecoder(labels, lm).decode(log_probs) == "the cat sat"
    # with no weight on the LM and no word bonus, the acoustics decide again
    assert CTCBeamDecoder(labels, lm, LMFusion(alpha=0.0, beta=0.0, unknown=0.0)).decode(log_probs) == "the cat sad"


def test_spelled_words_are_matched_case_blind_and_written_as_the_lm_writes_them():
    labels = ["", "'", *"abcdefghijklmnopqrstuvwxyz", " "]
    lm = build_kneser_ney(["we met on May fifth", "pay on May sixth", "you may go home", "we may go"], order=3)
    decoder = CTCBeamDecoder(labels, lm)
    assert decoder.decode(spelled("we met on may fifth", labels, {})) == "we met on May fifth"
    assert decoder.decode(spelled("you may go home", labels, {})) == "you may go home"
    assert decoder.decode(spelled("we met zorbo", labels, {})) == "we met zorbo"  # unknown words stay spelled


def test_ngram_lm_command_builds_an_arpa_and_names_bad_input(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("The cat sat.\n\nThe dog, sat!\n", encoding="utf-8")
    out = tmp_path / "lm.arpa.gz"
    assert main(["ngram-lm", "--text", str(text), "--out", str(out)]) == 0
    lm = NgramLM.read_arpa(out)
    assert lm.vocabulary == {"The", "cat", "sat", "dog"}  # normalised like transcripts but cased: names as written
    assert math.isclose(sum(10 ** lm.log10_prob(("The",), w) for w in [*lm.vocabulary, EOS, UNK]), 1.0,
                        abs_tol=1e-6)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    assert main(["ngram-lm", "--text", str(empty), "--out", str(tmp_path / "x.arpa")]) == 2
    assert "empty.txt: text file is empty" in capsys.readouterr().err
    assert main(["ngram-lm", "--text", str(text), "--out", str(tmp_path / "x.arpa"), "--order", "0"]) == 2
    assert "--order must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x.arpa").exists()

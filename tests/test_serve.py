"""``speechbraid serve``: the entity lexicon, the demo's answers (transcripts, streamed generation, bad input),
the CLI's errors, and the page itself in a real headless browser (Debian's chromium through selenium)."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from speechbraid import SpeechLLM
from speechbraid.cli.main import main
from speechbraid.corpora.lexicon import EntityLexicon, EntityMatcher, default_entity_lexicon, highlight
from speechbraid.data.audio import write_wav
from speechbraid.errors import ConfigError, InputError
from speechbraid.inference.transcribe import load_transcriber
from speechbraid.web.app import streams_audio
from speechbraid.web.demo import Demo, Generator

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
N_UNITS = 12

pytestmark = pytest.mark.usefixtures("one_torch_thread")
browser = pytest.mark.skipif(not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
                             reason=f"needs Debian's {CHROMIUM} and {CHROMEDRIVER} (scripts/setup.sh --dev installs "
                             "the chromium and chromium-driver packages)")


@pytest.fixture(scope="module")
def asr_model(tmp_path_factory, tiny_llm_dir, noise_corpus) -> Path:
    """A tiny speech LLM after a few ASR steps: it stops at EOS, so its transcripts are short and non-empty."""
    from speechbraid.models.build import ModelConfig
    from speechbraid.models.encoders import ConformerConfig
    from speechbraid.training.data import SourceConfig
    from speechbraid.training.trainer import DataConfig, StageConfig, TrainConfig, train

    config = TrainConfig(
        model=ModelConfig(llm=str(tiny_llm_dir), conformer=ConformerConfig(d_model=16, n_layers=1, n_heads=2)),
        data=DataConfig(train=[SourceConfig(str(noise_corpus), "asr", weight=1.0)], max_len=96, rows=2),
        stages=[StageConfig("full", 40, 3e-3)], ckpt_every=1000, tensorboard=False, device="cpu",
    )
    out = tmp_path_factory.mktemp("serve_asr")
    train(config, out, progress=False)
    return out / "model"


@pytest.fixture(scope="module")
def esi_model(tmp_path_factory, tiny_llm_dir) -> tuple[Path, Path, Path]:
    """(a tiny ESI model trained a few steps on one spoken QA pair with made-up units, a tiny untrained vocoder,
    a question WAV), as tests/test_generate.py builds them."""
    import torch

    from speechbraid.config import load_config
    from speechbraid.configs import resolve_config
    from speechbraid.corpora.spoken_qa import SpokenQA, write_spoken_qa
    from speechbraid.training.trainer import TrainConfig, train
    from speechbraid.units.vocoder import UnitToMel, UnitVocoder, VocoderConfig

    root = tmp_path_factory.mktemp("serve_gen")
    rng = np.random.default_rng(0)
    for role in ("q", "a"):
        write_wav(root / f"{role}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    question = "What is the opposite of hot?"
    qa = write_spoken_qa([SpokenQA("q0", "antonym", "train", question, ("cold",), "It is cold.", str(root / "q.wav"),
                                   1.0, str(root / "a.wav"), 1.0,
                                   tuple(int(u) for u in rng.integers(0, N_UNITS, 30)))], root / "qa.jsonl")
    (root / "asr.jsonl").write_text(json.dumps({"id": "q", "text": question, "audio": "q.wav", "duration": 1.0}) + "\n")
    overrides = [f"model.llm={tiny_llm_dir}", f"model.num_units={N_UNITS}", "model.speech_head=false",
                 f"data.train=[{{manifest: '{root / 'asr.jsonl'}', layout: asr}}, "
                 f"{{manifest: '{qa}', layout: gen-esi}}]",
                 "stages=[{name: full, steps: 3, lr: 1.0e-3}]", "tensorboard=false", "data.rows=2",
                 "model.conformer={d_model: 32, n_layers: 1, n_heads: 2}"]
    train(load_config(TrainConfig, resolve_config("asr_conformer"), overrides), root / "esi", progress=False)
    torch.manual_seed(0)
    vocoder = UnitVocoder(UnitToMel(VocoderConfig(n_units=N_UNITS, d_model=16)), gl_iters=4).save(root / "voc")
    return root / "esi" / "model", vocoder, root / "q.wav"


def _a_word(text: str) -> str:
    """The longest word of a transcript: made an entity name, so the tiny model's transcript has one to mark."""
    return max(re.findall(r"[^\W_]+", text), key=len)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _junk_wav(folder: Path) -> Path:
    """A text file renamed .wav: what a user uploads by mistake."""
    path = folder / "notes_v2.wav"
    path.write_text("these are my notes, not audio\n")
    return path


# ---------------------------------------------------------------------------------------------------------------
# The entity lexicon


def test_the_default_lexicon_marks_corpus_entities_as_eer_matches_them():
    lexicon = default_entity_lexicon()
    assert lexicon.missing == ()  # [dev] installs the drug dictionary
    kinds = set(lexicon.names.values())
    assert {"drug", "condition", "institution", "product", "card_name", "account_type"} <= kinds
    matcher = EntityMatcher(lexicon.names)
    text = ("Aspirin, then ibuprofen for the flu; aspirins are not it. Paid Northbrook  Credit Union by checking "
            "account.")
    spans = matcher.find(text)
    assert [(s.text, s.type) for s in spans] == [
        ("Aspirin", "drug"), ("ibuprofen", "drug"), ("flu", "condition"),
        ("Northbrook  Credit Union", "institution"), ("checking account", "account_type")]
    assert all(text[s.start:s.end] == s.text for s in spans)
    pieces = highlight(text, spans)
    assert "".join(piece for piece, _ in pieces) == text
    assert pieces[0] == ("Aspirin", "drug") and pieces[1] == (", then ", None)
    # the longest name wins over one inside it
    assert [s.type for s in EntityMatcher({"Gold": "x", "Brightline Gold": "card_name"}).find("my Brightline Gold")] \
        == ["card_name"]
    assert EntityMatcher({}).find("anything") == []


def test_without_the_drug_dictionary_the_rest_of_the_lexicon_still_marks(monkeypatch):
    import speechbraid.corpora.lexicon as lexicon_module

    def missing() -> tuple[str, ...]:
        raise InputError("the package 'drug-named-entity-recognition' is not installed")

    monkeypatch.setattr(lexicon_module, "drug_names", missing)
    lexicon = default_entity_lexicon()
    assert len(lexicon.missing) == 1 and "drug names" in lexicon.missing[0]
    assert "drug" not in set(lexicon.names.values()) and lexicon.names["savings account"] == "account_type"


# ---------------------------------------------------------------------------------------------------------------
# The demo without a page: what each request answers


def test_demo_transcribes_like_the_api_and_names_bad_uploads(asr_model, noise_corpus, tmp_path):
    wav = noise_corpus.parent / "u0.wav"
    expected = SpeechLLM.from_pretrained(asr_model).transcribe(wav)
    word = _a_word(expected)
    demo = Demo(load_transcriber(asr_model), EntityLexicon({word: "drug"}))
    result = demo.transcribe(str(wav))
    assert result.text == expected and result.audio_seconds > 0
    assert (word, "drug") in result.pieces and "".join(p for p, _ in result.pieces) == expected
    with pytest.raises(InputError, match=r"^notes_v2\.wav: unreadable audio"):
        demo.transcribe(_junk_wav(tmp_path))
    write_wav(tmp_path / "silence.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match=r"^silence\.wav: the audio is empty \(0\.00 s\)"):
        demo.transcribe(tmp_path / "silence.wav")
    with pytest.raises(InputError, match="no audio"):
        demo.transcribe(None)


def test_generator_streams_the_esi_answer(esi_model, asr_model):
    from speechbraid.evaluation.generation import decode_streamed
    from speechbraid.patterns import get_pattern

    model_dir, vocoder_dir, question_wav = esi_model
    generator = Generator(model_dir, vocoder_dir, max_steps=40)
    question = "What is the opposite of hot?"
    updates = list(generator.answer(question))
    final = updates[-1]
    assert final.done and not any(u.done for u in updates[:-1])
    text, units = SpeechLLM.from_pretrained(model_dir).generate(question, max_steps=40)
    assert final.text == text and units  # the same answer as the Python API
    chunks = [u.audio for u in updates if u.audio is not None]
    reference = decode_streamed(generator.model, [generator.prompt(question)], get_pattern("esi"), generator.vocoder,
                                generator.features, generator.config)[1][0]
    assert len(chunks) > 1  # streamed: more than one piece of speech
    np.testing.assert_allclose(np.concatenate(chunks), reference, atol=1e-6)
    assert f"from {len(units)} units" in final.summary
    # a spoken question is answered too; an empty one is a message
    assert list(generator.answer("", question_wav))[-1].done
    with pytest.raises(InputError, match="question is empty"):
        next(generator.answer("  "))
    # closing the stream early stops the decoder (the page went away)
    stream = generator.answer(question)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "speechbraid-answer"]
    # a model without speech units cannot answer
    with pytest.raises(ConfigError, match="no speech units"):
        Generator(asr_model, vocoder_dir)


# ---------------------------------------------------------------------------------------------------------------
# The command line: errors before any server starts


def test_serve_cli_errors_are_one_line(asr_model, tmp_path, capsys, monkeypatch):
    assert main(["serve", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("speechbraid serve: error: ") and str(tmp_path) in err and "Traceback" not in err
    assert main(["serve", "--model", str(asr_model), "--generator", str(asr_model)]) == 2
    assert "vocoder" in capsys.readouterr().err
    assert main(["serve", "--model", str(asr_model), "--generator", str(tmp_path), "--vocoder", str(tmp_path)]) == 2
    assert "not a speechbraid speech LLM directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the [web] extra were not installed
    assert main(["serve", "--model", str(asr_model)]) == 2
    assert "pip install 'speechbraid[web]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# The page in a real browser


@pytest.fixture(scope="module")
def page(asr_model, esi_model, noise_corpus):
    """(URL, the upload, its expected transcript, the word marked in it, webdriver, demo): both tabs served in a
    thread with a one-word lexicon (the tiny model's transcript has no real entity), one headless chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from speechbraid.web.app import build_app, launch

    wav = noise_corpus.parent / "u0.wav"
    expected = SpeechLLM.from_pretrained(asr_model).transcribe(wav)
    assert expected.strip()  # the checks below need a transcript to wait for
    word = _a_word(expected)
    demo = _SpyDemo(load_transcriber(asr_model), EntityLexicon({word: "drug"}),
                    Generator(esi_model[0], esi_model[1], max_steps=40))
    app = build_app(demo)
    url = launch(app, port=_free_port())
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # a fake microphone (a beep) that needs no permission prompt, for the recording test
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield url, wav, expected, word, driver, demo
    finally:
        driver.quit()
        app.close()


class _SpyDemo(Demo):
    """The demo, keeping the path of every file the page sent (a recording's file exists only on the server)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[str] = []

    def transcribe(self, path):
        self.received.append(path)
        return super().transcribe(path)


def _upload_and_click(driver, url: str, path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#asr-audio input[type=file]")).send_keys(str(path))
    # the upload is done when the component links the file on the server
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#asr-audio a[download]"))
    driver.find_element(By.ID, "asr-button").click()
    return wait


@browser
def test_browser_upload_shows_the_transcript_with_entities_marked(page):
    from selenium.webdriver.common.by import By

    url, wav, expected, word, driver, _ = page
    wait = _upload_and_click(driver, url, wav)
    shown = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#asr-transcript textarea").get_attribute("value"))
    assert shown == expected
    # the marked transcript: the lexicon's one word highlighted wherever it occurs
    marked = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#asr-entities .highlighted")]
    assert marked and set(marked) == {word}
    status = driver.find_element(By.ID, "asr-status").text
    assert f"{len(marked)} entit" in status and "Error" not in status


@browser
def test_browser_recording_is_transcribed(page, asr_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from speechbraid.data.audio import audio_info

    url, _, _, _, driver, demo = page
    driver.get(url)
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#asr-audio button[aria-label='Record audio']")).click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#asr-audio button.record-button")).click()
    # a second of the fake microphone's beep, by the recorder's own clock
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#asr-audio time.duration").text == "0:01")
    driver.find_element(By.CSS_SELECTOR, "#asr-audio button.stop-button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#asr-audio a[download]"))
    driver.find_element(By.ID, "asr-button").click()
    status = wait.until(lambda d: d.find_element(By.ID, "asr-status").text)
    assert "of audio transcribed" in status
    recorded = demo.received[-1]
    assert audio_info(recorded)[1] >= 1.0  # the browser's WAV (44.1 or 48 kHz), resampled by the transcriber
    shown = driver.find_element(By.CSS_SELECTOR, "#asr-transcript textarea").get_attribute("value")
    assert shown == SpeechLLM.from_pretrained(asr_model).transcribe(recorded)


@browser
def test_browser_unreadable_upload_shows_a_message(page, tmp_path):
    from selenium.webdriver.common.by import By

    url, _, _, _, driver, _ = page
    wait = _upload_and_click(driver, url, _junk_wav(tmp_path))
    message = wait.until(lambda d: d.find_element(By.ID, "asr-status").text)
    assert message.startswith("Error: notes_v2.wav: unreadable audio")
    assert "Traceback" not in driver.page_source


@browser
def test_browser_ask_tab_answers_a_typed_question(page, esi_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _, _, driver, _ = page
    question = "What is the opposite of hot?"
    text, units = SpeechLLM.from_pretrained(esi_model[0]).generate(question, max_steps=40)
    assert units  # the check of the speech below needs some
    driver.get(url)
    wait = WebDriverWait(driver, 30)
    tabs = wait.until(lambda d: [t for t in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == "Ask"])
    tabs[0].click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gen-question textarea")).send_keys(question)
    driver.find_element(By.ID, "gen-button").click()
    summary = wait.until(lambda d: d.find_element(By.ID, "gen-status").text)
    assert f"from {len(units)} units" in summary
    assert driver.find_element(By.CSS_SELECTOR, "#gen-answer textarea").get_attribute("value") == text
    # the speech: streamed (an HLS playlist Gradio encodes with ffmpeg; setup.sh --dev installs it) or, without
    # ffmpeg, the whole WAV once decoded
    link = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#gen-speech a[download]")).get_attribute("href")
    assert ("/gradio_api/stream/" in link) if streams_audio() else link.endswith(".wav")
    # an empty question is a message in the page
    # typed away, as a user would (selenium's clear() changes the box without the input events the page listens to)
    box = driver.find_element(By.CSS_SELECTOR, "#gen-question textarea")
    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    wait.until(lambda d: box.get_attribute("value") == "")
    driver.find_element(By.ID, "gen-button").click()  # served even while the first answer still streams
    message = wait.until(lambda d: d.find_element(By.ID, "gen-status").text.startswith("Error:")
                         and d.find_element(By.ID, "gen-status").text,
                         message="no error shown for an empty question")
    assert message == "Error: the question is empty: type one or ask it aloud"

"""The web demo in a real headless browser (Debian's chromium + chromedriver, driven by selenium): the page loads,
a WAV is uploaded, the transcript appears; an unreadable upload gets a message, not a trace."""

import shutil
import socket

import numpy as np
import pytest

from speechbraid import SpeechLLM
from speechbraid.data.audio import write_wav
from speechbraid.web.app import load_entities, mark_entities
from test_reliability_cli import make_whisper_speech_llm

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
browser = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Debian's chromium and chromium-driver are not "
                             "installed (bash scripts/setup.sh --dev installs them)")


def test_entities_are_marked_whole_word_and_case_blind(tmp_path):
    words = tmp_path / "drugs.txt"
    words.write_text("aspirin\nvitamin c\n", encoding="utf-8")
    entities = load_entities([words]) | {"Westwood Bank": "institution"}
    marked = mark_entities("Take Aspirin and vitamin C, not aspirins, at westwood bank.", entities)
    assert [(text, kind) for text, kind in marked if kind] == [("Aspirin", "entity"), ("vitamin C", "entity"),
                                                                 ("westwood bank", "institution")]
    assert "".join(text for text, _ in marked) == "Take Aspirin and vitamin C, not aspirins, at westwood bank."
    assert mark_entities("nothing known", {}) == [("nothing known", None)]


@pytest.fixture(scope="module")
def page(tmp_path_factory, tiny_llm_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from speechbraid.web.app import build_app

    tmp = tmp_path_factory.mktemp("serve")
    model = SpeechLLM.from_pretrained(make_whisper_speech_llm(tmp, tiny_llm_dir))
    app = build_app(model, {"aspirin": "drug"})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        yield driver, model, tmp
    finally:
        driver.quit()
        app.close()


def _upload_and_run(driver, path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.refresh()  # a fresh page per upload: no earlier audio or transcript on it
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#asr-audio input[type=file]")))
    driver.find_element(By.CSS_SELECTOR, "#asr-audio input[type=file]").send_keys(str(path))
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#asr-run"))).click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#asr-status").text.strip())
    return (driver.find_element(By.CSS_SELECTOR, "#asr-status").text,
            driver.find_element(By.CSS_SELECTOR, "#asr-transcript").text)


@browser
def test_an_uploaded_wav_is_transcribed_in_the_page(page):
    driver, model, tmp = page
    wav = tmp / "speech.wav"
    write_wav(wav, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    status, shown = _upload_and_run(driver, wav)
    assert driver.title == "speechbraid" and status.startswith("Transcribed")
    expected = model.transcribe(wav)
    assert shown.split() == ["Transcript", "(entities", "marked)", *expected.split()]  # the label, then the text


@browser
def test_an_unreadable_upload_gets_a_message_not_a_trace(page):
    driver, _, tmp = page
    fake = tmp / "notes.wav"
    fake.write_text("these are not audio samples", encoding="utf-8")
    status, _ = _upload_and_run(driver, fake)
    assert status.startswith("Cannot transcribe this audio") and "Traceback" not in driver.page_source

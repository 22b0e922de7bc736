"""The Python API: from_pretrained / transcribe / save_pretrained, as the README's quick start shows it."""

import json

import numpy as np
import pytest

from speechbraid import SpeechLLM
from speechbraid.data.audio import write_wav
from speechbraid.errors import CheckpointError
from speechbraid.inference.transcribe import audio_item, load_transcriber
from test_reliability_cli import make_whisper_speech_llm


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_llm_dir):
    return make_whisper_speech_llm(tmp_path_factory.mktemp("api"), tiny_llm_dir)


def test_quick_start_transcribes_files_and_arrays_like_the_cli(saved, tmp_path):
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    wav = tmp_path / "a.wav"
    write_wav(wav, samples, 16000)
    model = SpeechLLM.from_pretrained(saved)
    text = model.transcribe(wav)
    assert isinstance(text, str)
    cli = load_transcriber(saved).transcribe([audio_item(wav)], progress=False).texts[0]
    assert text == cli
    # an array is the same audio as the file it was written from (PCM-16 on both paths)
    assert model.transcribe([wav, samples]) == [text, text]
    with pytest.raises(Exception, match="mono"):
        model.transcribe(np.zeros((2, 100), dtype=np.float32))


def test_save_pretrained_is_self_contained_with_a_card(saved, tmp_path):
    model = SpeechLLM.from_pretrained(saved)
    out = model.save_pretrained(tmp_path / "copy")
    card = (out / "README.md").read_text()
    assert "SpeechLLM.from_pretrained" in card and '"encoder": "whisper"' in card
    again = SpeechLLM.from_pretrained(out)
    assert again.module.adapter.inner[1].weight.equal(model.module.adapter.inner[1].weight)
    # the word n-gram a directory holds for --decoder ctc-lm travels with it
    from speechbraid.models.ngram_lm import build_kneser_ney

    build_kneser_ney(["a test sentence"]).write_arpa(out / "lm.arpa.gz")
    copied = again.save_pretrained(tmp_path / "copy2")
    assert (copied / "lm.arpa.gz").read_bytes() == (out / "lm.arpa.gz").read_bytes()


def test_from_pretrained_names_what_is_wrong(saved, tmp_path):
    with pytest.raises(CheckpointError, match="not a speechbraid speech LLM directory") as err:
        SpeechLLM.from_pretrained(tmp_path)
    assert str(tmp_path) in str(err.value)
    newer = tmp_path / "newer"
    SpeechLLM.from_pretrained(saved).save_pretrained(newer)
    meta = json.loads((newer / "speechbraid.json").read_text())
    (newer / "speechbraid.json").write_text(json.dumps(meta | {"format": 99}))
    with pytest.raises(CheckpointError, match="newer speechbraid"):
        SpeechLLM.from_pretrained(newer)
    (newer / "speechbraid.json").write_text(json.dumps(meta))
    (newer / "speech.safetensors").unlink()
    with pytest.raises(CheckpointError, match="speech.safetensors"):
        SpeechLLM.from_pretrained(newer)


def test_the_readme_quick_start_runs(saved, tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    wav = tmp_path / "call.wav"
    write_wav(wav, np.zeros(16000, dtype=np.float32), 16000)
    code = (block.replace("runs/main/rows/asr-only/seed0/model", str(saved)).replace('"call.wav"', repr(str(wav)))
            .replace('"other.wav"', repr(str(wav))).replace('"my-model"', repr(str(tmp_path / "my-model"))))
    # generate needs a model trained with speech units (the ESI study's); this one has none
    code = "\n".join(line for line in code.splitlines() if ".generate(" not in line)
    exec(compile(code, "README.md", "exec"), {"samples_16k": np.zeros(16000, dtype=np.float32)})
    assert (tmp_path / "my-model" / "README.md").is_file()

"""The lean core: what the core install covers imports none of the optional extras, and a missing extra is named."""

import subprocess
import sys

import pytest

from speechbraid.errors import ConfigError
from speechbraid.extras import require

OPTIONAL = ("piper", "onnx", "onnxruntime", "sklearn", "matplotlib", "gguf", "drug_named_entity_recognition", "gradio",
            "selenium")


def test_core_modules_import_no_optional_extra():
    code = ("import sys\n"
            "import speechbraid.api, speechbraid.inference.transcribe, speechbraid.training.trainer\n"
            "import speechbraid.metrics.asr, speechbraid.data.validate, speechbraid.cli.main\n"
            "import speechbraid.cli.serve, speechbraid.web.app\n"  # gradio only once the page is built
            f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_extra_is_named():
    with pytest.raises(ConfigError, match=r"speechbraid\[synth\]"):
        require("speechbraid_no_such_module", "synth", "Piper synthesis")

"""The full path on a tiny trained speech LLM: espeak-spoken questions, T2T vs S2T multiple choice, zero-shot SQA."""

from speechbraid.corpora.questions import build_question_sets
from speechbraid.data.questions import load_questions
from speechbraid.evaluation.modality_gap import modality_gap
from speechbraid.evaluation.sqa import spoken_qa
from speechbraid.models.build import ModelConfig, load_speech_llm
from speechbraid.models.encoders import ConformerConfig
from speechbraid.training.data import SourceConfig
from speechbraid.training.trainer import DataConfig, StageConfig, TrainConfig, train


def test_gap_and_spoken_qa_run_on_a_trained_model(tmp_path, tiny_llm_dir, noise_corpus):
    config = TrainConfig(
        model=ModelConfig(llm=str(tiny_llm_dir), conformer=ConformerConfig(d_model=16, n_layers=1, n_heads=2)),
        data=DataConfig(train=[SourceConfig(str(noise_corpus), "asr", weight=1.0),
                               SourceConfig(str(noise_corpus), "word-il", weight=1.0)], max_len=96, rows=2),
        stages=[StageConfig("adapter", 1, 1e-3, [r"^adapter\."]), StageConfig("full", 1, 1e-3)],
        ckpt_every=2, tensorboard=False, device="cpu",
    )
    train(config, tmp_path / "run", progress=False)
    model, tokenizer, model_config = load_speech_llm(tmp_path / "run" / "model")
    paths = build_question_sets(tmp_path / "questions", n_mc=4, n_sqa=4, n_shots=2, seed=0, progress=False)
    mc, shots = load_questions(paths["mc"], "mc"), load_questions(paths["shots"], "mc")
    sqa = load_questions(paths["sqa"], "sqa")
    features = model_config.feature_config.extract_file

    gap = modality_gap(model, tokenizer, mc, shots=shots, k_shot=2, features=features, batch_size=2)
    assert gap["n"] == 4 and gap["k_shot"] == 2
    assert {gap["t2t"], gap["s2t"]} <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert gap["gap"] == gap["s2t"] - gap["t2t"]

    qa = spoken_qa(model, tokenizer, sqa, features=features, max_new_tokens=4, batch_size=3)
    assert qa["n"] == 4 and {qa["s2t"], qa["t2t"]} <= {0.0, 0.25, 0.5, 0.75, 1.0}

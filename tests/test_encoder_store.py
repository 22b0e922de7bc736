"""The sharded encoder-output store (issue 12 item 2): precompute, read-only training, and every way it can break."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from speechbraid.cli.main import main
from speechbraid.data.features import FeatureConfig
from speechbraid.data.manifest import read_manifest
from speechbraid.errors import CheckpointError
from speechbraid.models.build import ModelConfig, build_speech_llm, load_speech_encoder, save_speech_llm
from speechbraid.models.encoder_store import INDEX, EncoderOutputStore, precompute
from speechbraid.models.encoders import ConformerConfig, ConformerEncoder
from speechbraid.training.data import SourceConfig
from speechbraid.training.runlog import read_train_log
from speechbraid.training.runtime import seed_everything
from speechbraid.training.trainer import DataConfig, StageConfig, TrainConfig, Trainer, train

TINY_CONFORMER = ConformerConfig(d_model=16, n_layers=1, n_heads=2)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


def audio_of(manifest: Path) -> list[str]:
    return [str(record.audio) for record in read_manifest(manifest)]


def frozen_encoder_config(llm_dir, manifest, start: Path, store: Path, mode: str = "fill") -> TrainConfig:
    """Two stages that never train the encoder (the recipe the store is for), starting from a saved model."""
    return TrainConfig(
        model=ModelConfig(llm=str(llm_dir), conformer=TINY_CONFORMER),
        data=DataConfig(train=[SourceConfig(str(manifest), "asr"), SourceConfig(str(manifest), "word-il")],
                        max_len=96, rows=2),
        stages=[StageConfig("adapter", 2, 1e-3, [r"^adapter\."]), StageConfig("llm", 2, 1e-3, [r"^(adapter|llm)\."])],
        ckpt_every=1, tensorboard=False, device="cpu", init_from=str(start), encoder_store=str(store),
        encoder_store_mode=mode,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def start_model(tmp_path_factory, tiny_llm_dir) -> Path:
    """A saved, untrained speech LLM: what `speechbraid features --kind encoder --model DIR` and the runs start from."""
    seed_everything(0)
    config = ModelConfig(llm=str(tiny_llm_dir), conformer=TINY_CONFORMER)
    model, tokenizer = build_speech_llm(config)
    return save_speech_llm(model, tokenizer, config, tmp_path_factory.mktemp("start") / "model")


def precompute_cli(manifest: Path, model: Path, store: Path, *extra: str) -> int:
    return main(["features", str(manifest), "--kind", "encoder", "--model", str(model), "--store", str(store),
                 "--batch", "2", *extra])


def test_precomputed_read_only_training_matches_fill_training(tmp_path, tiny_llm_dir, noise_corpus, start_model,
                                                             capsys):
    fill = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "filled")
    train(fill, tmp_path / "fill", progress=False)
    reference = [row["loss"] for row in read_train_log(tmp_path / "fill")]

    # read-only over what the fill run stored: the very same outputs, so the very same losses
    again = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "filled", "read-only")
    train(again, tmp_path / "again", progress=False)
    assert [row["loss"] for row in read_train_log(tmp_path / "again")] == reference

    # precomputed by the command (other batches than training's: equal up to float rounding)
    assert precompute_cli(noise_corpus, start_model, tmp_path / "pre") == 0
    err = capsys.readouterr().err
    assert "encoded 6 audio file(s)" in err and "encoder_store_mode=read-only" in err
    read_only = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "pre", "read-only")
    trainer = Trainer(read_only, tmp_path / "ro")
    assert err.count(str(trainer.model.encoder_cache.directory)) == 1  # the command says where the store is
    encoded, extracted = [], []
    trainer.model.encoder.register_forward_hook(lambda *_: encoded.append(1))
    extract = trainer.features.config.extract_file
    trainer.features.config = type("Counted", (), {"extract_file": lambda path: extracted.append(path) or
                                                   extract(path)})
    trainer.fit(progress=False)
    assert not encoded and not extracted  # read-only: never encodes, so no log-mel features are computed either
    assert [row["loss"] for row in read_train_log(tmp_path / "ro")] == pytest.approx(reference, rel=1e-4)
    # the command resumes: a second run finds everything stored
    assert precompute_cli(noise_corpus, start_model, tmp_path / "pre") == 0
    assert "encoded 0 audio file(s) into 0 new shard(s), kept 6" in capsys.readouterr().err


def test_fill_training_encodes_every_audio_before_step_one(tmp_path, tiny_llm_dir, noise_corpus, start_model):
    """A frozen encoder's outputs are stored for the whole training set up front (length-sorted batches, ~2x
    faster than batch by batch); a run that trains its encoder stores nothing."""
    fill = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "store")
    fill.data.train = fill.data.train[:1]
    trainer = Trainer(fill, tmp_path / "run")
    trainer.fit(progress=False, stop_after=1)  # one step reads at most 2 rows of the 6 audio files
    store = trainer.model.encoder_cache
    assert set(store.stored(audio_of(noise_corpus), store.damaged())) == set(audio_of(noise_corpus))

    moving = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "moving-store")
    moving.stages = [StageConfig("all", 1, 1e-3, [r"^(encoder|adapter)\."])]
    trainer = Trainer(moving, tmp_path / "moving")
    trainer.fit(progress=False)
    assert not list((tmp_path / "moving-store").glob("*/shard-*"))


def test_read_only_names_the_missing_record_its_manifest_and_the_store(tmp_path, tiny_llm_dir, noise_corpus,
                                                                        start_model):
    lines = [json.loads(line) for line in noise_corpus.read_text().splitlines()]
    part = tmp_path / "part.jsonl"  # the first four records only
    part.write_text("".join(json.dumps(line | {"audio": str(noise_corpus.parent / line["audio"])}) + "\n"
                            for line in lines[:4]))
    assert precompute_cli(noise_corpus, start_model, tmp_path / "store", "--shard-mb", "1") == 0
    full = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "store", "read-only")
    Trainer(full, tmp_path / "ok")  # everything stored: no error

    assert precompute_cli(part, start_model, tmp_path / "partial") == 0
    config = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, tmp_path / "partial", "read-only")
    missing = audio_of(noise_corpus)[4]
    with pytest.raises(CheckpointError) as error:
        Trainer(config, tmp_path / "run")
    message = str(error.value)
    assert "2 of 6 audio file(s) have no stored encoder output" in message
    assert f"{missing} ({noise_corpus}:5 [u4])" in message  # the audio and the manifest line and record using it
    assert message.startswith(f"{tmp_path / 'partial'}/") and INDEX in message  # the store's index
    assert "speechbraid features --kind encoder" in message

    # at run time (a record the check did not see): the audio and the store, never an encoding
    encoder, _ = load_speech_encoder(start_model)
    store = EncoderOutputStore(tmp_path / "partial", encoder, mode="read-only")
    assert missing in store  # a read-only store answers every lookup itself ...
    with pytest.raises(CheckpointError, match=f"{INDEX}: no stored encoder output for audio {missing}"):
        store[missing]  # ... and names what it lacks
    with pytest.raises(CheckpointError, match="read-only"):
        store[missing] = torch.zeros(2, 16)


def test_removed_shard_is_named_and_the_run_resumes_once_it_is_precomputed_again(tmp_path, tiny_llm_dir,
                                                                                  noise_corpus, start_model, capsys):
    store_dir = tmp_path / "store"
    assert precompute_cli(noise_corpus, start_model, store_dir, "--shard-mb", "1e-6") == 0  # a shard per batch
    config = frozen_encoder_config(tiny_llm_dir, noise_corpus, start_model, store_dir, "read-only")
    train(config, tmp_path / "full", progress=False)
    reference = [row["loss"] for row in read_train_log(tmp_path / "full")]
    train(config, tmp_path / "cut", progress=False, stop_after=2)

    encoder, _ = load_speech_encoder(start_model)
    store = EncoderOutputStore(store_dir, encoder, mode="read-only")
    assert len(store.shard_files) == 3 and len(store) == 6
    removed = store.shard_files[1]
    removed.unlink()
    with pytest.raises(CheckpointError, match=rf"{removed}: encoder-output shard is missing \(2 records") as error:
        train(config, tmp_path / "cut", progress=False, resume=True)
    assert f"{noise_corpus}:" in str(error.value) and " [u" in str(error.value)  # a line and record it held
    with pytest.raises(CheckpointError, match=f"{removed}: encoder-output shard is missing"):
        for path in audio_of(noise_corpus):
            store[path]

    assert precompute_cli(noise_corpus, start_model, store_dir) == 0  # re-encodes only what the shard held
    assert "encoded 2 audio file(s) into 1 new shard(s), kept 4" in capsys.readouterr().err
    train(config, tmp_path / "cut", progress=False, resume=True)  # the checkpoint loads and the run finishes
    assert [row["loss"] for row in read_train_log(tmp_path / "cut")] == pytest.approx(reference, rel=1e-4)


def test_damaged_shards_are_named(tmp_path, noise_corpus):
    torch.manual_seed(0)
    encoder = ConformerEncoder(TINY_CONFORMER)
    store = EncoderOutputStore(tmp_path, encoder)
    audio = audio_of(noise_corpus)[:2]
    store.update({audio[0]: torch.ones(3, 16), audio[1]: torch.zeros(2, 16)})
    assert torch.equal(EncoderOutputStore(tmp_path, encoder)[audio[0]], torch.ones(3, 16))  # a new process reads it
    (shard,) = store.shard_files
    whole = shard.read_bytes()

    shard.write_bytes(whole[:-20])  # truncated
    with pytest.raises(CheckpointError, match=rf"{shard}: corrupt encoder-output shard: .*truncated.* {audio[1]}"):
        EncoderOutputStore(tmp_path, encoder, mode="read-only")[audio[1]]
    shard.write_bytes(b"\xff" * 16 + whole[16:])  # same size, header destroyed
    with pytest.raises(CheckpointError, match=rf"{shard}: corrupt encoder-output shard \(.*{audio[0]}"):
        EncoderOutputStore(tmp_path, encoder)[audio[0]]
    # the fill mode does not paper over it either: the damage is named, not re-encoded behind the user's back
    assert audio[0] in EncoderOutputStore(tmp_path, encoder)
    (tmp_path / store.digest / INDEX).write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{INDEX}: corrupt encoder-store index"):
        EncoderOutputStore(tmp_path, encoder)


def test_another_encoders_weights_never_read_these_outputs(tmp_path, noise_corpus):
    torch.manual_seed(0)
    first = ConformerEncoder(TINY_CONFORMER)
    other = ConformerEncoder(TINY_CONFORMER)
    other.load_state_dict(first.state_dict())
    with torch.no_grad():
        other.blocks[0].out_norm.bias.add_(1e-3)  # one weight differs
    features = FeatureConfig().extract_file
    audio = audio_of(noise_corpus)
    store = EncoderOutputStore(tmp_path, first, name="first")
    precompute(store, first, features, audio, progress=False)

    theirs = EncoderOutputStore(tmp_path, other, name="other")
    assert theirs.digest != store.digest and theirs.directory != store.directory
    assert not any(path in theirs for path in audio)  # fill mode: everything is missing for these weights
    with pytest.raises(CheckpointError, match=rf"no encoder outputs were precomputed for this encoder .*"
                                              rf"{store.digest} \(first, 6 records\)"):
        EncoderOutputStore(tmp_path, other, mode="read-only")[audio[0]]

    # a store directory moved under the other weights' digest is refused, not read as theirs
    shutil.move(store.directory, theirs.directory)
    with pytest.raises(CheckpointError, match=f"written for encoder weights {store.digest}"):
        EncoderOutputStore(tmp_path, other)


def test_interrupted_precompute_keeps_finished_shards_and_never_shows_a_half_written_one(tmp_path, noise_corpus,
                                                                                         monkeypatch):
    torch.manual_seed(0)
    encoder = ConformerEncoder(TINY_CONFORMER)
    calls = []

    def counted(module, args):
        calls.append(args[0].shape[0])
        if limit is not None and len(calls) > limit:
            raise KeyboardInterrupt

    encoder.register_forward_pre_hook(counted)
    features = FeatureConfig().extract_file
    audio = audio_of(noise_corpus)
    store = EncoderOutputStore(tmp_path, encoder)

    limit = 2  # killed while encoding the third batch: two shards of two outputs are finished
    with pytest.raises(KeyboardInterrupt):
        precompute(store, encoder, features, audio, batch=2, shard_bytes=1, progress=False)
    finished = {file: file.stat().st_mtime_ns for file in store.shard_files}
    assert len(finished) == 2 and len(EncoderOutputStore(tmp_path, encoder)) == 4

    import speechbraid.models.encoder_store as module

    def torn_write(tensors, filename, metadata=None):  # killed halfway through writing the shard
        Path(filename).write_bytes(b"half a shard")
        raise KeyboardInterrupt

    calls.clear()
    limit = None
    monkeypatch.setattr(module, "save_file", torn_write)
    with pytest.raises(KeyboardInterrupt):
        precompute(store, encoder, features, audio, batch=2, shard_bytes=1, progress=False)
    assert sorted(p.name for p in store.directory.iterdir()) == sorted([INDEX, ".lock", *(f.name for f in finished)])
    assert len(EncoderOutputStore(tmp_path, encoder)) == 4
    monkeypatch.undo()

    calls.clear()
    counts = precompute(EncoderOutputStore(tmp_path, encoder), encoder, features, audio, batch=2, shard_bytes=1,
                        progress=False)
    assert counts == {"encoded": 2, "kept": 4, "shards": 1} and calls == [2]  # only the unfinished batch
    assert {file: file.stat().st_mtime_ns for file in store.shard_files[:2]} == finished  # left as they were
    reread = EncoderOutputStore(tmp_path, encoder, mode="read-only")
    with torch.no_grad():
        alone = encoder.eval()(features(audio[5])[None], torch.tensor([features(audio[5]).shape[0]]))[0][0]
    assert torch.allclose(reread[audio[5]], alone, atol=1e-5)


def test_concurrent_writers_both_land_in_the_index(tmp_path, noise_corpus):
    torch.manual_seed(0)
    encoder = ConformerEncoder(TINY_CONFORMER)
    audio = audio_of(noise_corpus)
    rank0, rank1 = EncoderOutputStore(tmp_path, encoder), EncoderOutputStore(tmp_path, encoder)  # one per process
    rank0[audio[0]] = torch.ones(2, 16)
    rank1[audio[1]] = torch.zeros(2, 16)  # rank1 read the index before rank0 wrote: it must merge, not overwrite
    assert audio[0] in rank1  # and sees what the other wrote
    index = json.loads((rank0.directory / INDEX).read_text())
    assert len(index["records"]) == 2 and len(index["shards"]) == 2
    assert index["encoder"]["class"] == "ConformerEncoder" and index["encoder"]["config"]["d_model"] == 16


def test_ram_budget_bounds_the_in_memory_copies(tmp_path, noise_corpus):
    torch.manual_seed(0)
    encoder = ConformerEncoder(TINY_CONFORMER)
    audio = audio_of(noise_corpus)[:3]
    EncoderOutputStore(tmp_path, encoder).update({path: torch.full((4, 16), float(i)) for i, path in enumerate(audio)})
    store = EncoderOutputStore(tmp_path, encoder, max_bytes=2 * 4 * 16 * 4, mode="read-only")  # room for two
    for i, path in enumerate(audio):
        assert torch.equal(store[path], torch.full((4, 16), float(i)))
    assert list(store._memory) == audio[1:]  # the least recently used went back to the shard
    cold = EncoderOutputStore(tmp_path, encoder, max_bytes=0, mode="read-only")
    assert torch.equal(cold[audio[0]], torch.zeros(4, 16)) and not cold._memory


def test_features_cli_encoder_kind_needs_store_not_out(tmp_path, noise_corpus, capsys):
    assert main(["features", str(noise_corpus), "--kind", "encoder", "--out", str(tmp_path)]) == 2
    assert "--store DIR" in capsys.readouterr().err
    assert main(["features", str(noise_corpus)]) == 2
    assert "needs --out DIR" in capsys.readouterr().err


def test_precompute_encoder_is_the_one_training_holds(home, tiny_llm_dir, start_model):
    """The store is keyed by weights: the command must load the very encoder a run builds, or a read-only run
    finds nothing (whisper-base by name, a saved speech LLM's trained encoder by directory)."""
    from speechbraid.models.build import load_speech_llm
    from speechbraid.models.encoder_store import weights_digest

    encoder, features = load_speech_encoder("whisper-base")
    model, _ = build_speech_llm(ModelConfig(llm=str(tiny_llm_dir), encoder="whisper"))
    assert features == FeatureConfig(kind="whisper") and not encoder.training
    assert weights_digest(encoder) == weights_digest(model.encoder)
    encoder, features = load_speech_encoder(start_model)
    assert features == FeatureConfig(kind="fbank")
    assert weights_digest(encoder) == weights_digest(load_speech_llm(start_model)[0].encoder)


def _tiny_pair() -> tuple[ConformerEncoder, ConformerEncoder]:
    torch.manual_seed(0)
    plain = ConformerEncoder(TINY_CONFORMER).eval()
    bf16 = ConformerEncoder(TINY_CONFORMER, precision="bf16").eval()
    bf16.load_state_dict(plain.state_dict())
    return plain, bf16


def test_encoder_precision_bf16_outputs_float32_close_to_fp32_and_is_stored_apart(tmp_path):
    """ModelConfig.encoder_precision: bf16 matmuls, float32 outputs close to fp32's, and a store key of their own
    (an fp32 store keeps its old key, so stores written before the option existed are still found)."""
    plain, bf16 = _tiny_pair()
    feats, lengths = torch.randn(2, 40, 80), torch.tensor([40, 31])
    with torch.no_grad():
        (ref, ref_len), (out, out_len) = plain(feats, lengths), bf16(feats, lengths)
    assert out.dtype == torch.float32 and torch.equal(ref_len, out_len)
    assert not torch.equal(ref, out)  # it really ran in bf16
    assert torch.nn.functional.cosine_similarity(ref, out, dim=-1)[0, :5].min() > 0.99
    weights_only = EncoderOutputStore(tmp_path, torch.nn.Sequential(*plain.children())).digest
    fp32_store, bf16_store = EncoderOutputStore(tmp_path, plain), EncoderOutputStore(tmp_path, bf16)
    assert fp32_store.digest != bf16_store.digest
    assert "--precision bf16" in bf16_store.precompute_hint() and "--precision fp32" in fp32_store.precompute_hint()
    assert weights_only != bf16_store.digest


def test_encoder_keeps_its_precision_under_the_callers_autocast():
    # Regression: an fp32 encoder inside a bf16 training run (or decoder) computed in bf16 and its store kept those
    # outputs under the fp32 key, so a later fp32 read got bf16 values; a bf16 encoder stays bf16 under fp32 callers.
    plain, bf16 = _tiny_pair()
    feats, lengths = torch.randn(2, 40, 80), torch.tensor([40, 31])
    with torch.no_grad():
        alone = plain(feats, lengths)[0], bf16(feats, lengths)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_bf16 = plain(feats, lengths)[0], bf16(feats, lengths)[0]
    assert torch.equal(under_bf16[0], alone[0]) and torch.equal(under_bf16[1], alone[1])


def test_encoder_precision_auto_follows_the_hardware(monkeypatch):
    import speechbraid.device as device

    _, encoder = _tiny_pair()
    encoder.precision = "auto"
    monkeypatch.setattr(device, "native_bf16", lambda dev: False)
    assert encoder.compute_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(device, "native_bf16", lambda dev: True)
    assert encoder.compute_dtype(torch.device("cpu")) is torch.bfloat16
    with pytest.raises(ValueError, match="unknown encoder precision 'fp8'"):
        ConformerEncoder(TINY_CONFORMER, precision="fp8")


def test_precompute_precision_option_reaches_the_saved_model_encoder(start_model):
    encoder, _ = load_speech_encoder(start_model, "bf16")
    assert encoder.precision == "bf16"
    assert load_speech_encoder(start_model)[0].precision == ModelConfig().encoder_precision == "fp32"
    assert load_speech_encoder("whisper-base", "auto")[0].precision == "auto"

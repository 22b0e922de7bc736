"""CTC forced alignment: word times for speech-text pairs that have none (``speechbraid align``).

Modules: ``text`` (transcript -> character targets), ``viterbi`` (forced alignment over CTC posteriors),
``model`` (Conformer + CTC head, save/load), ``train`` (:func:`train_ctc_aligner`), ``run``
(:func:`align_manifest`), ``score`` (:func:`score_alignment`), ``benchmark`` (:func:`benchmark_alignment`).
Kept import-free here so the CLI can read the defaults without loading torch.
"""

DEFAULT_MIN_CONFIDENCE = 0.3  # utterance confidence (0-1) below which an alignment is rejected

"""CTC forced alignment: word times for speech-text pairs that have none (``speechbraid align``).

Modules: ``text`` (transcript -> character targets), ``viterbi`` (forced alignment over CTC posteriors),
``model`` (Conformer + CTC head, save/load), ``train`` (:func:`train_ctc_aligner`), ``run``
(:func:`align_manifest`), ``score`` (:func:`score_alignment`), ``benchmark`` (:func:`benchmark_alignment`).
Kept import-free here so the CLI can read the defaults without loading torch.
"""

# Rejection thresholds, set on held-out espeak-ng speech with the default model (800 steps): utterance
# confidence 0.2 rejected 0.7% of correct transcripts and every swapped-in wrong one; a lowest word
# score of 0.02 rejected 2.3% of correct transcripts and kept under 10% of those with one word replaced.
DEFAULT_MIN_CONFIDENCE = 0.2  # utterance confidence (0-1): exp(mean over characters of mean log posterior)
DEFAULT_MIN_WORD_SCORE = 0.02  # the same per word; a wrong word in the transcript scores far below the rest

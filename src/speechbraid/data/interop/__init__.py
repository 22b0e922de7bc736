"""Import/export between speechbraid manifests and other toolkits' formats.

- lhotse cuts (:mod:`.lhotse_cuts`), NeMo JSONL manifests (:mod:`.nemo`): whole records;
- CTM (:mod:`.ctm`) and Praat TextGrid (:mod:`.textgrid`): word alignments only, attached to a manifest
  by utterance id (:mod:`.attach`).

Exporters that cannot represent a record (a text-only record in lhotse/NeMo, a record without words in
CTM/TextGrid) raise :class:`~speechbraid.errors.InputError`, or append its id to ``skipped`` when the
caller passes a list, so nothing disappears unreported.
"""

from speechbraid.data.interop.attach import AttachReport, attach_alignments
from speechbraid.data.interop.ctm import read_ctm, write_ctm
from speechbraid.data.interop.lhotse_cuts import (
    cut_to_records,
    from_cutset,
    read_cutset,
    record_to_cut,
    to_cutset,
    write_cutset,
)
from speechbraid.data.interop.nemo import read_nemo, write_nemo
from speechbraid.data.interop.textgrid import TextGridDirectory, read_textgrid, write_textgrid, write_textgrids

__all__ = [
    "AttachReport",
    "TextGridDirectory",
    "attach_alignments",
    "cut_to_records",
    "from_cutset",
    "read_ctm",
    "read_cutset",
    "read_nemo",
    "read_textgrid",
    "record_to_cut",
    "to_cutset",
    "write_ctm",
    "write_cutset",
    "write_nemo",
    "write_textgrid",
    "write_textgrids",
]

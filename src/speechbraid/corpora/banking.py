"""Banking domain: customer-service sentences about invented institutions, products and cards.

Names are composed from parts so there are hundreds of them and a split can hold out whole stems:
an institution is a place-like stem plus a kind ("Northbrook Credit Union"), a product a
marketing stem plus a tier ("Clearpath Advantage"), a card a marketing stem plus a card tier
("Brightline Platinum"). Amounts and dates are written in words ("two hundred and fifty dollars",
"March twenty-first") so TTS input and ASR reference agree.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from speechbraid.corpora.templates import SlotFiller, choice_filler, number_words, ordinal_words

_PLACE_HEADS = (
    "North", "South", "East", "West", "Silver", "Oak", "River", "Harbor", "Summit", "Granite", "Maple",
    "Cedar", "Stone", "Lake", "Pine", "Elm", "Willow", "Copper", "Red", "Green", "High", "Fair",
)
_PLACE_TAILS = (
    "brook", "gate", "field", "ridge", "view", "wood", "haven", "ford", "dale", "crest", "port", "vale",
    "mont", "bury",
)
_INSTITUTION_KINDS = (
    "Bank", "Savings Bank", "Credit Union", "Federal Credit Union", "Trust", "National Bank",
    "Community Bank", "Building Society",
)
_BRAND_HEADS = (
    "Clear", "Bright", "Swift", "True", "Prime", "Blue", "Star", "Sun", "Key", "Wise", "Noble", "Bold",
    "Gold", "Tide", "Zen", "Nova",
)
_BRAND_TAILS = ("path", "line", "stone", "way", "mark", "point", "wave", "leaf", "field", "spring", "light",
                "bridge")
_PRODUCT_TIERS = ("Advantage", "Select", "Essentials", "Plus", "Premier", "Everyday", "Flex", "Direct")
_CARD_TIERS = ("Platinum", "Gold", "Cash Rewards", "Travel Rewards", "Signature", "Preferred")
ACCOUNT_TYPES = (
    "checking account", "savings account", "money market account", "certificate of deposit",
    "retirement account", "joint account", "business account", "student account", "home equity line",
    "personal loan", "mortgage", "overdraft line",
)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_PERIODS = ("this month", "last month", "this week", "last week", "yesterday", "today", "this year")
# No acronyms such as "ATM": TTS engines read them unpredictably (the general corpus drops them too).
_CHANNELS = ("online", "in the app", "at the branch", "over the phone", "at a cash machine")


def institution_stems() -> list[str]:
    """Every place-like stem ("Northbrook"), sorted."""
    return sorted(h + t for h in _PLACE_HEADS for t in _PLACE_TAILS)


def brand_stems() -> list[str]:
    """Every marketing stem ("Clearpath"), sorted."""
    return sorted(h + t for h in _BRAND_HEADS for t in _BRAND_TAILS)


def banking_entity_names() -> dict[str, str]:
    """Every name a banking entity slot can hold (all splits' stems), with its entity type."""
    names = dict.fromkeys(ACCOUNT_TYPES, "account_type")
    names.update((f"{stem} {kind}", "institution") for stem in institution_stems() for kind in _INSTITUTION_KINDS)
    names.update((f"{stem} {tier}", "product") for stem in brand_stems() for tier in _PRODUCT_TIERS)
    names.update((f"{stem} {tier}", "card_name") for stem in brand_stems() for tier in _CARD_TIERS)
    return names


def _amount(rng: random.Random) -> tuple[str, str | None]:
    scale = rng.random()
    if scale < 0.35:
        dollars = rng.randint(2, 99)
    elif scale < 0.75:
        dollars = rng.randrange(100, 1000, 5)
    else:
        dollars = rng.randrange(1000, 25000, 50)
    text = f"{number_words(dollars)} dollars"
    if rng.random() < 0.25:
        text += f" and {number_words(rng.randint(2, 99))} cents"
    return text, "amount"


def _date(rng: random.Random) -> tuple[str, str | None]:
    month, day = rng.choice(_MONTHS), ordinal_words(rng.randint(1, 28))
    return (f"{month} {day}" if rng.random() < 0.6 else f"the {day} of {month}"), "date"


def _digits(rng: random.Random) -> tuple[str, str | None]:
    return " ".join(number_words(rng.randint(0, 9)) for _ in range(4)), None


def banking_fillers(institution: Sequence[str], brand: Sequence[str]) -> dict[str, SlotFiller]:
    """Slot fillers for :data:`BANKING_FRAMES`; names are built from one split's stems."""
    institution, brand = tuple(institution), tuple(brand)

    def institution_name(rng: random.Random) -> tuple[str, str | None]:
        return f"{rng.choice(institution)} {rng.choice(_INSTITUTION_KINDS)}", "institution"

    def product(rng: random.Random) -> tuple[str, str | None]:
        return f"{rng.choice(brand)} {rng.choice(_PRODUCT_TIERS)}", "product"

    def card(rng: random.Random) -> tuple[str, str | None]:
        return f"{rng.choice(brand)} {rng.choice(_CARD_TIERS)}", "card_name"

    return {
        "institution": institution_name,
        "product": product,
        "card": card,
        "account_type": choice_filler(ACCOUNT_TYPES, "account_type"),
        "amount": _amount,
        "date": _date,
        "period": choice_filler(_PERIODS),
        "channel": choice_filler(_CHANNELS),
        "digits": _digits,
    }


BANKING_FRAMES = (
    "I would like to transfer {amount} from my {account_type} to my {account_type2}.",
    "Please send {amount} to my {account_type} at {institution} on {date}.",
    "What is the interest rate on the {product} {account_type}?",
    "I want to open a {product} {account_type} with {institution}.",
    "My {card} card was declined {channel} {period}.",
    "Can you raise the limit on my {card} card to {amount}?",
    "There is a charge of {amount} on my {card} card that I do not recognise.",
    "The payment of {amount} to {institution} is due on {date}.",
    "I deposited {amount} into my {account_type} {period}.",
    "How do I close my {account_type} at {institution}?",
    "{institution} charged me {amount} in overdraft fees.",
    "Please cancel my {card} card; it was stolen on {date}.",
    "Is the {product} {account_type} free of monthly fees?",
    "I need to withdraw {amount} {channel} before {date}.",
    "My balance on the {card} card is {amount}.",
    "Does {institution} offer the {product} plan for students?",
    "I moved my {account_type} from {institution} to {institution2}.",
    "Set up a monthly transfer of {amount} into the {product} {account_type}.",
    "When will the {amount} refund reach my {card} card?",
    "The {product} {account_type} pays a bonus if you save {amount} by {date}.",
    "My {account_type} ends in {digits}.",
    "Can I apply for the {card} card {channel}?",
    "I was charged {amount} twice by {institution} {period}.",
    "Please schedule a payment of {amount} on {date} from my {account_type}.",
    "What is the annual fee for the {card} card?",
    "Your loan from {institution} of {amount} was approved on {date}.",
    "I would like to switch from the {product} to the {product2} plan.",
    "Does the {card} card earn points at {institution}?",
    "Your {account_type} was credited with {amount} on {date}.",
    "The minimum payment on your {card} card is {amount}.",
    "We have frozen the {card} card ending in {digits}.",
    "How much do I need to open a {product} {account_type}?",
    "Wire {amount} to {institution} by {date}, please.",
    "My salary of {amount} goes into my {account_type} at {institution}.",
    "Why was my {card} card payment of {amount} refused?",
    "Which branch of {institution} is open on Saturdays?",
    "The {product} {account_type} requires a balance of {amount}.",
    "I lost my {card} card {period}.",
    "Move {amount} from savings to checking on {date}.",
    "Can {institution} waive the {amount} late fee?",
)

"""Engineered brand / quantity / IPQ features from the ``catalog_items`` table, and leak-free
target encoding.

All functions are pure and Dagster-free. The heuristics were written against the bundled real
sample (``data/sample/*.csv``, 11,697 catalog strings): unit spellings seen there ("Ounce",
"Fl Oz", "Count", "ounce", "oz", "None", "pound", "Fluid Ounce", "ct", "gram", "Fl. Oz", "Liters",
"millilitre", "Each", "Jar", ...), pack phrasings ("(Pack of 7)", "18 pack", "-- 6 per case.",
"(pk of 6)", "Case of six", "2PC") and item-name shapes ("FRONTIER Organic Bulk Garlic Flakes, 1 LB",
"Keto Chianti Wine Pasta Sauce by Yo Mama's Foods, ...").
"""

import math
import re
import unicodedata

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------------

# Conversion constants, exact by definition: NIST Handbook 44 (2024), Appendix C "General Tables
# of Units of Measurement", and NIST SP 811 (2008) Appendix B. US customary volume units.
GRAMS_PER_OUNCE = 28.349523125  # avoirdupois ounce
GRAMS_PER_POUND = 453.59237  # avoirdupois pound
ML_PER_FL_OUNCE = 29.5735295625  # US fluid ounce
ML_PER_GALLON = 3785.411784  # US liquid gallon
ML_PER_QUART = 946.352946  # US liquid quart
ML_PER_PINT = 473.176473  # US liquid pint
ML_PER_CUP = 236.5882365  # US customary cup (8 fl oz)

_MASS = {
    "g": 1.0,
    "gr": 1.0,
    "gm": 1.0,
    "gms": 1.0,
    "gram": 1.0,
    "grams": 1.0,
    "gramm": 1.0,
    "gramme": 1.0,
    "grammes": 1.0,
    "kg": 1000.0,
    "kgs": 1000.0,
    "kilo": 1000.0,
    "kilos": 1000.0,
    "kilogram": 1000.0,
    "kilograms": 1000.0,
    "mg": 1e-3,
    "milligram": 1e-3,
    "milligrams": 1e-3,
    "oz": GRAMS_PER_OUNCE,
    "ozs": GRAMS_PER_OUNCE,
    "ounce": GRAMS_PER_OUNCE,
    "ounces": GRAMS_PER_OUNCE,
    "onz": GRAMS_PER_OUNCE,
    "net wt oz": GRAMS_PER_OUNCE,
    "lb": GRAMS_PER_POUND,
    "lbs": GRAMS_PER_POUND,
    "pound": GRAMS_PER_POUND,
    "pounds": GRAMS_PER_POUND,
}
_VOLUME = {
    "ml": 1.0,
    "millilitre": 1.0,
    "milliliter": 1.0,
    "millilitres": 1.0,
    "milliliters": 1.0,
    "cl": 10.0,
    "centiliter": 10.0,
    "centilitre": 10.0,
    "l": 1000.0,
    "lt": 1000.0,
    "ltr": 1000.0,
    "liter": 1000.0,
    "litre": 1000.0,
    "liters": 1000.0,
    "litres": 1000.0,
    "fl oz": ML_PER_FL_OUNCE,
    "floz": ML_PER_FL_OUNCE,
    "fluid ounce": ML_PER_FL_OUNCE,
    "fluid ounces": ML_PER_FL_OUNCE,
    "fl ounce": ML_PER_FL_OUNCE,
    "fl ounces": ML_PER_FL_OUNCE,
    "fl oz s": ML_PER_FL_OUNCE,
    "gallon": ML_PER_GALLON,
    "gallons": ML_PER_GALLON,
    "gal": ML_PER_GALLON,
    "quart": ML_PER_QUART,
    "quarts": ML_PER_QUART,
    "qt": ML_PER_QUART,
    "pint": ML_PER_PINT,
    "pints": ML_PER_PINT,
    "pt": ML_PER_PINT,
    "cup": ML_PER_CUP,
    "cups": ML_PER_CUP,
}
_COUNT = {
    "count",
    "counts",
    "ct",
    "cnt",
    "each",
    "ea",
    "piece",
    "pieces",
    "pc",
    "pcs",
    "pack",
    "packs",
    "pk",
    "unit",
    "units",
    "can",
    "cans",
    "jar",
    "jars",
    "bottle",
    "bottles",
    "box",
    "boxes",
    "packet",
    "packets",
    "bag",
    "bags",
    "tea bags",
    "tea bag",
    "pouch",
    "pouches",
    "pod",
    "pods",
    "capsule",
    "capsules",
    "bar",
    "bars",
    "case",
    "cases",
    "carton",
    "cartons",
    "roll",
    "rolls",
    "sheet",
    "sheets",
    "serving",
    "servings",
    "stick",
    "sticks",
    "tablet",
    "tablets",
    "k cups",
    "k cup",
    "kcups",
    "dozen",
}
_OTHER = {
    "inch",
    "inches",
    "in",
    "foot",
    "feet",
    "ft",
    "cm",
    "mm",
    "m",
    "meter",
    "meters",
    "metre",
    "yard",
    "yards",
    "sq ft",
    "square feet",
    "square foot",
    "sq in",
}
_NONE = {"", "none", "nan", "null", "n/a", "na"}


def _unit_key(unit: str) -> str:
    u = unicodedata.normalize("NFKC", str(unit)).lower()
    u = re.sub(r"[.\-_/()]", " ", u)
    return re.sub(r"\s+", " ", u).strip()


def normalise_quantity(value: float, unit: str) -> tuple[float, str]:
    """Convert an amount in a catalog unit into a canonical amount and unit family.

    Families and canonical units: mass -> grams ``"g"``; volume -> millilitres ``"ml"``;
    count-like units (Count, ct, each, pieces, Pack, Can, Jar, Bottle, Box, Tea Bags, ...) ->
    ``"count"`` (value unchanged, "dozen" x12); length/area (inch, cm, ft, sq ft) -> ``"other"``
    (value unchanged). Unit spelling is case-, dot- and space-insensitive ("Fl. Oz", "FL OZ",
    "fl oz", "Fluid Ounce" are all US fluid ounces; plain "Ounce"/"oz" is the avoirdupois mass
    ounce, as the competition's "Value/Unit" fields use it).

    Constants (exact, NIST Handbook 44 Appendix C / NIST SP 811 Appendix B): 1 oz = 28.349523125 g,
    1 lb = 453.59237 g, 1 US fl oz = 29.5735295625 ml, 1 US gal = 3785.411784 ml,
    1 qt = 946.352946 ml, 1 pt = 473.176473 ml, 1 cup = 236.5882365 ml.

    Args:
        value: amount in ``unit`` (float; NaN, non-finite or <= 0 gives a NaN amount).
        unit: unit as written in the catalog.

    Returns:
        ``(amount, family)`` with amount float (NaN when unknown) and family one of
        ``"g"``, ``"ml"``, ``"count"``, ``"other"``, ``"unknown"``. "None"/empty/unrecognised
        units give ``(nan, "unknown")``.
    """
    key = _unit_key(unit) if unit is not None and not (isinstance(unit, float) and math.isnan(unit)) else ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v) or v <= 0:
        v = float("nan")
    if key in _MASS:
        return v * _MASS[key], "g"
    if key in _VOLUME:
        return v * _VOLUME[key], "ml"
    if key in _COUNT:
        return (v * 12.0 if key == "dozen" else v), "count"
    if key in _OTHER:
        return v, "other"
    return float("nan"), "unknown"


# number + unit in free text: "4.5 Oz", "500g", "1 LB", "16 ounces", "12 fl oz", "1.62fl.oz",
# "11.5-Ounce", "2.27kg", "113G", "1 gallon", "32 fl. oz."
_NUM = r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_TEXT_UNITS = (
    r"fl\.?\s*oz\.?|fl\.?\s*ounces?|fluid\s*ounces?|ounces?|oz|onz|"
    r"pounds?|lbs?|kilograms?|kgs?|grams?|gms?|gr|g|milligrams?|mg|"
    r"millilit(?:er|re)s?|ml|cl|lit(?:er|re)s?|ltr|l|gallons?|gal|quarts?|qt|pints?"
)
_QTY_RE = re.compile(_NUM + r"\s*-?\s*(?P<unit>" + _TEXT_UNITS + r")(?![a-z])", re.IGNORECASE)


def quantities_from_text(text: str) -> dict:
    """Find mass/volume quantities ("4.5 Oz", "500g", "1 LB", "16 ounces", "12 fl oz") in free text.

    Used on item names and on OCR text. The **first** mention is reported (in item names it is
    normally the per-unit size written before a pack phrase: "0.8oz (Pack of 24)"); the largest
    canonical amount of the same family as the first mention is reported too.

    Args:
        text: any string (None / NaN treated as "").

    Returns:
        dict with ``value`` (float, as written, NaN if none), ``unit`` (str as written, "" if
        none), ``canonical`` (float, grams or millilitres; NaN if none), ``family`` ("g", "ml" or
        "unknown"), ``max_canonical`` (float, largest amount of the first mention's family; NaN
        if none), ``n_mentions`` (int, number of mass/volume mentions found).
    """
    if not isinstance(text, str):
        text = ""
    found: list[tuple[float, str, float, str]] = []
    for m in _QTY_RE.finditer(text):
        num = float(m.group("num").replace(",", ""))
        unit = m.group("unit")
        amount, family = normalise_quantity(num, unit)
        if family in ("g", "ml") and math.isfinite(amount):
            found.append((num, unit, amount, family))
    if not found:
        return {
            "value": float("nan"),
            "unit": "",
            "canonical": float("nan"),
            "family": "unknown",
            "max_canonical": float("nan"),
            "n_mentions": 0,
        }
    num, unit, amount, family = found[0]
    return {
        "value": num,
        "unit": unit,
        "canonical": amount,
        "family": family,
        "max_canonical": max(a for _, _, a, f in found if f == family),
        "n_mentions": len(found),
    }


# --------------------------------------------------------------------------------------------
# pack count
# --------------------------------------------------------------------------------------------

_WORD_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "dozen": 12,
    "twenty": 20,
    "twenty four": 24,
    "twenty-four": 24,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
}
_N = r"(\d+|" + "|".join(sorted(_WORD_NUMBERS, key=len, reverse=True)) + r")"
_PACK_WORD = r"(?:pack|pk|pck|case|set|box|bundle|carton|lot|tray)"
# Outer pack multiplicity, strongest first.
_PACK_PATTERNS = [
    re.compile(r"\b" + _PACK_WORD + r"s?\s+of\s+" + _N + r"\b", re.I),  # Pack of 6 / Case of six
    re.compile(r"\b" + _N + r"\s*-?\s*(?:packs?|pk|pck)\b", re.I),  # 6 Pack, 6-pack, 18pk
    re.compile(r"\b" + _N + r"\s+per\s+(?:case|pack|box|carton)\b", re.I),  # -- 6 per case
    re.compile(r"\b" + _N + r"\s*(?:x|×)\s*\d", re.I),  # 2 x 500g
    re.compile(r"\b" + _N + r"\s*-?\s*(?:pc|pcs)\b", re.I),  # 2PC
]
# Item counts, used only when no pack phrase is present.
_COUNT_PATTERNS = [
    re.compile(r"\b" + _N + r"\s*-?\s*(?:count|ct|cnt)\b", re.I),  # 12 Count, 12 ct
    re.compile(
        r"\b" + _N + r"\s*-?\s*(?:cans|bottles|jars|bags|boxes|pouches|packets|pods|k-?cups|"
        r"tea\s*bags|capsules|bars|sticks|pieces|cartons|tins)\b",
        re.I,
    ),
]
_MAX_PACK = 10_000.0


def _to_count(token: str) -> float:
    t = token.lower()
    return float(_WORD_NUMBERS[t]) if t in _WORD_NUMBERS else float(t)


def parse_pack_count(text: str) -> float:
    """Number of packs / units the listing sells, from phrases in ``text`` (e.g. an item name).

    Recognised (case-insensitive): "Pack of 6", "(Pack of 7)", "pk of 6", "Case of 24", "Case of six",
    "Set of 3", "6 Pack", "6-pack", "18pk", "6 per case", "2 x 500g", "2PC"; failing those the item
    counts "12 Count", "12 ct", "24 Cans", "100 Tea Bags", "10 pods". Pack phrases win over counts
    ("12 Count, Pack of 2" -> 2, the count being the per-pack content); within a kind the first
    match wins. Numbers outside [1, 10000] are ignored.

    Args:
        text: free text (None / NaN treated as "").

    Returns:
        float >= 1.0; 1.0 when nothing is found.
    """
    if not isinstance(text, str) or not text:
        return 1.0
    for patterns in (_PACK_PATTERNS, _COUNT_PATTERNS):
        for pat in patterns:
            for m in pat.finditer(text):
                n = _to_count(m.group(1))
                if 1.0 <= n <= _MAX_PACK:
                    return n
    return 1.0


# --------------------------------------------------------------------------------------------
# brand
# --------------------------------------------------------------------------------------------

_MARKS = re.compile(r"[™®©℠]|\((?:tm|r|c)\)", re.I)
# Words that start the product description rather than the brand ("FRONTIER Organic ...",
# "Starbucks Dark Roast ..."): a brand stops before them. Drawn from the sample's item names.
_BRAND_STOP = {
    "organic",
    "natural",
    "all",
    "premium",
    "gourmet",
    "original",
    "classic",
    "pure",
    "raw",
    "whole",
    "ground",
    "dark",
    "milk",
    "white",
    "black",
    "green",
    "red",
    "sweet",
    "hot",
    "spicy",
    "mild",
    "medium",
    "extra",
    "fresh",
    "dried",
    "roasted",
    "salted",
    "unsalted",
    "gluten",
    "sugar",
    "non",
    "vegan",
    "kosher",
    "keto",
    "low",
    "zero",
    "diet",
    "decaf",
    "instant",
    "bulk",
    "mini",
    "large",
    "small",
    "assorted",
    "variety",
    "mixed",
    "flavored",
    "unsweetened",
    "coffee",
    "tea",
    "chocolate",
    "candy",
    "candies",
    "sauce",
    "seasoning",
    "spice",
    "spices",
    "snack",
    "snacks",
    "chips",
    "cookies",
    "crackers",
    "juice",
    "water",
    "soda",
    "drink",
    "energy",
    "protein",
    "vitamin",
    "oil",
    "salt",
    "pepper",
    "honey",
    "syrup",
    "powder",
    "flour",
    "rice",
    "pasta",
    "beans",
    "soup",
    "nuts",
    "k-cup",
    "k-cups",
    "pods",
    "bars",
    "bar",
    "gum",
    "the",
    "new",
    "best",
    "authentic",
    "traditional",
    "imported",
    "real",
    "fine",
    "pack",
    "loose",
    "leaf",
    "vegetable",
    "chicken",
    "beef",
    "cheese",
    "cheddar",
    "butter",
    "cream",
}
#: Joining words ("Food to Live", "Prince of Peace") that end a brand after its first token, in any case.
_BRAND_CONNECTORS = frozenset({"of", "to", "and", "in", "with", "for", "on", "from", "a", "an", "at", "by"})
_BRAND_BREAK = re.compile(r"[,|(\[:;/]|\s[-–—]\s|\s[-–—]$")
_BY_RE = re.compile(r"\b(?i:by)\s+((?:[A-Z][\w'’&.\-]*|&)(?:\s+(?:[A-Z][\w'’&.\-]*|&|(?i:of))){0,3})")
_BRAND_FIELD_RE = re.compile(r"(?:^|\n)\s*(?:bullet point\s*\d*\s*:\s*)?brand\s*:\s*([^\n]*)", re.I)


def _normalise_brand(text: str) -> str:
    t = unicodedata.normalize("NFKC", _MARKS.sub("", text)).lower()
    t = t.replace("’", "").replace("'", "").replace("`", "")
    t = re.sub(r"[^\w&+ ]+", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\s+(?:inc|llc|ltd|co|corp|company|brand|brands)$", "", t).strip()
    return t or "unknown"


def canonical_case(text: str) -> str:
    """``text`` with every whitespace token capitalised (``"FRONTIER organic"`` -> ``"Frontier Organic"``).

    The brand heuristics read capitalisation; they read it from this form so that a listing written
    in capitals or in lower case gets the same brand (the served price must not depend on case:
    ``pricing_tests/model/test_behaviour.py``).
    """
    return " ".join(t[:1].upper() + t[1:].lower() for t in text.split(" "))


def _brand_from_field(bullets: str) -> str | None:
    m = _BRAND_FIELD_RE.search(bullets or "")
    if not m:
        return None
    value = canonical_case(re.split(r"\s+\w+\s*:\s", m.group(1))[0].strip().rstrip("."))
    words = value.split()
    # Real sample: most "Brand:" bullets are prose ("Made by Nestle, a trusted brand ...");
    # only short capitalised values ("Brand: Green Mountain") are names.
    if 1 <= len(words) <= 3 and all(w[:1].isupper() or w == "&" for w in words):
        return value
    return None


def extract_brand(item_name: str, bullets: str = "") -> str:
    """Heuristic brand of a listing, lower-cased and normalised.

    Order: a short "Brand: X" field in ``bullets``; "... by X" in the name ("Pasta Sauce by Yo
    Mama's Foods" -> "yo mamas foods"); otherwise the leading capitalised tokens of the name, at
    most two, stopping at punctuation (",", "|", "(", " - "), a token with a digit, or a
    descriptor/product word ("FRONTIER Organic ..." -> "frontier", "Starbucks Dark Roast" ->
    "starbucks"). A possessive first token is a brand by itself ("Annie's Organic" -> "annies").
    Case-invariant: the rules read :func:`canonical_case` of the name and of the field, so the
    same listing in capitals or lower case gets the same brand.
    Normalisation: ™/®/© removed, apostrophes dropped, punctuation to spaces, trailing
    "Inc/LLC/Co/Company/Brand" removed.

    Args:
        item_name: the item name (str; None/NaN -> "unknown").
        bullets: optional bullet text searched for a "Brand:" field.

    Returns:
        str, e.g. "chex mix", "frontier", "annies"; ``"unknown"`` when nothing brand-like is found.
    """
    field = _brand_from_field(bullets) if isinstance(bullets, str) else None
    if field:
        return _normalise_brand(field)
    if not isinstance(item_name, str) or not item_name.strip():
        return "unknown"
    name = canonical_case(re.sub(r"\s+", " ", _MARKS.sub("", item_name)).strip())
    m = _BY_RE.search(name)
    if m and m.start() > 0:
        return _normalise_brand(m.group(1))
    head = _BRAND_BREAK.split(name, maxsplit=1)[0]
    tokens: list[str] = []
    for tok in head.split():
        core = tok.strip("\"'“”.!")
        if not core or any(ch.isdigit() for ch in core):
            break
        if not (core[0].isupper() or core[0] == "&"):
            break
        if core.lower() in _BRAND_STOP and not (not tokens and core.lower() == "the"):
            break
        if tokens and core.lower() in _BRAND_CONNECTORS:  # "Food to Live", "Prince of Peace"
            break
        tokens.append(core)
        if re.search(r"['’]s$", core, re.I):  # "Annie's", "REESE'S", "Newman's"
            break
        if len(tokens) >= (3 if tokens[0].lower() == "the" or tokens[-1] == "&" else 2):
            break
    if tokens and tokens[0].lower() == "the":
        tokens = tokens if len(tokens) > 1 else []
    return _normalise_brand(" ".join(tokens)) if tokens else "unknown"


# --------------------------------------------------------------------------------------------
# category and flags
# --------------------------------------------------------------------------------------------

# Ordered keyword rules on the lower-cased item name; first match wins. Built by reading the
# sample's most frequent item-name words (tea 1.4k, chocolate, coffee, candy, sauce, snack,
# seasoning, ...). Non-grocery words come first so "Dog Treats" is pet, not snacks.
CATEGORY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pet", ("dog", "cat food", "cat treat", "puppy", "kitten", "pet", "bird seed", "birdseed")),
    (
        "beauty",
        (
            "shampoo",
            "conditioner",
            "lotion",
            "makeup",
            "foundation",
            "skin",
            "lip balm",
            "cosmetic",
            "perfume",
            "deodorant",
            "hair",
            "nail",
        ),
    ),
    (
        "household",
        (
            "candle",
            "cleaner",
            "detergent",
            "paper towel",
            "trash",
            "rug",
            "napkin",
            "plates",
            "cups and",
            "aluminum foil",
            "dish soap",
            "sponge",
            "storage",
        ),
    ),
    (
        "health",
        (
            "vitamin",
            "supplement",
            "capsule",
            "probiotic",
            "collagen",
            "electrolyte",
            "protein powder",
            "whey",
            "tablets",
            "immune",
            "melatonin",
        ),
    ),
    (
        "coffee_tea",
        (
            "coffee",
            "espresso",
            "k-cup",
            "k cup",
            "kcup",
            "keurig",
            "tea",
            "chai",
            "matcha",
            "rooibos",
            "yerba",
            "latte",
            "cappuccino",
            "mate",
        ),
    ),
    (
        "beverage",
        (
            "water",
            "juice",
            "soda",
            "drink",
            "beverage",
            "cola",
            "lemonade",
            "seltzer",
            "sparkling",
            "kombucha",
            "wine",
            "beer",
            "energy drink",
            "smoothie",
            "coconut milk",
        ),
    ),
    (
        "candy",
        (
            "candy",
            "candies",
            "chocolate",
            "gummy",
            "gummies",
            "licorice",
            "lollipop",
            "mints",
            "caramel",
            "marshmallow",
            "jelly bean",
            "toffee",
            "fudge",
            "truffle",
            "gum",
            "jawbreaker",
            "taffy",
            "m&m",
        ),
    ),
    (
        "snacks",
        (
            "chips",
            "crisps",
            "pretzel",
            "popcorn",
            "cracker",
            "cookie",
            "snack",
            "jerky",
            "nuts",
            "almond",
            "pistachio",
            "cashew",
            "peanut",
            "trail mix",
            "bar",
            "granola",
            "pork rind",
            "biscuit",
            "wafer",
            "seeds",
        ),
    ),
    (
        "baking",
        (
            "flour",
            "baking",
            "cake",
            "frosting",
            "sprinkles",
            "yeast",
            "starch",
            "food coloring",
            "extract",
            "sugar",
            "cocoa",
            "icing",
            "fondant",
            "brownie",
        ),
    ),
    (
        "spices",
        (
            "spice",
            "seasoning",
            "salt",
            "pepper",
            "paprika",
            "cinnamon",
            "garlic",
            "herb",
            "curry",
            "cumin",
            "oregano",
            "turmeric",
            "rub",
            "masala",
            "chili powder",
            "bouillon",
            "vanilla bean",
        ),
    ),
    (
        "sauces",
        (
            "sauce",
            "dressing",
            "ketchup",
            "mustard",
            "mayo",
            "salsa",
            "vinegar",
            "oil",
            "syrup",
            "honey",
            "jam",
            "jelly",
            "preserves",
            "spread",
            "marinade",
            "dip",
            "butter",
            "gravy",
            "paste",
            "pesto",
        ),
    ),
    (
        "pantry",
        (
            "pasta",
            "rice",
            "noodle",
            "beans",
            "soup",
            "cereal",
            "oatmeal",
            "oats",
            "canned",
            "tuna",
            "quinoa",
            "grain",
            "lentil",
            "ramen",
            "broth",
            "macaroni",
            "meal",
            "fruit",
            "vegetable",
        ),
    ),
)
CATEGORIES: tuple[str, ...] = tuple(c for c, _ in CATEGORY_RULES) + ("other",)
# Whole words (plural "s"/"es" allowed): "cola" must not match "chocolate".
_CATEGORY_RES = tuple(
    (cat, re.compile(r"\b(?:" + "|".join(re.escape(w.strip()) for w in words) + r")(?:s|es)?\b", re.I))
    for cat, words in CATEGORY_RULES
)


def categorise(item_name: str) -> str:
    """Coarse category of an item name by :data:`CATEGORY_RULES` (first match wins).

    Returns one of :data:`CATEGORIES`; ``"other"`` when no keyword matches or the name is empty.
    """
    if not isinstance(item_name, str):
        return "other"
    for cat, pat in _CATEGORY_RES:
        if pat.search(item_name):
            return cat
    return "other"


_FLAGS: dict[str, re.Pattern] = {
    "is_organic": re.compile(r"\borganic\b", re.I),
    "is_gluten_free": re.compile(r"\bgluten[\s-]*free\b|\bgf\b", re.I),
    "is_sugar_free": re.compile(r"\b(?:sugar[\s-]*free|no sugar added|zero sugar)\b", re.I),
    "is_bulk": re.compile(r"\b(?:bulk|wholesale|food\s*service|foodservice|case of|per case)\b", re.I),
    "is_variety_pack": re.compile(r"\b(?:variety|assorted|assortment|sampler|mixed flavors?)\b", re.I),
    "is_gift": re.compile(r"\b(?:gift|basket|holiday|christmas|valentine|birthday)\b", re.I),
    "is_kosher": re.compile(r"\bkosher\b", re.I),
}

#: The pack-quantity columns of :data:`NUMERIC_FEATURES` (one fact: how much is in the pack).
QUANTITY_FEATURES: tuple[str, ...] = (
    "pack_count",  # outer pack multiplicity from the item name (parse_pack_count), >= 1
    "ipq_value",  # catalog "Value:" as written (NaN if absent)
    "qty_canonical",  # Value in canonical units: grams / ml / count (NaN if unit unknown)
    "qty_per_pack",  # qty_canonical / pack_count
    "log_qty",  # log1p(qty_canonical)
    "log_grams",  # log_qty where the unit family is "g", else NaN (log_qty mixes families:
    "log_ml",  # on the sample its Spearman rho with log price is -0.01 overall but 0.25 for
    "log_count",  # grams, 0.18 for ml, 0.07 for counts)
    "name_qty",  # first mass/volume in the item name, grams or ml (NaN if none)
    "name_qty_is_volume",  # 1.0 if name_qty is in ml, 0.0 if grams, NaN if none
)
#: The listing-length columns of :data:`NUMERIC_FEATURES` (one fact: how much the listing says).
LENGTH_FEATURES: tuple[str, ...] = (
    "text_chars",  # characters of the product text (lib.catalog.parsing.parse_catalog; no Value/Unit line)
    "text_words",  # whitespace tokens of that text
    "n_bullets",  # number of bullet points
    "has_description",  # 1.0 / 0.0
    "name_chars",  # characters of the item name
    "digits_in_name",  # count of digit characters in the item name
)
NUMERIC_FEATURES: tuple[str, ...] = (
    *QUANTITY_FEATURES,
    *LENGTH_FEATURES,
    *_FLAGS.keys(),  # keyword flags on item name + bullets, 1.0 / 0.0
)
"""Numeric (float32) columns of :func:`build_listing_features`. Categorical string columns:
``brand``, ``category``, ``ipq_unit_family``."""

#: Columns of :data:`NUMERIC_FEATURES` that grow with the catalog's ``Value`` (the item pack
#: quantity, IPQ) when nothing else in the listing changes. The price models are constrained to be
#: non-decreasing in them (``lib.models.lightgbm_regression.monotone_constraints``), so more units in a pack
#: never price the same product lower. ``pack_count`` (read from the name) is not among them: a
#: bigger pack count with the same Value means smaller units (``qty_per_pack`` falls).
IPQ_INCREASING_FEATURES: tuple[str, ...] = (
    "ipq_value",
    "qty_canonical",
    "qty_per_pack",
    "log_qty",
    "log_grams",
    "log_ml",
    "log_count",
)


def build_listing_features(items: pd.DataFrame) -> pd.DataFrame:
    """Engineered features from the ``catalog_items`` table (see ``lib.catalog.parsing.parse_catalog``).

    Args:
        items: DataFrame with columns ``sample_id, item_name, bullets, n_bullets, description,
            ipq_value, ipq_unit, text_chars, text_words, has_description``.

    Returns:
        One row per input row (same order, ``sample_id`` as str), columns ``sample_id``,
        ``brand`` (str, :func:`extract_brand`), ``category`` (str, :func:`categorise`),
        ``ipq_unit_family`` (str: g / ml / count / other / unknown) and every column of
        :data:`NUMERIC_FEATURES` as float32.

    Raises:
        KeyError: a required column is missing (named in the message).
        ValueError: duplicate sample_id values (named, first five).
    """
    required = (
        "sample_id",
        "item_name",
        "bullets",
        "n_bullets",
        "ipq_value",
        "ipq_unit",
        "text_chars",
        "text_words",
        "has_description",
    )
    missing = [c for c in required if c not in items.columns]
    if missing:
        raise KeyError(f"build_listing_features: input lacks columns {missing}")
    sid = items["sample_id"].astype(str)
    dups = sid[sid.duplicated()].unique().tolist()
    if dups:
        raise ValueError(f"build_listing_features: duplicate sample_id values {dups[:5]}")

    names = items["item_name"].fillna("").astype(str).tolist()
    bullets = items["bullets"].fillna("").astype(str).tolist()
    brand = [extract_brand(n, b) for n, b in zip(names, bullets)]
    category = [categorise(n) for n in names]
    pack = np.array([parse_pack_count(n) for n in names], dtype=np.float64)
    ipq_value = pd.to_numeric(items["ipq_value"], errors="coerce").to_numpy(dtype=np.float64)
    canon = [normalise_quantity(v, u) for v, u in zip(ipq_value, items["ipq_unit"].tolist())]
    qty = np.array([c[0] for c in canon], dtype=np.float64)
    family = [c[1] for c in canon]
    name_q = [quantities_from_text(n) for n in names]
    name_qty = np.array([q["canonical"] for q in name_q], dtype=np.float64)
    name_vol = np.array([np.nan if q["family"] == "unknown" else float(q["family"] == "ml") for q in name_q])
    flag_text = [n + "\n" + b for n, b in zip(names, bullets)]

    out = pd.DataFrame(
        {
            "sample_id": sid.to_numpy(dtype=object),
            "brand": brand,
            "category": category,
            "ipq_unit_family": family,
            "pack_count": pack,
            "ipq_value": ipq_value,
            "qty_canonical": qty,
            "qty_per_pack": qty / pack,
            "log_qty": np.log1p(qty),
            **{
                f"log_{name}": np.where(np.array(family) == fam, np.log1p(qty), np.nan)
                for name, fam in (("grams", "g"), ("ml", "ml"), ("count", "count"))
            },
            "name_qty": name_qty,
            "name_qty_is_volume": name_vol,
            "text_chars": items["text_chars"].to_numpy(dtype=np.float64),
            "text_words": items["text_words"].to_numpy(dtype=np.float64),
            "n_bullets": items["n_bullets"].to_numpy(dtype=np.float64),
            "has_description": items["has_description"].astype(bool).to_numpy(dtype=np.float64),
            "name_chars": np.array([len(n) for n in names], dtype=np.float64),
            "digits_in_name": np.array([sum(ch.isdigit() for ch in n) for n in names], dtype=np.float64),
            **{k: np.array([1.0 if pat.search(t) else 0.0 for t in flag_text]) for k, pat in _FLAGS.items()},
        }
    )
    for col in NUMERIC_FEATURES:
        out[col] = out[col].astype(np.float32)
    return out

"""The words a synthetic coin is made of: figures, attributes, positions, marks, names.

Description phrases are chosen so that the paper's class-merging rule (word edit distance
of the reverse descriptions < 2) never merges sibling types by accident: every attribute
is a two-word phrase with its own adjective, and every field position phrase differs
from the others in at least two words.
"""

from __future__ import annotations

__all__ = [
    "FIGURES", "HUMAN_KINDS", "ATTRIBUTES", "HAND", "STAFF", "FIELD", "SKY", "FIELD_POSITIONS",
    "GROUND_POSITIONS", "EXERGUES", "CROWNS", "BUSTS", "BEARDS", "HAIRS", "NAME_STEMS",
    "NAME_ENDINGS", "ROMAN",
]

# figure -> (kind, head style, poses, legends). kind: goddess (long robe), male (short tunic),
# eagle, pegasus, altar.
FIGURES: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "Minerva": ("goddess", "helmet", ("standing",), ("VIRTVS AVG", "MINERVA AVG", "VIRTVS AVGVSTI")),
    "Pax": ("goddess", "bare", ("standing", "seated"), ("PAX AVG", "PAX AETERNA", "PAX PVBLICA")),
    "Fortuna": ("goddess", "bare", ("standing", "seated"), ("FORTVNA REDVX", "FORTVNA AVG")),
    "Concordia": ("goddess", "bare", ("standing", "seated"), ("CONCORDIA MILITVM", "CONCORDIA AVG")),
    "Salus": ("goddess", "bare", ("standing", "seated"), ("SALVS AVG", "SALVS PVBLICA")),
    "Aequitas": ("goddess", "bare", ("standing",), ("AEQVITAS AVG", "AEQVITAS AVGG")),
    "Spes": ("goddess", "bare", ("walking",), ("SPES PVBLICA", "SPES AVG")),
    "Victory": ("goddess", "wings", ("walking", "standing"), ("VICTORIA AVG", "VICTORIA GERM")),
    "Roma": ("goddess", "helmet", ("seated", "standing"), ("ROMAE AETERNAE", "ROMA AETERNA")),
    "Mars": ("male", "helmet", ("standing", "walking"), ("MARTI PACIF", "VIRTVS MILITVM")),
    "Sol": ("male", "rays", ("standing", "walking"), ("ORIENS AVG", "SOLI INVICTO")),
    "Jupiter": ("male", "bare", ("standing", "seated"), ("IOVI CONSERVAT", "IOVI STATORI")),
    "Emperor": ("male", "wreath", ("standing",), ("VIRTVS AVG", "PROVIDENT AVG")),
    "Genius": ("male", "modius", ("standing",), ("GENIO POP ROM", "GENIVS EXERCITI")),
    "Eagle": ("eagle", "", ("standing",), ("CONSECRATIO", "AETERNITAS AVG")),
    "Pegasus": ("pegasus", "", ("prancing",), ("SOLI CONS AVG", "VIRTVS AVG")),
    "Altar": ("altar", "", ("lighted",), ("CONSECRATIO", "VOTIS DECENNALIBVS")),
}
HUMAN_KINDS = ("goddess", "male")

# attribute -> (phrase used in descriptions, slot). Phrases are two words with distinct
# adjectives so that swapping one attribute changes two words of the description.
ATTRIBUTES: dict[str, tuple[str, str]] = {
    # extended hand
    "branch": ("olive branch", "hand"),
    "patera": ("sacrificial patera", "hand"),
    "globe": ("small globe", "hand"),
    "wreath": ("laurel wreath", "hand"),
    "apple": ("golden apple", "hand"),
    "scales": ("bronze scales", "hand"),
    # held upright in the other arm
    "spear": ("vertical spear", "staff"),
    "sceptre": ("long sceptre", "staff"),
    "cornucopia": ("full cornucopiae", "staff"),
    "standard": ("military standard", "staff"),
    "rudder": ("ship rudder", "staff"),
    # in the field
    "star": ("eight-rayed star", "field"),
    "owl": ("perched owl", "field"),
    "shield": ("round shield", "field"),
    "crescent": ("crescent moon", "field"),
    "column": ("low column", "field"),
}
HAND = tuple(a for a, (_, s) in ATTRIBUTES.items() if s == "hand")
STAFF = tuple(a for a, (_, s) in ATTRIBUTES.items() if s == "staff")
FIELD = tuple(a for a, (_, s) in ATTRIBUTES.items() if s == "field")
SKY = ("star", "crescent")  # never "on ground"

# position -> (phrase, (x, y) in die units, y down). Phrases differ in >= 2 words.
FIELD_POSITIONS: dict[str, tuple[str, tuple[float, float]]] = {
    "left_field": ("in left field", (-0.52, -0.18)),
    "right_ground": ("at right, on ground", (0.50, 0.40)),
    "feet_left": ("at feet left", (-0.48, 0.40)),
    "right_field": ("in right field, above", (0.50, -0.28)),
}
GROUND_POSITIONS = ("right_ground", "feet_left")

EXERGUES = ("XXI", "XXIA", "XXIB", "XXIT", "PXXI", "SXXI", "TXXI", "KA", "KB", "SMA", "RSP", "PTR", "SIS", "ALE", "VIXXI")

CROWNS = ("laureate", "radiate", "diademed", "bare")
BUSTS = ("draped", "cuirassed", "draped and cuirassed", "head")
BEARDS = ("none", "short", "full")
HAIRS = ("curls", "combed", "short")

NAME_STEMS = (
    "Aurel", "Valer", "Maxim", "Claud", "Gall", "Prob", "Tacit", "Flor", "Car", "Numer", "Diocl",
    "Constant", "Licin", "Sever", "Anton", "Traj", "Hadr", "Vesp", "Domit", "Nerv", "Gord", "Phil",
    "Dec", "Postum", "Victor", "Tetric", "Quintill", "Marcell", "Jul", "Luc", "Aemil", "Balb",
    "Pupien", "Volus", "Trebon", "Macr", "Pertin", "Did", "Caraus", "Allect", "Magnent", "Vetran",
    "Prisc", "Sabin", "Lael", "Regal", "Aurelian", "Florent", "Septim", "Marin", "Jovin",
)
NAME_ENDINGS = ("ianus", "ius", "inus", "us", "anus", "illus", "entius", "icus", "atus")
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X")

"""The emperor -> RIC type catalogue: names, portraits, reverse designs and descriptions.

Built once per dataset from (config, seed) and shared by every worker. The structure
mimics Roman Imperial Coinage:

* each emperor owns a long-tailed number of RIC types; a label belongs to one emperor;
* an emperor's types come in *families* of siblings that differ by one attribute
  (swapped, added or moved), like RIC numbers a few apart;
* some types reuse another emperor's reverse design (same figure, same attributes), so
  the reverse alone is ambiguous and only the obverse resolves it;
* some types of one emperor use another obverse variant (laureate instead of radiate);
* a few *near-duplicate* pairs of one emperor differ by exactly one word of the reverse
  description, so the paper's class-merging rule (threshold 2) merges them.

Descriptions follow RIC style and are generated from the composition, so that every
described element has a landmark polygon.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from denarius.training.data import word_difference
from denarius.training.synth.vocabulary import (
    ATTRIBUTES,
    BEARDS,
    BUSTS,
    CROWNS,
    EXERGUES,
    FIELD,
    FIELD_POSITIONS,
    FIGURES,
    GROUND_POSITIONS,
    HAIRS,
    HAND,
    HUMAN_KINDS,
    NAME_ENDINGS,
    NAME_STEMS,
    ROMAN,
    SKY,
    STAFF,
)

__all__ = [
    "Portrait",
    "Emperor",
    "ReverseDesign",
    "RicType",
    "Catalogue",
    "build_catalogue",
    "FIGURES",
    "ATTRIBUTES",
    "FIELD_POSITIONS",
]

@dataclass(frozen=True)
class Portrait:
    """Per-emperor portrait identity (all lengths in die radii).

    Attributes:
        facing: +1 head right, -1 head left.
        head: skull radius; nose, nose_hook, brow, chin, jaw, lips: profile shape offsets.
        neck: neck width; beard: none/short/full; hair: curls/combed/short; curl: curl size.
        crown, bust: the emperor's usual obverse variant.
    """

    facing: int
    head: float
    nose: float
    nose_hook: float
    brow: float
    chin: float
    jaw: float
    lips: float
    neck: float
    skull_long: float
    beard: str
    hair: str
    curl: float
    crown: str
    bust: str


@dataclass(frozen=True)
class Emperor:
    index: int
    name: str
    legend: str
    volume: str
    portrait: Portrait


@dataclass(frozen=True)
class ReverseDesign:
    """A reverse composition. ``field`` is a tuple of (attribute, position) pairs."""

    figure: str
    pose: str
    facing: int
    hand: str | None
    staff: str | None
    field: tuple[tuple[str, str], ...]
    legend: str
    exergue: str

    def elements(self) -> list[tuple]:
        """Element keys: what a landmark polygon is drawn for (used to find differences)."""
        keys: list[tuple] = [("figure", self.figure, self.pose, self.facing)]
        if self.hand:
            keys.append(("hand", self.hand))
        if self.staff:
            keys.append(("staff", self.staff))
        keys.extend(("field", a, p) for a, p in self.field)
        keys.append(("legend", self.legend))
        if self.exergue:
            keys.append(("exergue", self.exergue))
        return keys


@dataclass(frozen=True)
class RicType:
    """One RIC type (a class of the RIC model).

    Attributes:
        index: position in the catalogue; label: e.g. "RIC V Aurelianus 64".
        emperor: index into ``Catalogue.emperors``; crown, bust: its obverse variant.
        design: the reverse; discriminative: element keys of ``design.elements()`` that
            differ from the nearest other types (ground truth for landmark scoring).
        die_seed: seeds the type's die geometry jitter (constant over its coins).
    """

    index: int
    label: str
    emperor: int
    crown: str
    bust: str
    design: ReverseDesign
    obverse_description: str
    reverse_description: str
    discriminative: frozenset
    die_seed: int


@dataclass(frozen=True)
class Catalogue:
    emperors: tuple[Emperor, ...]
    types: tuple[RicType, ...]
    near_duplicates: tuple[tuple[str, str], ...]  # label pairs differing by one word
    shared: tuple[tuple[str, str], ...]  # (original label, copy of another emperor)


# ---------------------------------------------------------------------------- descriptions


def _words(text: str) -> list[str]:
    """Tokens as denarius.training.data.word_difference sees them (lower case, alphanumeric runs)."""
    return "".join(ch if ch.isalnum() else " " for ch in text.lower()).split()


def obverse_description(emperor: Emperor, crown: str, bust: str) -> str:
    """RIC-style obverse text, e.g. "IMP C AVRELIANVS AVG, radiate, draped and cuirassed bust right"."""
    side = "right" if emperor.portrait.facing > 0 else "left"
    crown_word = {"laureate": "Laureate", "radiate": "Radiate", "diademed": "Diademed", "bare": "Bare"}[crown]
    if bust == "head":
        body = f"{crown_word} head {side}"
    else:
        body = f"{crown_word}, {bust} bust {side}"
    if emperor.portrait.beard != "none":
        body += ", bearded"
    return f"{emperor.legend}, {body}"


def reverse_description(design: ReverseDesign) -> str:
    """RIC-style reverse text generated from the composition."""
    side = "right" if design.facing > 0 else "left"
    kind = FIGURES[design.figure][0]
    if kind == "eagle":
        text = f"Eagle standing facing, head {side}, wings spread"
    elif kind == "pegasus":
        text = f"Pegasus prancing {side}"
    elif kind == "altar":
        text = "Lighted and garlanded altar"
    elif design.pose == "seated":
        text = f"{design.figure} seated {side} on throne"
    else:
        text = f"{design.figure} {design.pose} {side}"
    held = [ATTRIBUTES[a][0] for a in (design.hand, design.staff) if a]
    if held:
        text += ", holding " + " and ".join(held)
    for attribute, position in design.field:
        text += f"; {FIELD_POSITIONS[position][0]}, {ATTRIBUTES[attribute][0]}"
    text = f"{design.legend}, {text}"
    if design.exergue:
        text += f"; in exergue, {design.exergue}"
    return text


# ------------------------------------------------------------------------------- building


def _emperor_names(n: int, rng: np.random.Generator) -> list[str]:
    combos = [a + b for a in NAME_STEMS for b in NAME_ENDINGS]
    order = rng.permutation(len(combos))
    names: list[str] = []
    seen: set[str] = set()
    for i in order:
        name = combos[i]
        if name not in seen:
            seen.add(name)
            names.append(name)
        if len(names) == n:
            break
    k = 2
    while len(names) < n:  # more emperors than syllable pairs: regnal numbers
        names.extend(f"{base} {ROMAN[min(k, 9)]}" if k < 10 else f"{base} {k}" for base in list(names[: n - len(names)]))
        k += 1
    return names[:n]


def _legend_name(name: str) -> str:
    return name.upper().replace("U", "V").replace("J", "I")


def _portrait(rng: np.random.Generator) -> Portrait:
    crown = str(rng.choice(CROWNS, p=(0.4, 0.35, 0.15, 0.10)))
    return Portrait(
        facing=1 if rng.random() < 0.85 else -1,
        head=float(rng.uniform(0.27, 0.34)),
        nose=float(rng.uniform(0.05, 0.12)),
        nose_hook=float(rng.uniform(-0.03, 0.04)),
        brow=float(rng.uniform(0.0, 0.04)),
        chin=float(rng.uniform(-0.03, 0.04)),
        jaw=float(rng.uniform(0.85, 1.15)),
        lips=float(rng.uniform(0.0, 0.025)),
        neck=float(rng.uniform(0.17, 0.25)),
        skull_long=float(rng.uniform(0.95, 1.2)),
        beard=str(rng.choice(BEARDS, p=(0.45, 0.3, 0.25))),
        hair=str(rng.choice(HAIRS)),
        curl=float(rng.uniform(0.025, 0.05)),
        crown=crown,
        bust=str(rng.choice(BUSTS, p=(0.3, 0.25, 0.35, 0.10))),
    )


def _types_per_emperor(n_emperors: int, n_types: int, rng: np.random.Generator) -> list[int]:
    """Long-tailed type counts, each >= 1, summing to n_types."""
    counts = np.ones(n_emperors, dtype=np.int64)
    weights = rng.pareto(1.3, size=n_emperors) + 0.3
    extra = n_types - n_emperors
    if extra:
        counts += rng.multinomial(extra, weights / weights.sum())
    return [int(c) for c in counts]


def _random_design(rng: np.random.Generator, exergue_pool: list[str]) -> ReverseDesign:
    figure = str(rng.choice(list(FIGURES)))
    kind, _, poses, legends = FIGURES[figure]
    pose = str(rng.choice(poses))
    facing = 1 if rng.random() < 0.5 else -1
    hand = staff = None
    if kind in HUMAN_KINDS:
        hand = str(rng.choice(HAND))
        staff = str(rng.choice(STAFF)) if rng.random() < 0.85 else None
    elif kind == "eagle" and rng.random() < 0.5:
        hand = "wreath"  # held in the beak
    field: tuple = ()
    if rng.random() < 0.45:
        field = (_random_field(rng, ()),)
    exergue = str(rng.choice(exergue_pool)) if rng.random() < 0.6 else ""
    return ReverseDesign(figure, pose, facing, hand, staff, field, str(rng.choice(legends)), exergue)


def _random_field(rng: np.random.Generator, taken: tuple) -> tuple[str, str]:
    used_pos = {p for _, p in taken}
    used_attr = {a for a, _ in taken}
    attribute = str(rng.choice([a for a in FIELD if a not in used_attr]))
    positions = [p for p in FIELD_POSITIONS if p not in used_pos and not (attribute in SKY and p in GROUND_POSITIONS)]
    return attribute, str(rng.choice(positions))


def _mutate(design: ReverseDesign, rng: np.random.Generator) -> ReverseDesign:
    """A sibling design: one attribute swapped, added, removed or moved."""
    kind = FIGURES[design.figure][0]
    options = ["field_add"]
    if design.field:
        options += ["field_move", "field_swap"]
    if kind in HUMAN_KINDS:
        options += ["hand", "staff", "hand"]
    choice = str(rng.choice(options))
    if choice == "hand":
        return replace(design, hand=str(rng.choice([a for a in HAND if a != design.hand])))
    if choice == "staff":
        return replace(design, staff=str(rng.choice([a for a in STAFF if a != design.staff])))
    if choice == "field_add" and len(design.field) < 2:
        return replace(design, field=(*design.field, _random_field(rng, design.field)))
    if choice == "field_add":
        return replace(design, field=design.field[:1])
    attribute, position = design.field[-1]
    rest = design.field[:-1]
    if choice == "field_move":
        used = {p for _, p in rest} | {position}
        moves = [p for p in FIELD_POSITIONS if p not in used and not (attribute in SKY and p in GROUND_POSITIONS)]
        if moves:
            return replace(design, field=(*rest, (attribute, str(rng.choice(moves)))))
    used = {a for a, _ in design.field}
    swaps = [a for a in FIELD if a not in used and not (a in SKY and position in GROUND_POSITIONS)]
    return replace(design, field=(*rest, (str(rng.choice(swaps)), position)))


def build_catalogue(config, seed: int) -> Catalogue:
    """The catalogue for a config (see :class:`denarius.training.synth.presets.SynthConfig`) and seed."""
    rng = np.random.default_rng([int(seed), 0xC01])
    names = _emperor_names(config.n_emperors, rng)
    emperors = []
    for i, name in enumerate(names):
        volume = ROMAN[min(9, i * 10 // config.n_emperors)]
        legend_name = _legend_name(name.split(" ")[0])
        titles = ("IMP C", "IMP CAES", "IMP C M AVR", "IMP", "D N")[int(rng.integers(5))]
        suffix = ("AVG", "P F AVG", "P AVG", "PIVS FEL AVG")[int(rng.integers(4))]
        emperors.append(Emperor(i, name, f"{titles} {legend_name} {suffix}", volume, _portrait(rng)))

    counts = _types_per_emperor(config.n_emperors, config.n_types, rng)
    designs: list[list[ReverseDesign]] = []
    shared_pairs: list[tuple[int, int, int]] = []  # (emperor, slot, source design position)
    all_designs: list[tuple[int, int, ReverseDesign, bool]] = []  # (emperor, slot, design, original)
    cap = round(config.shared_reverse_fraction * config.n_types)
    for e, count in enumerate(counts):
        own: list[ReverseDesign] = []
        while len(own) < count:
            others = [i for i, d in enumerate(all_designs) if d[0] != e and d[3]]
            if others and len(shared_pairs) < cap and rng.random() < config.shared_reverse_fraction:
                src_pos = others[int(rng.integers(len(others)))]
                src_e, src_k, src, _ = all_designs[src_pos]
                legends = FIGURES[src.figure][3]
                # Mostly the very same design; sometimes another legend of the same figure.
                legend = src.legend if rng.random() < 0.6 else str(rng.choice(legends))
                copy = replace(src, legend=legend)
                shared_pairs.append((e, len(own), src_pos))
                own.append(copy)
                all_designs.append((e, len(own) - 1, copy, False))
                continue
            base = _random_design(rng, list(EXERGUES))
            own.append(base)
            all_designs.append((e, len(own) - 1, base, True))
            family = int(rng.integers(1, 4))
            for _ in range(family):
                if len(own) >= count:
                    break
                sibling = _mutate(own[-1] if rng.random() < 0.5 else base, rng)
                own.append(sibling)
                all_designs.append((e, len(own) - 1, sibling, True))
        designs.append(own)

    designs = _separate_siblings(designs, rng)
    near = _add_near_duplicates(designs, config.near_duplicates, rng, skip={(e, k) for e, k, _ in shared_pairs})

    # Obverse variants: most types use the emperor's usual crown and bust.
    types: list[RicType] = []
    label_of: dict[tuple[int, int], str] = {}
    for e, own in enumerate(designs):
        emperor = emperors[e]
        number = int(rng.integers(1, 60))
        for k, design in enumerate(own):
            crown, bust = emperor.portrait.crown, emperor.portrait.bust
            if k > 0 and rng.random() < config.variant_fraction:
                alternatives = {"laureate": "radiate", "radiate": "laureate", "diademed": "laureate", "bare": "laureate"}
                if rng.random() < 0.7:
                    crown = alternatives[crown]
                else:
                    bust = str(rng.choice([b for b in BUSTS if b != bust]))
            label = f"RIC {emperor.volume} {emperor.name} {number}"
            label_of[(e, k)] = label
            number += int(rng.integers(1, 12))
            types.append(
                RicType(
                    index=len(types),
                    label=label,
                    emperor=e,
                    crown=crown,
                    bust=bust,
                    design=design,
                    obverse_description=obverse_description(emperor, crown, bust),
                    reverse_description=reverse_description(design),
                    discriminative=frozenset(),
                    die_seed=int(rng.integers(2**31)),
                )
            )
    near_labels = tuple((label_of[a], label_of[b]) for a, b in near)
    types = _mark_discriminative(types, {frozenset(p) for p in near_labels})
    shared_labels = []
    for e, k, src_pos in shared_pairs:
        src_e, src_k, _, _ = all_designs[src_pos]
        if (src_e, src_k) in label_of and (e, k) in label_of:
            shared_labels.append((label_of[(src_e, src_k)], label_of[(e, k)]))
    return Catalogue(tuple(emperors), tuple(types), near_labels, tuple(shared_labels))


def _separate_siblings(designs: list[list[ReverseDesign]], rng: np.random.Generator) -> list[list[ReverseDesign]]:
    """Make every pair of one emperor's reverse descriptions differ in >= 2 words.

    Random families can collide (the same mutation twice, or a shared design equal to an
    own one); such a type gets another exergue mark or legend until it is distinct.
    """
    result = []
    for own in designs:
        fixed: list[ReverseDesign] = []
        for design in own:
            for attempt in range(200):
                text = reverse_description(design)
                if all(word_difference(text, reverse_description(d)) >= 2 for d in fixed):
                    break
                if attempt % 3 == 2:
                    design = _mutate(design, rng)
                else:
                    # A fresh exergue mark of a different token count changes >= 2 words.
                    mark = str(rng.choice(EXERGUES))
                    design = replace(design, exergue="" if design.exergue and rng.random() < 0.3 else mark)
            else:  # pragma: no cover - 200 attempts never all collide in practice
                raise RuntimeError("could not separate sibling reverse designs")
            fixed.append(design)
        result.append(fixed)
    return result


def _add_near_duplicates(
    designs: list[list[ReverseDesign]], n: int, rng: np.random.Generator, *, skip: set
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Turn n types into one-word variants of a sibling (same emperor): the exergue mark
    is substituted (both have one), which the merging rule at threshold 2 merges."""
    candidates = [(e, k) for e, own in enumerate(designs) for k in range(1, len(own)) if (e, k) not in skip]
    order = rng.permutation(len(candidates))
    pairs = []
    used: set[tuple[int, int]] = set()
    for i in order:
        if len(pairs) >= n:
            break
        e, k = candidates[int(i)]
        j = int(rng.integers(k))
        if (e, k) in used or (e, j) in used:
            continue
        source = designs[e][j]
        others = [reverse_description(d) for m, d in enumerate(designs[e]) if m not in (k, j)]
        if not source.exergue:
            # give the source a mark first, if it stays >= 2 words from its siblings
            for mark in rng.permutation(EXERGUES):
                marked = replace(source, exergue=str(mark))
                if all(word_difference(reverse_description(marked), o) >= 2 for o in others):
                    source = marked
                    break
            else:
                continue
        for mark in rng.permutation([m for m in EXERGUES if m != source.exergue]):
            variant = replace(source, exergue=str(mark))
            if all(word_difference(reverse_description(variant), o) >= 2 for o in others):
                designs[e][j] = source
                designs[e][k] = variant
                pairs.append(((e, j), (e, k)))
                used.update({(e, k), (e, j)})
                break
    return pairs


def _mark_discriminative(types: list[RicType], merged: set[frozenset]) -> list[RicType]:
    """For each type, the elements that differ from its nearest sibling types.

    Siblings are the other types of the same emperor (all types when it has only one),
    minus a merged near-duplicate partner and identical reverses; nearest = smallest word
    difference of the reverse descriptions. An element is discriminative when at least
    one nearest sibling lacks it (same word, same place).
    """
    texts = [t.reverse_description for t in types]
    bags = [Counter(_words(text)) for text in texts]
    lengths = [sum(bag.values()) for bag in bags]
    keys = [t.design.elements() for t in types]
    result = []
    for i, t in enumerate(types):
        # The multiset difference is a lower bound of the word edit distance, so the exact
        # (quadratic) distance is computed only for candidates that can still be nearest.
        bounds = []
        siblings = [j for j, o in enumerate(types) if o.emperor == t.emperor and j != i]
        candidates = siblings or range(len(types))
        for j in candidates:
            other = types[j]
            if j == i or frozenset((t.label, other.label)) in merged or texts[j] == texts[i]:
                continue
            bound = max(sum((bags[i] - bags[j]).values()), sum((bags[j] - bags[i]).values()), abs(lengths[i] - lengths[j]))
            bounds.append((bound, j))
        bounds.sort()
        best, nearest = None, []
        for bound, j in bounds:
            if best is not None and bound > best:
                break
            d = word_difference(texts[i], texts[j])
            if best is None or d < best:
                best, nearest = d, [j]
            elif d == best:
                nearest.append(j)
        marked: set = set()
        for j in nearest:
            other_keys = set(keys[j])
            marked.update(k for k in keys[i] if k not in other_keys)
        if not marked:  # nothing differs in drawn elements: the figure carries the type
            marked.add(keys[i][0])
        result.append(replace(t, discriminative=frozenset(marked)))
    return result

"""The specimen generator: a specimen is reproducible from its seeds, its re-photographs
differ from the listing photo, its die-mates share the die and nothing else."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from denarius.engine.errors import ConfigError
from denarius.engine.manifest import read_manifest
from denarius.training.synth.catalogue import build_catalogue
from denarius.training.synth.presets import make_config
from denarius.training.synth.specimen import SpecimenKey, SpecimenPhotographer
from denarius.training.synth.specimen_set import GROUND_TRUTH_COLUMNS, generate_specimens, specimen_key

CONFIG = make_config("tiny", min_size=256, max_size=256)


@pytest.fixture(scope="module")
def photographer():
    return SpecimenPhotographer(build_catalogue(CONFIG, 0), CONFIG, seed=3)


def test_a_specimen_is_reproducible_from_its_seeds(photographer):
    again = SpecimenPhotographer(build_catalogue(CONFIG, 0), CONFIG, seed=3)
    key = SpecimenKey(2, 1, 4)
    assert photographer.photograph(key, 1)["obverse"][0] == again.photograph(key, 1)["obverse"][0]
    other_seed = SpecimenPhotographer(build_catalogue(CONFIG, 0), CONFIG, seed=4)
    assert other_seed.photograph(key, 1)["obverse"][0] != photographer.photograph(key, 1)["obverse"][0]


def test_photos_of_one_specimen_share_the_coin_and_differ_as_photos(photographer):
    key = SpecimenKey(1, 0, 0)
    first, second = photographer.photograph(key, 0), photographer.photograph(key, 1)
    assert first["obverse"][0] != second["obverse"][0]
    struck, look = photographer.strike(key)
    again, look_again = SpecimenPhotographer(build_catalogue(CONFIG, 0), CONFIG, seed=3).strike(key)
    assert look == look_again  # flan, metal, patina, wear
    np.testing.assert_array_equal(struck["obverse"].height, again["obverse"].height)


def test_die_mates_share_the_die_but_not_the_flan_or_strike(photographer):
    a, b = SpecimenKey(0, 0, 0), SpecimenKey(0, 0, 1)
    assert a.die_id == b.die_id and a.specimen_id != b.specimen_id
    relief = photographer.die(0, 0)["obverse"][0]
    other_die = photographer.die(0, 1)["obverse"][0]
    assert not np.array_equal(relief, other_die)
    struck_a, look_a = photographer.strike(a)
    struck_b, look_b = photographer.strike(b)
    assert look_a.flan_harmonics != look_b.flan_harmonics
    assert not np.allclose(struck_a["obverse"].m1, struck_b["obverse"].m1)  # die position on the flan


def test_specimen_set_writes_ground_truth(tmp_path):
    result = generate_specimens(tmp_path, n_specimens=10, n_rephotographed=3, photos=2, dies_per_type=1, preset="tiny",
                                min_size=256, max_size=256, workers=1, progress=False)
    assert result.n_photos == 10 + 3 * 2
    records = read_manifest(result.manifest)  # the standard manifest contract holds
    assert len(records) == 16
    with result.manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(GROUND_TRUTH_COLUMNS) <= set(rows[0])
    first = specimen_key(0, n_types=CONFIG.n_types, dies_per_type=1)
    photos = sorted(r["photo"] for r in rows if r["specimen_id"] == first.specimen_id)
    assert photos == ["0", "1", "2"]
    # 10 specimens over 8 types and one die each: types 0 and 1 have a die-mate
    assert sum(1 for r in rows if r["die_id"] == first.die_id and r["photo"] == "0") == 2


def test_bad_counts_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="n_rephotographed"):
        generate_specimens(tmp_path, n_specimens=2, n_rephotographed=3, preset="tiny", workers=1, progress=False)

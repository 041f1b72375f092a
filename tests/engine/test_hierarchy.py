"""The hierarchical combination p(e|Io) p(r|Ir) [parent(r)=e], checked by hand."""

import numpy as np
import pytest

from denarius.engine.errors import ConfigError
from denarius.engine.hierarchy import Hierarchy


def make() -> Hierarchy:
    return Hierarchy.from_mapping({"r1": "A", "r2": "A", "r3": "B"})


def test_joint_scores_by_hand():
    tree = make()
    assert tree.emperors == ("A", "B") and list(tree.parent) == [0, 0, 1]
    p_emperor = np.array([[0.2, 0.8]])
    p_ric = np.array([[0.5, 0.3, 0.2]])
    # r1: 0.2*0.5 = 0.10, r2: 0.2*0.3 = 0.06, r3: 0.8*0.2 = 0.16 -> the obverse overrules the reverse
    assert np.allclose(tree.joint_scores(p_emperor, p_ric), [[0.10, 0.06, 0.16]], atol=1e-12)
    assert tree.predict(p_emperor, p_ric).tolist() == [2]
    assert int(np.argmax(p_ric)) == 0


def test_round_trip_and_lookup():
    tree = make()
    again = Hierarchy.from_dict(tree.to_dict())
    assert again.rics == tree.rics and np.array_equal(again.parent, tree.parent)
    assert tree.emperor_of("r3") == "B"


def test_shape_errors_are_clear():
    with pytest.raises(ConfigError, match="p_ric has shape"):
        make().joint_scores(np.ones((1, 2)), np.ones((1, 4)))
    with pytest.raises(ConfigError, match="without an emperor"):
        Hierarchy.from_mapping({"r1": "A"}, rics=["r1", "r2"])

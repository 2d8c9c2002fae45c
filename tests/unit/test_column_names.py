"""Any column name is a request field: JSON keys are the contract's column names, whatever they are."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import TypeAdapter

from conveyor.contract import infer_contract
from conveyor.serving.request import record_type

NAMES = ["mean radius", "size m²", "2nd.rooms-count", "class", "_private", "model_config", "schema", "copy", "label"]


@pytest.mark.parametrize("name", NAMES)
def test_a_record_takes_and_gives_back_the_column_name_as_its_key(name: str) -> None:
    contract = infer_contract(pd.DataFrame({name: [1.5, 2.0, 3.25], "y": ["a", "b", "a"]}), target="y")
    assert TypeAdapter(record_type(contract, [name])).validate_python({name: 2.5}) == {name: 2.5}

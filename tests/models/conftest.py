import pytest

from tests.builders import binary_data


@pytest.fixture
def data():
    return binary_data()

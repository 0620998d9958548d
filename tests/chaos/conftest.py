from tests.integration.conftest import engine  # noqa: F401 - the same real-process fixture

"""Repository-wide pytest configuration."""


def pytest_collection_modifyitems(config, items):
    """Drop ``test_session``: TensorFlow's ``TestCase`` context manager, which
    ``tfds.testing.DatasetBuilderTestCase`` inherits and pytest would collect
    (and skip as "Not a test") from every builder test class."""
    items[:] = [item for item in items if item.name != "test_session"]

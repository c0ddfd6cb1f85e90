"""Property-based fuzz targets (hypothesis); see conftest.py for the settings profiles."""

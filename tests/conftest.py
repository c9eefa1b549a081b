import sys
from pathlib import Path

# Shared test helpers (random_graphs) live beside the tests, not in the package.
sys.path.insert(0, str(Path(__file__).parent))

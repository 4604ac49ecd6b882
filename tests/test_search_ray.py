"""The Ray backend: a generation's trials run as Ray tasks on a local instance.

`make test` installs Ray (the `ray` extra), and under CI a missing Ray fails; elsewhere the test skips.
"""

import os

import pytest

from menas_zoo.search import SearchConfig, run_search
from menas_zoo.search.backends import RayBackend

if os.environ.get("CI"):
    import ray
else:
    ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_search_on_local_ray(local_ray, tmp_path, tiny_profile, tiny_splits):
    cfg = SearchConfig(profile=tiny_profile, population=2, generations=1, epochs=1, eb_window=2, val_size=256,
                       train_subset=256, device="cpu", seed=5, weight_sharing=True)  # parents' weights travel
    result = run_search(cfg, tmp_path / "run", splits=tiny_splits, backend=RayBackend())
    state = result.state
    assert state.finished and sorted(t.index for t in state.trials) == [0, 1, 2, 3]
    assert len(state.population) == 2 and len(state.history) == 2
    children = [t for t in state.trials if t.generation == 1]
    assert all(t.parent in {0, 1} and t.inherit for t in children)  # weights travelled to the workers
    assert (tmp_path / "run" / "report.md").exists()
